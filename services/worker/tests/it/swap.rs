//! A model's file replaced while 200 of its jobs are in flight: the worker loads the new
//! version beside the old one, warms it and sends the jobs claimed from then on to it,
//! without a restart and without failing a job.

use std::path::Path;
use std::time::Duration;

use crate::common::server::ImageServer;
use crate::common::{Env, MODEL_NAME};
use foodseg_engine::JobStatus;
use foodseg_testkit::{repo_models_dir, wait_until};
use sqlx::PgPool;

const JOBS: usize = 200;
const FINISH: Duration = Duration::from_secs(600);

/// A copy of the shipped model in a directory of its own.
fn models_copy(dir: &Path) -> anyhow::Result<()> {
    let from = repo_models_dir().join(MODEL_NAME);
    let to = dir.join(MODEL_NAME);
    std::fs::create_dir_all(&to)?;
    for file in ["model.toml", "model.onnx"] {
        std::fs::copy(from.join(file), to.join(file))?;
    }
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_model_replaced_under_load_serves_its_new_version_without_a_restart(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let url = server.url("/img/fruits.jpg");
    let dir = std::env::temp_dir().join(format!("foodseg-swap-{}", foodseg_engine::JobId::new()));
    models_copy(&dir)?;
    let onnx = dir.join(MODEL_NAME).join("model.onnx");
    let old_version = foodseg_models::file_sha256(&onnx)?;

    let mut config = env.config("w-swap", 15.0);
    config.common.models_dir = dir.clone();
    config.common.models_poll = Some(Duration::from_millis(200));
    config.concurrency = 2;
    let worker = env.start_worker(config);
    let mut jobs = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        jobs.push(env.enqueue(&url, 3).await?.id);
    }
    // Some jobs are done on the old version before the file changes.
    wait_until(FINISH, || async {
        let done = jobs_done(&env, &jobs).await.ok()?;
        (done >= 20).then_some(())
    })
    .await?;

    // Another version of the same weights: the file with one protobuf field appended that
    // ONNX Runtime does not know and skips (field 999, varint 1). It is written beside the
    // model directory and renamed into place, as a deployment does.
    let mut bytes = std::fs::read(&onnx)?;
    bytes.extend_from_slice(&[0xb8, 0x3e, 0x01]);
    let staged = dir.join("model.onnx.new");
    std::fs::write(&staged, &bytes)?;
    std::fs::rename(&staged, &onnx)?;
    let new_version = foodseg_models::file_sha256(&onnx)?;
    assert_ne!(old_version, new_version);

    let mut finished = Vec::with_capacity(JOBS);
    for id in &jobs {
        let job = env.wait_finished(*id, FINISH).await?;
        assert_eq!(job.status, JobStatus::Succeeded, "{}", job.message);
        finished.push(job);
    }
    assert!(!worker.task.is_finished(), "the worker kept running");
    worker.stop().await?;

    // Every job names a version, old or new; ordered by claim, the old ones come first,
    // except for at most the worker's concurrency of jobs claimed as the swap happened
    // (each takes the runtime current right after its claim returns).
    finished.sort_by_key(|j| j.started_at);
    let versions: Vec<&str> = finished
        .iter()
        .map(|j| j.model_version.as_deref().unwrap_or("none"))
        .collect();
    assert!(
        versions
            .iter()
            .all(|v| *v == old_version || *v == new_version),
        "{versions:?}"
    );
    let first_new = versions
        .iter()
        .position(|v| *v == new_version)
        .expect("jobs claimed after the swap ran on the new version");
    let old_after = versions[first_new..]
        .iter()
        .filter(|v| **v == old_version)
        .count();
    assert!(
        old_after <= 2,
        "{old_after} old-version jobs claimed after the first new one"
    );
    assert!(first_new >= 20, "the first 20 jobs ran on the old version");
    assert!(
        versions.iter().filter(|v| **v == new_version).count() > 0,
        "some jobs ran on the new version"
    );
    let mut times: Vec<f64> = finished.iter().filter_map(|j| j.processing_time).collect();
    times.sort_by(f64::total_cmp);
    let around: Vec<f64> = finished[first_new.saturating_sub(3)..(first_new + 3).min(JOBS)]
        .iter()
        .filter_map(|j| j.processing_time)
        .collect();
    eprintln!(
        "swap: {first_new} jobs on the old version before the first on the new one, {} on the new one, \
         {old_after} old after it; processing time median {:.3} s, max {:.3} s; around the swap {around:.3?}",
        versions.iter().filter(|v| **v == new_version).count(),
        times[times.len() / 2],
        times[times.len() - 1],
    );
    // The result's event names the version.
    let last = finished.last().expect("jobs");
    let events = env.store.events(last.id).await?;
    let detail = events
        .iter()
        .find(|e| e.to_status == JobStatus::Succeeded)
        .and_then(|e| e.detail.clone())
        .unwrap_or_default();
    assert_eq!(
        detail,
        format!("model {MODEL_NAME} version {}", &new_version[..12])
    );
    env.cleanup().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

async fn jobs_done(env: &Env, ids: &[foodseg_engine::JobId]) -> anyhow::Result<usize> {
    let mut done = 0;
    for id in ids {
        if env
            .store
            .get(*id)
            .await?
            .is_some_and(|j| j.status.is_terminal())
        {
            done += 1;
        }
    }
    Ok(done)
}
