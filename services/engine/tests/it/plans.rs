//! Every periodic query of the scheduler (and the relay) reads through an index on a
//! database of a million jobs: no sequential scan of the big tables in any of their plans,
//! neither the plan for the first executions (bound values known) nor the generic plan a
//! prepared statement switches to later.
//!
//! The statements are found, not listed: every checked query whose SQL begins with
//! `-- periodic: <name>` is one, read with its exact text and parameter types from the
//! checked queries' offline data (`.sqlx/`), prepared and explained with the arguments
//! the code passes where the plan depends on them and typical values of their types
//! elsewhere.
//!
//! The statement every result goes through is checked on its own: it finds each job by
//! its primary key on a table without statistics.

use std::collections::BTreeSet;
use std::time::Instant;

use foodseg_engine::store::{REDRIVE_DETAIL, REPUBLISH_DETAIL};
// The statements built here are the checked queries' own text, this file's arguments and
// names: nothing comes from outside the test.
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

/// Tables that grow with the traffic: a sequential scan of any of them is a failure.
const BIG_TABLES: [&str; 7] = [
    "jobs",
    "job_events",
    "deliveries",
    "delivery_attempts",
    "outbox",
    "uploads",
    "idempotency_keys",
];

/// A million jobs over 58 days (one every 5 s, newest first): 2 % queued (half of them
/// bulk, their dispatch messages held in the outbox, in a thousand batches), 1 % running
/// (leases valid), 87 % succeeded, 10 % failed, a quarter each owned by two API keys and
/// half by no one; one event each, 3 in 256 of them a
/// recovery; a webhook for one job in ten (pending for the last hour's, failed for failed
/// jobs, else delivered, one attempt each) to one endpoint; published outbox rows for two weeks, uploads
/// for two days and idempotency keys for one job in sixteen.
///
/// The tables' secondary indexes are dropped before the load and rebuilt from their own
/// definitions after it (a bulk build is many times faster than a million inserts into
/// each index); foreign keys are not checked during the load, every reference being to a
/// row inserted before.
const FILL: &str = r#"
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
CREATE TEMP TABLE rebuilt AS
  SELECT indexname, indexdef FROM pg_indexes i
  WHERE schemaname = 'public'
    AND tablename IN ('jobs', 'job_events', 'deliveries', 'delivery_attempts', 'outbox',
                      'uploads', 'idempotency_keys', 'batches')
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname);
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT indexname FROM rebuilt LOOP EXECUTE 'DROP INDEX ' || quote_ident(r.indexname); END LOOP;
END $$;
SET session_replication_role = replica;
INSERT INTO api_keys (id, name, scopes, token_hash)
VALUES ('00000000-0000-0000-0000-00000000000a', 'client-a', '{submit}', sha256('a')),
       ('00000000-0000-0000-0000-00000000000b', 'client-b', '{submit}', sha256('b'));
INSERT INTO batches (id, priority, size, created_at)
SELECT lpad(to_hex(b), 32, '0')::uuid, 'bulk', 10, now() - b * interval '1 hour'
FROM generate_series(1, 1000) AS b;
INSERT INTO jobs (id, status, model_id, model_name, image_url, webhook_url, message,
                  max_attempts, attempt, lease_owner, lease_expires_at, created_at, updated_at,
                  started_at, finished_at, owner_key_id, priority, batch_id)
SELECT lpad(to_hex(i), 32, '0')::uuid, st, '124096', 'yolov5s-seg-coco',
       'https://img.example.org/' || i, CASE WHEN i % 10 = 0 THEN 'https://hook.example.org/' END,
       'm', 3, CASE WHEN st = 'queued' THEN 0 ELSE 1 END,
       CASE WHEN st = 'running' THEN 'w' END,
       CASE WHEN st = 'running' THEN now() + interval '1 minute' END,
       c, c + interval '10 seconds', CASE WHEN st <> 'queued' THEN c + interval '1 second' END,
       CASE WHEN st IN ('succeeded', 'failed') THEN c + interval '10 seconds' END,
       CASE i % 4 WHEN 0 THEN '00000000-0000-0000-0000-00000000000a'::uuid
                  WHEN 1 THEN '00000000-0000-0000-0000-00000000000b'::uuid END,
       (CASE WHEN i % 100 = 0 THEN 'bulk' ELSE 'interactive' END)::job_priority,
       CASE WHEN i % 100 = 0 THEN lpad(to_hex((i / 100) % 1000 + 1), 32, '0')::uuid END
FROM (SELECT i, now() - i * interval '5 seconds' AS c,
             (CASE WHEN i % 100 < 2 THEN 'queued' WHEN i % 100 < 3 THEN 'running'
                   WHEN i % 100 < 90 THEN 'succeeded' ELSE 'failed' END)::job_status AS st
      FROM generate_series(1, 1000000) AS i) g;
INSERT INTO job_events (job_id, at, from_status, to_status, attempt, actor, detail)
SELECT id, updated_at, NULL, status, attempt, 'api',
       CASE (hashtext(id::text) & 255)
            WHEN 0 THEN 'redrive: lease expired (worker lost)'
            WHEN 1 THEN 'fail: lease expired with no attempt left'
            WHEN 2 THEN 'republish: dispatch message may have been lost' END
FROM jobs;
INSERT INTO deliveries (id, job_id, webhook_id, url, status, attempts, next_attempt_at,
                        created_at, updated_at, finished_at)
SELECT id, id, 'msg_' || id, webhook_url, ds, 1, finished_at, finished_at, finished_at,
       CASE WHEN ds <> 'pending' THEN finished_at END
FROM (SELECT j.*, (CASE WHEN finished_at > now() - interval '1 hour' THEN 'pending'
                        WHEN status = 'failed' THEN 'failed'
                        ELSE 'delivered' END)::delivery_status AS ds
      FROM jobs j WHERE webhook_url IS NOT NULL AND finished_at IS NOT NULL) j;
INSERT INTO webhook_endpoints (endpoint) SELECT DISTINCT endpoint FROM deliveries;
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status_code, outcome)
SELECT id, 1, created_at, 12.5, 200, 'delivered' FROM deliveries;
INSERT INTO outbox (subject, msg_id, payload, created_at, published_at, held_for)
SELECT job_subject('foodseg', priority, model_name), id::text || '.1',
       jsonb_build_object('job_id', id),
       created_at, CASE WHEN status <> 'queued' THEN created_at + interval '1 second' END,
       CASE WHEN status = 'queued' AND priority = 'bulk' THEN coalesce(owner_key_id::text, '') END
FROM jobs WHERE created_at > now() - interval '14 days';
INSERT INTO uploads (id, job_id, content_type, filename, bytes, size, created_at, expires_at)
SELECT id, id, 'image/jpeg', 'dish.jpg', '\xffd8ff'::bytea, 3, created_at,
       created_at + interval '7 days'
FROM jobs WHERE created_at > now() - interval '2 days';
INSERT INTO idempotency_keys (api_key_id, key, request_hash, job_id, created_at, expires_at)
SELECT NULL, 'k' || id, sha256(id::text::bytea), id, created_at, created_at + interval '1 day'
FROM jobs WHERE (hashtext(id::text) & 15) = 0;
INSERT INTO workers (id, models, concurrency, version, heartbeat_at)
VALUES ('w1', '{yolov5s-seg-coco}', 2, 'test', now()),
       ('w2', '{yolov5s-seg-coco}', 2, 'test', now() - interval '2 days');
RESET session_replication_role;
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT indexdef FROM rebuilt LOOP EXECUTE r.indexdef; END LOOP;
END $$;
ANALYZE;
"#;

/// The marker that names a periodic query: the first line of its SQL is
/// `-- periodic: <name>`.
const MARKER: &str = "-- periodic: ";

/// A periodic query as the checked queries' offline data (`.sqlx/`) holds it.
struct Periodic {
    name: String,
    text: String,
    /// The Postgres types of its parameters, as sqlx describes them.
    parameters: Vec<serde_json::Value>,
}

/// Every checked query of the workspace, from the offline data (`.sqlx/`): its text and
/// the Postgres types of its parameters, as sqlx describes them.
pub(crate) fn checked_queries() -> anyhow::Result<Vec<(String, Vec<serde_json::Value>)>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.sqlx");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let data: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let parameters = data["describe"]["parameters"]["Left"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        found.push((
            data["query"].as_str().unwrap_or_default().to_string(),
            parameters,
        ));
    }
    Ok(found)
}

/// Every checked query whose SQL carries the periodic marker, by name.
fn periodic() -> anyhow::Result<Vec<Periodic>> {
    let mut found: Vec<Periodic> = checked_queries()?
        .into_iter()
        .filter_map(|(text, parameters)| {
            let name = text
                .strip_prefix(MARKER)?
                .lines()
                .next()?
                .trim()
                .to_string();
            Some(Periodic {
                name,
                text,
                parameters,
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Arguments as the code passes them, where a query's plan depends on them: the feed a
/// day back (an operator's status filter; one owner's jobs), the reconciliation of
/// yesterday, the sweeps with their configured thresholds. Every other periodic query
/// gets [`typical`] values for its parameter types.
fn arguments() -> Vec<(&'static str, String)> {
    let day = "date_trunc('day', now() - interval '1 day'), date_trunc('day', now())";
    let feed = "now() - interval '1 day', now() - interval '1 day', \
                '00000000-0000-0000-0000-000000000000', '{succeeded,failed}', 2, 100";
    vec![
        ("feed by status", feed.to_string()),
        (
            "feed of one owner",
            format!("{feed}, '00000000-0000-0000-0000-00000000000a'"),
        ),
        ("retention delete", "now() - interval '30 days', 500".into()),
        (
            "uploads purge",
            "now(), 86400, 200, '{succeeded,failed}'".into(),
        ),
        ("outbox prune", "86400, 5000".into()),
        ("reconciliation: jobs of the day", day.into()),
        ("reconciliation: recoveries of the day", day.into()),
        ("reconciliation: failed deliveries and backlogs", day.into()),
        ("redrive select", format!("200, '{REDRIVE_DETAIL}', 15")),
        (
            "stale queued with their latest dispatch",
            "200, 60, 'foodseg', NULL, NULL".into(),
        ),
        (
            "republish",
            format!(
                "'{{00000000-0000-0000-0000-000000000064}}', 60, 'scheduler', \
                 '{REPUBLISH_DETAIL}', 'foodseg', 'queued', '{{x}}'"
            ),
        ),
        ("webhook backlog", "'failed'".into()),
        ("expired deliveries", "259200, 200, 'failed', 'x'".into()),
        ("workers purge", "86400".into()),
        (
            "held batch",
            "'{foodseg.jobs.bulk.yolov5s-seg-coco}', '{32}', '{\"\"}', \
             '{foodseg.jobs.bulk.yolov5s-seg-coco,foodseg.jobs.bulk.yolov5s-seg-coco}', \
             '{00000000-0000-0000-0000-00000000000a,00000000-0000-0000-0000-00000000000b}'"
                .into(),
        ),
    ]
}

/// A typical value of a parameter of this type: a limit or a count of seconds for
/// numbers, a day back for times, an empty array, the first value of an enum.
fn typical(parameter: &serde_json::Value) -> anyhow::Result<String> {
    if let Some(kind) = parameter.as_str() {
        return Ok(match kind {
            "Int2" | "Int4" | "Int8" => "100".into(),
            "Float4" | "Float8" => "60".into(),
            "Text" => "'x'".into(),
            "Bool" => "true".into(),
            "Uuid" => "'00000000-0000-0000-0000-000000000001'".into(),
            "Timestamptz" => "now() - interval '1 day'".into(),
            "Date" => "current_date".into(),
            kind if kind.ends_with("Array") => "'{}'".into(),
            other => anyhow::bail!("no typical value for a {other} parameter"),
        });
    }
    let custom = &parameter["Custom"];
    match (&custom["kind"]["Enum"], &custom["kind"]["Array"]) {
        (serde_json::Value::Array(values), _) => Ok(format!(
            "'{}'",
            values.first().and_then(|v| v.as_str()).unwrap_or_default()
        )),
        (_, serde_json::Value::Object(_)) => Ok("'{}'".into()),
        _ => anyhow::bail!("no typical value for {parameter}"),
    }
}

/// The index a query's plan must read: the feed's pages read their own indexes, not a
/// sort of a day of jobs.
fn required_index(name: &str) -> Option<&'static str> {
    match name {
        "feed by status" => Some("jobs_status_updated"),
        "feed of one owner" => Some("jobs_owner_status_updated"),
        _ => None,
    }
}

/// Every node of a plan, depth first.
pub(crate) fn nodes<'a>(plan: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    out.push(plan);
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

/// The plan of `EXECUTE name(args)`: its scans as `Node Type [index] on table`, and the
/// sequential scans of big tables.
async fn explain(
    conn: &mut PgConnection,
    name: &str,
    args: &str,
) -> anyhow::Result<(BTreeSet<String>, Vec<String>)> {
    let execute = if args.is_empty() {
        format!("EXECUTE {name}")
    } else {
        format!("EXECUTE {name}({args})")
    };
    let plan: serde_json::Value =
        sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) {execute}")))
            .fetch_one(&mut *conn)
            .await?;
    let mut all = Vec::new();
    nodes(&plan[0]["Plan"], &mut all);
    let mut scans = BTreeSet::new();
    let mut seq = Vec::new();
    for node in all {
        let kind = node["Node Type"].as_str().unwrap_or("?");
        let table = node["Relation Name"].as_str();
        let scan = match (node["Index Name"].as_str(), table) {
            (Some(index), Some(table)) => format!("{kind} {index} on {table}"),
            // A bitmap index scan names its index only; its heap scan names the table.
            (Some(index), None) => format!("{kind} {index}"),
            (None, Some(table)) => format!("{kind} on {table}"),
            (None, None) => continue,
        };
        let table = table.unwrap_or_default();
        if kind == "Seq Scan" && BIG_TABLES.contains(&table) {
            seq.push(scan.clone());
        }
        scans.insert(scan);
    }
    Ok((scans, seq))
}

#[sqlx::test(migrations = "../../migrations")]
async fn every_periodic_query_reads_through_an_index(pool: PgPool) -> anyhow::Result<()> {
    let started = Instant::now();
    let options = pool.connect_options();
    let mut conn = PgConnection::connect_with(&options).await?;
    sqlx::raw_sql(FILL).execute(&mut conn).await?;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(jobs, 1_000_000);
    let loaded = started.elapsed();

    let queries = periodic()?;
    let names: BTreeSet<&str> = queries.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names.len(),
        queries.len(),
        "two periodic queries share a name"
    );
    let known = arguments();
    for (name, _) in &known {
        assert!(names.contains(name), "no periodic query is named {name:?}");
    }
    // The sweeps, the relay, the delivery loop and the reconciliation, at the least.
    assert!(
        queries.len() >= 15,
        "only {} periodic queries: {names:?}",
        queries.len()
    );
    let mut failures = Vec::new();
    for (i, query) in queries.iter().enumerate() {
        let name = format!("periodic_{i}");
        let args = match known.iter().find(|(name, _)| *name == query.name) {
            Some((_, args)) => args.clone(),
            None => query
                .parameters
                .iter()
                .map(typical)
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(", "),
        };
        sqlx::raw_sql(AssertSqlSafe(format!("PREPARE {name} AS {}", query.text)))
            .execute(&mut conn)
            .await?;
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
                .execute(&mut conn)
                .await?;
            let (scans, seq) = explain(&mut conn, &name, &args).await?;
            println!("{} ({mode}): {scans:?}", query.name);
            if !seq.is_empty() {
                failures.push(format!("{} ({mode}): {seq:?}", query.name));
            }
            if let Some(index) = required_index(&query.name)
                && !scans.iter().any(|scan| scan.contains(index))
            {
                failures.push(format!(
                    "{} ({mode}) does not read {index}: {scans:?}",
                    query.name
                ));
            }
        }
    }
    println!(
        "loaded 1M jobs in {:.1?}, explained in {:.1?}",
        loaded,
        started.elapsed() - loaded
    );
    assert!(
        failures.is_empty(),
        "sequential scans of big tables, or a query off its index:\n{}",
        failures.join("\n")
    );
    conn.close().await?;
    Ok(())
}

/// Jobs running in a database that has no statistics yet (new, or autovacuum off).
const RUNNING: &str = r#"
INSERT INTO jobs (id, status, model_id, model_name, image_url, message, max_attempts,
                  attempt, lease_owner, lease_expires_at, started_at)
SELECT lpad(to_hex(i), 32, '0')::uuid, 'running', '124096', 'yolov5s-seg-coco',
       'https://img.example.org/' || i, 'm', 3, 1, 'w', now() + interval '1 minute', now()
FROM generate_series(1, 8000) AS i;
"#;

/// The statement every result goes through (`finish_jobs`) finds each of its jobs by its
/// primary key, in the first plans and in the generic one, on a table without statistics.
/// Its status test must not be one the status index answers: the generic plan then read
/// that index, every entry of every job ever running, to finish one.
#[sqlx::test(migrations = "../../migrations")]
async fn a_finish_finds_its_jobs_by_their_primary_key(pool: PgPool) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    sqlx::raw_sql(RUNNING).execute(&mut conn).await?;
    let finishes: Vec<String> = checked_queries()?
        .into_iter()
        .map(|(text, _)| text)
        .filter(|text| text.contains("UPDATE jobs j SET status"))
        .collect();
    let [finish] = finishes.as_slice() else {
        anyhow::bail!("expected one finish statement, found {}", finishes.len());
    };
    sqlx::raw_sql(AssertSqlSafe(format!("PREPARE finish AS {finish}")))
        .execute(&mut conn)
        .await?;
    let args = "'{00000000-0000-0000-0000-000000000064}', '{m}', '{1}', '{w}', 'succeeded', \
                'done', '{\"[]\"}', NULL, 'running', '{w}', NULL, 'foodseg.', 'pending', '{v}'";
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut conn)
            .await?;
        let (scans, _) = explain(&mut conn, "finish", args).await?;
        let elsewise: Vec<&String> = scans
            .iter()
            .filter(|s| s.contains("Scan") && (s.contains(" on jobs") || s.contains("jobs_")))
            .filter(|s| s.as_str() != "Index Scan jobs_pkey on jobs")
            .collect();
        assert!(
            scans.contains("Index Scan jobs_pkey on jobs") && elsewise.is_empty(),
            "{mode}: the finish reads jobs other than by their primary key: {scans:?}"
        );
    }
    conn.close().await?;
    Ok(())
}
