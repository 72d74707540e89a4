//! Shadow runs on the real model: a worker with `FOODSEG_SHADOW` set to the shipped model
//! under a second name runs the share of its jobs the ids select on that candidate too,
//! after each job's result is written, and keeps the comparison beside the job; the jobs
//! themselves are as without it. Same weights, so the two agree on every class.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use foodseg_engine::{JobDocument, JobId, JobStatus};
use foodseg_models::Registry;
use foodseg_testkit::wait_until;
use foodseg_worker::config::ShadowConfig;
use foodseg_worker::shadow::selected;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::server::ImageServer;
use crate::common::{Env, MODEL_NAME};

/// Jobs the test sends (on 2 CPU cores the model runs about 5 images a second).
const JOBS: usize = 100;
/// The share shadowed.
const SHARE: f64 = 0.5;
/// The candidate's name and alias in the test's models directory.
const CANDIDATE: &str = "yolo-shadow";
const CANDIDATE_ALIAS: &str = "shadow-1";
const FINISH: Duration = Duration::from_secs(900);

/// A models directory holding the shipped model and a copy of it under another name,
/// both on the shipped ONNX file (symlinked); removed on drop.
struct ShadowModels {
    dir: PathBuf,
}

impl ShadowModels {
    fn new() -> anyhow::Result<Self> {
        let shipped = std::path::absolute(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../models")
                .join(MODEL_NAME),
        )?;
        let dir = std::env::temp_dir().join(format!("foodseg-shadow-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::symlink(&shipped, dir.join(MODEL_NAME))?;
        let manifest = std::fs::read_to_string(shipped.join("model.toml"))?;
        // The top-level name and aliases (before the first table) change; `[input]`'s
        // name stays.
        let mut top = true;
        let renamed: Vec<String> = manifest
            .lines()
            .map(|line| {
                top &= !line.starts_with('[');
                if top && line.starts_with("name =") {
                    format!("name = {CANDIDATE:?}")
                } else if top && line.starts_with("aliases =") {
                    format!("aliases = [{CANDIDATE_ALIAS:?}]")
                } else {
                    line.to_string()
                }
            })
            .collect();
        let candidate = dir.join(CANDIDATE);
        std::fs::create_dir_all(&candidate)?;
        std::fs::write(candidate.join("model.toml"), renamed.join("\n"))?;
        let onnx = manifest
            .lines()
            .find_map(|l| l.strip_prefix("file = "))
            .map(|f| f.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| "model.onnx".into());
        std::os::unix::fs::symlink(shipped.join(&onnx), candidate.join(&onnx))?;
        Ok(ShadowModels { dir })
    }
}

impl Drop for ShadowModels {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stored shadow run.
#[derive(sqlx::FromRow)]
struct Row {
    job_id: Uuid,
    model_name: String,
    model_version: String,
    candidate: String,
    candidate_version: String,
    items: serde_json::Value,
    classes: serde_json::Value,
    model_seconds: f64,
    candidate_seconds: f64,
    created_at: DateTime<Utc>,
}

async fn rows(env: &Env) -> anyhow::Result<Vec<Row>> {
    Ok(sqlx::query_as::<_, Row>(
        "SELECT job_id, model_name, model_version, candidate, candidate_version, items, classes,
                model_seconds, candidate_seconds, created_at
         FROM shadow_results ORDER BY job_id",
    )
    .fetch_all(env.store.pool())
    .await?)
}

/// Category name → items, of a v1 item list.
fn per_class(items: &serde_json::Value) -> BTreeMap<String, i64> {
    let mut classes = BTreeMap::new();
    for item in items.as_array().into_iter().flatten() {
        let name = item["category_name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *classes.entry(name).or_default() += 1;
    }
    classes
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_share_of_the_jobs_runs_on_the_candidate_too(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let models = ShadowModels::new()?;
    let mut config = env.config("w-shadow", 15.0);
    config.common.models_dir = models.dir.clone();
    config.models = vec![MODEL_NAME.into()];
    config.concurrency = 2;
    // One session per model, of the same kind: the two runs of an image are the same
    // computation.
    config.batch.parallel_runs = 1;
    config.shadow = Some(ShadowConfig {
        candidate: CANDIDATE_ALIAS.into(),
        share: SHARE,
    });
    let worker = env.start_worker(config);

    let started = Instant::now();
    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let photo = if i % 2 == 0 {
            "fruits.jpg"
        } else {
            "coffee.png"
        };
        jobs.push(
            env.enqueue(&server.url(&format!("/img/{photo}")), 1)
                .await?,
        );
    }
    let expected: BTreeSet<JobId> = jobs
        .iter()
        .map(|j| j.id)
        .filter(|id| selected(*id, SHARE))
        .collect();
    assert!(
        (JOBS / 4..JOBS * 3 / 4).contains(&expected.len()),
        "{} of {JOBS} selected",
        expected.len()
    );

    // Every job finishes (and the worker keeps running meanwhile).
    let finished = wait_until(FINISH, || async {
        anyhow::ensure!(!worker.task.is_finished(), "the worker stopped");
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed')")
                .fetch_one(env.store.pool())
                .await?;
        anyhow::Ok(n as usize == JOBS)
    })
    .await;
    if let Err(e) = finished {
        if worker.task.is_finished() {
            let stopped = worker.task.await?;
            anyhow::bail!("the worker stopped: {stopped:?}");
        }
        return Err(e.context("the jobs to finish"));
    }
    let mut done = BTreeMap::new();
    for job in &jobs {
        let finished = env.store.get(job.id).await?.expect("the job");
        assert_eq!(
            finished.status,
            JobStatus::Succeeded,
            "{}",
            finished.message
        );
        done.insert(job.id, finished);
    }
    let all_done = started.elapsed();
    // Every selected job's shadow run is recorded (each follows its job's write).
    let stored = wait_until(FINISH, || async {
        let rows = rows(&env).await?;
        anyhow::Ok((rows.len() >= expected.len()).then_some(rows))
    })
    .await?;
    println!(
        "{JOBS} jobs done in {all_done:.1?}, {} shadow runs in {:.1?}",
        stored.len(),
        started.elapsed()
    );
    let shadowed: BTreeSet<JobId> = stored.iter().map(|r| JobId::from_uuid(r.job_id)).collect();
    assert_eq!(shadowed, expected, "the ids decide which jobs are shadowed");

    let version = Registry::load(&models.dir)?
        .get(MODEL_NAME)
        .map(|m| m.version().to_string())
        .expect("the model");
    for row in &stored {
        let job = &done[&JobId::from_uuid(row.job_id)];
        assert_eq!(row.model_name, MODEL_NAME);
        assert_eq!(row.candidate, CANDIDATE, "stored by registry name");
        assert_eq!(row.model_version, version);
        assert_eq!(row.candidate_version, version, "the same weights");
        assert!(row.model_seconds > 0.0 && row.candidate_seconds > 0.0);
        let finished_at = job.finished_at.expect("a finished job");
        assert!(
            row.created_at >= finished_at,
            "the shadow run follows the result: {} < {finished_at}",
            row.created_at
        );
        // The same items, class by class, all matched.
        let response = job.response.clone().unwrap_or_default();
        let ours = per_class(&response);
        assert_eq!(per_class(&row.items), ours, "job {}", row.job_id);
        let classes: BTreeMap<String, BTreeMap<String, i64>> =
            serde_json::from_value(row.classes.clone())?;
        assert_eq!(classes.len(), ours.len(), "{}", row.classes);
        for (class, n) in &ours {
            let c = &classes[class];
            assert_eq!(
                (c["model"], c["candidate"], c["matched"]),
                (*n, *n, *n),
                "{class}: {}",
                row.classes
            );
        }
    }
    // The jobs are as without shadow runs: each document the same shape, whether its job
    // was shadowed or not, with its own items.
    let keys = |id: &JobId| -> BTreeSet<String> {
        let doc = serde_json::to_value(JobDocument::from(&done[id])).unwrap_or_default();
        doc.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let plain = jobs
        .iter()
        .map(|j| j.id)
        .find(|id| !expected.contains(id))
        .expect("a job not shadowed");
    for id in &expected {
        assert_eq!(keys(id), keys(&plain));
        let doc = serde_json::to_value(JobDocument::from(&done[id]))?;
        assert_eq!(doc["status"], "MFR.Job.SUCCESS");
        assert!(!doc.to_string().contains(CANDIDATE), "{doc}");
    }
    let fruits = &done[&jobs[0].id];
    assert!(
        per_class(fruits.response.as_ref().expect("items")).contains_key("orange"),
        "the fruits photo has its orange"
    );

    // Compared in SQL: the same weights agree fully on every class.
    let since = Utc::now() - chrono::Duration::hours(1);
    let cmp = env
        .store
        .shadow_comparison(MODEL_NAME, CANDIDATE, since)
        .await?;
    assert_eq!(cmp.jobs, expected.len() as i64);
    assert!(!cmp.classes.is_empty());
    for class in &cmp.classes {
        assert_eq!(class.counts.agreement, Some(1.0), "{class:?}");
    }
    assert_eq!(cmp.overall.agreement, Some(1.0));
    assert_eq!(cmp.versions.len(), 1);
    assert!(cmp.model_seconds.p50.is_some() && cmp.candidate_seconds.p95.is_some());

    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_unknown_candidate_stops_the_worker_at_start(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let mut config = env.config("w-shadow-unknown", 15.0);
    config.shadow = Some(ShadowConfig {
        candidate: "no-such-model".into(),
        share: 0.1,
    });
    let worker = env.start_worker(config);
    let error = tokio::time::timeout(Duration::from_secs(120), worker.task)
        .await??
        .expect_err("the worker does not start");
    let message = foodseg_engine::error_chain(&error);
    assert!(message.contains("FOODSEG_SHADOW"), "{message}");
    assert!(message.contains("\"no-such-model\""), "{message}");
    assert!(message.contains("124096"), "the known ids: {message}");
    env.cleanup().await;
    Ok(())
}
