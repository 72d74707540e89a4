//! Shadow results against a real Postgres: one row per job, the comparison of a model
//! with a candidate aggregated in SQL (per class, versions, time percentiles) over a
//! window, the pairs listed, and every read of `shadow_results` going through its index
//! on a table of many rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, Utc};
use foodseg_engine::store::{ClassCounts, NewShadowResult};
use foodseg_engine::{JobId, Store, Subjects};
// The statements explained here are the checked queries' own text: nothing comes from
// outside the test.
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("tshadow"))
}

fn counts(model: i64, candidate: i64, matched: i64) -> ClassCounts {
    ClassCounts {
        model,
        candidate,
        matched,
    }
}

fn result(
    job_id: JobId,
    candidate: &str,
    seconds: (f64, f64),
    classes: &[(&str, ClassCounts)],
) -> NewShadowResult {
    NewShadowResult {
        job_id,
        model_name: "yolov5s-seg-coco".into(),
        model_version: "aaa".into(),
        candidate: candidate.into(),
        candidate_version: "bbb".into(),
        items: serde_json::json!([]),
        model_seconds: seconds.0,
        candidate_seconds: seconds.1,
        classes: classes
            .iter()
            .map(|(name, c)| ((*name).to_string(), *c))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn job(store: &Store) -> anyhow::Result<JobId> {
    Ok(store
        .enqueue(
            &foodseg_testkit::new_job("https://img.example.org/a.jpg"),
            "test",
        )
        .await?
        .id)
}

fn near(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_comparison_sums_classes_versions_and_times_of_its_window(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = store(pool.clone());
    let since = Utc::now() - Duration::hours(1);

    let empty = store
        .shadow_comparison("yolov5s-seg-coco", "cand", since)
        .await?;
    assert_eq!(empty.jobs, 0);
    assert!(empty.classes.is_empty() && empty.versions.is_empty());
    assert_eq!(empty.overall.agreement, None);
    assert_eq!(empty.model_seconds.p50, None);
    assert!(store.shadow_pairs(since).await?.is_empty());

    let (a, b, c) = (job(&store).await?, job(&store).await?, job(&store).await?);
    let rows = [
        result(
            a,
            "cand",
            (1.0, 2.0),
            &[("orange", counts(2, 2, 2)), ("apple", counts(1, 0, 0))],
        ),
        result(b, "cand", (2.0, 4.0), &[("orange", counts(1, 2, 1))]),
        result(c, "cand", (3.0, 6.0), &[]),
    ];
    for row in &rows {
        assert!(store.insert_shadow_result(row).await?, "first run recorded");
    }
    // A redelivered job's second run is dropped.
    let again = result(a, "cand", (9.0, 9.0), &[("banana", counts(5, 5, 5))]);
    assert!(!store.insert_shadow_result(&again).await?);
    // Another candidate's run of the same model, and an old run, stay out.
    let other = job(&store).await?;
    store
        .insert_shadow_result(&result(
            other,
            "other",
            (1.0, 1.0),
            &[("pizza", counts(1, 1, 1))],
        ))
        .await?;
    let old = job(&store).await?;
    let mut old_row = result(old, "cand", (50.0, 50.0), &[("orange", counts(9, 0, 0))]);
    old_row.candidate_version = "old".into();
    store.insert_shadow_result(&old_row).await?;
    sqlx::query!(
        "UPDATE shadow_results SET created_at = now() - interval '2 days' WHERE job_id = $1",
        old as JobId
    )
    .execute(&pool)
    .await?;

    let cmp = store
        .shadow_comparison("yolov5s-seg-coco", "cand", since)
        .await?;
    assert_eq!(cmp.jobs, 3);
    assert_eq!(cmp.model, "yolov5s-seg-coco");
    assert_eq!(cmp.candidate, "cand");
    let classes: Vec<(&str, i64, i64, i64, Option<f64>)> = cmp
        .classes
        .iter()
        .map(|c| {
            (
                c.class.as_str(),
                c.counts.model_items,
                c.counts.candidate_items,
                c.counts.matched,
                c.counts.agreement,
            )
        })
        .collect();
    assert_eq!(classes.len(), 2, "{classes:?}");
    assert_eq!(
        (classes[0].0, classes[0].1, classes[0].2, classes[0].3),
        ("orange", 3, 4, 3)
    );
    assert!(near(classes[0].4, 6.0 / 7.0), "{classes:?}");
    assert_eq!((classes[1].0, classes[1].1, classes[1].2), ("apple", 1, 0));
    assert!(near(classes[1].4, 0.0));
    assert_eq!(
        (
            cmp.overall.model_items,
            cmp.overall.candidate_items,
            cmp.overall.matched
        ),
        (4, 4, 3)
    );
    assert!(near(cmp.overall.agreement, 0.75));
    // percentile_cont interpolates: p95 of 1, 2, 3 is 2.9.
    assert!(near(cmp.model_seconds.p50, 2.0));
    assert!(near(cmp.model_seconds.p95, 2.9));
    assert!(near(cmp.candidate_seconds.p50, 4.0));
    assert!(near(cmp.candidate_seconds.p95, 5.8));
    assert_eq!(
        cmp.versions.len(),
        1,
        "the old version is outside the window"
    );
    assert_eq!(cmp.versions[0].model_version, "aaa");
    assert_eq!(cmp.versions[0].candidate_version, "bbb");
    assert_eq!(cmp.versions[0].jobs, 3);

    // A wider window sees the old run and its version.
    let wide = store
        .shadow_comparison("yolov5s-seg-coco", "cand", since - Duration::days(3))
        .await?;
    assert_eq!(wide.jobs, 4);
    let versions: BTreeSet<&str> = wide
        .versions
        .iter()
        .map(|v| v.candidate_version.as_str())
        .collect();
    assert_eq!(versions, BTreeSet::from(["bbb", "old"]));
    assert_eq!(
        wide.versions[0].candidate_version, "bbb",
        "most recent first"
    );

    let pairs = store.shadow_pairs(since).await?;
    let listed: Vec<(&str, &str, i64)> = pairs
        .iter()
        .map(|p| (p.model.as_str(), p.candidate.as_str(), p.jobs))
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.contains(&("yolov5s-seg-coco", "cand", 3)),
        "{listed:?}"
    );
    assert!(
        listed.contains(&("yolov5s-seg-coco", "other", 1)),
        "{listed:?}"
    );
    // Pairs that ran only before the window are listed with no runs in it.
    let later = store.shadow_pairs(Utc::now() + Duration::hours(1)).await?;
    assert_eq!(later.len(), 2);
    assert!(later.iter().all(|p| p.jobs == 0));

    // Rows go with their jobs.
    sqlx::query!("DELETE FROM jobs WHERE id = $1", a as JobId)
        .execute(&pool)
        .await?;
    let after = store
        .shadow_comparison("yolov5s-seg-coco", "cand", since)
        .await?;
    assert_eq!(after.jobs, 2);
    Ok(())
}

/// 200,000 shadow runs of 20 (model, candidate) pairs over 40 days. Foreign keys are not
/// checked during the load (no job rows).
const FILL: &str = r#"
SET session_replication_role = replica;
INSERT INTO shadow_results (job_id, model_name, model_version, candidate, candidate_version,
                            items, model_seconds, candidate_seconds, classes, created_at)
SELECT gen_random_uuid(), 'model-' || (i % 4), 'v', 'cand-' || (i % 5), 'w', '[]',
       0.1 + (i % 7) * 0.01, 0.2, '{"orange": {"model": 1, "candidate": 1, "matched": 1}}',
       now() - (i * interval '17 seconds')
FROM generate_series(1, 200000) AS i;
RESET session_replication_role;
ANALYZE shadow_results;
"#;

/// Every checked query that reads `shadow_results`: its text and parameter types.
fn shadow_reads() -> anyhow::Result<Vec<(String, Vec<serde_json::Value>)>> {
    let mut found: Vec<_> = crate::plans::checked_queries()?
        .into_iter()
        .filter(|(text, _)| {
            let head = text.trim_start().to_ascii_uppercase();
            text.contains("FROM shadow_results")
                && (head.starts_with("SELECT") || head.starts_with("WITH"))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

#[sqlx::test(migrations = "../../migrations")]
async fn every_read_of_shadow_results_goes_through_its_index(pool: PgPool) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    sqlx::raw_sql(FILL).execute(&mut conn).await?;
    let reads = shadow_reads()?;
    // The comparison's three reads and the list of pairs.
    assert!(reads.len() >= 4, "{} reads found in .sqlx/", reads.len());
    let mut failures = Vec::new();
    for (i, (text, parameters)) in reads.iter().enumerate() {
        // A model, a candidate, a day back.
        let mut texts = ["'model-1'", "'cand-1'"].into_iter();
        let args: Vec<&str> = parameters
            .iter()
            .map(|p| match p.as_str() {
                Some("Text") => texts.next().unwrap_or("'x'"),
                Some("Timestamptz") => "now() - interval '1 day'",
                _ => "NULL",
            })
            .collect();
        let name = format!("shadow_{i}");
        sqlx::raw_sql(AssertSqlSafe(format!("PREPARE {name} AS {text}")))
            .execute(&mut conn)
            .await?;
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
                .execute(&mut conn)
                .await?;
            let execute = if args.is_empty() {
                format!("EXECUTE {name}")
            } else {
                format!("EXECUTE {name}({})", args.join(", "))
            };
            let plan: serde_json::Value =
                sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) {execute}")))
                    .fetch_one(&mut conn)
                    .await?;
            let mut all = Vec::new();
            crate::plans::nodes(&plan[0]["Plan"], &mut all);
            let seq = all
                .iter()
                .any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "shadow_results");
            let indexed = all.iter().any(|n| n["Index Name"] == "shadow_results_pair");
            if seq || !indexed {
                failures.push(format!("({mode}) {text}\n{plan:#}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "reads of shadow_results off shadow_results_pair:\n{}",
        failures.join("\n\n")
    );
    conn.close().await?;
    Ok(())
}
