//! A worker killed mid-job: its lease lapses, the sweep re-drives the job, another worker
//! completes it, and exactly one result is stored.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use foodseg_engine::{JobId, JobStatus};
use foodseg_testkit::wait_until;
use sqlx::PgPool;

use crate::common::Env;
use crate::common::server::ImageServer;
use tokio_util::sync::CancellationToken;

#[sqlx::test(migrations = "../../migrations")]
async fn killed_worker_job_completes_on_another(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let job = env
        .enqueue(&server.url("/stall-once/fruits.jpg"), 3)
        .await?;

    // Worker A runs on its own runtime so that killing it stops every task it has.
    let runtime_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime_a.spawn(foodseg_worker::run(
        env.config("w-a", 2.0),
        CancellationToken::new(),
    ));
    let running = env
        .wait_for(job.id, Duration::from_secs(60), |j| {
            j.status == JobStatus::Running
        })
        .await?;
    assert_eq!(running.lease_owner.as_deref(), Some("w-a"));
    wait_until(Duration::from_secs(30), || async {
        server.stall_hits.load(Ordering::SeqCst) > 0
    })
    .await
    .context("worker A never fetched the image")?;
    // Kill A mid-fetch: no release, no result; its lease just stops being renewed.
    runtime_a.shutdown_background();

    let worker_b = env.start_worker(env.config("w-b", 15.0));
    // The scheduler's sweep, run here directly: re-drive once A's lease has lapsed.
    wait_until(Duration::from_secs(30), || async {
        let report = env
            .store
            .redrive_expired("test-sweeper", Duration::ZERO, 10)
            .await?;
        anyhow::ensure!(report.failed.is_empty(), "{report:?}");
        anyhow::Ok(report.redriven.contains(&job.id))
    })
    .await
    .context("lease of the killed worker never lapsed")?;

    let done = env.wait_finished(job.id, Duration::from_secs(120)).await?;
    assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);
    assert_eq!(done.attempt.get(), 2);
    assert_eq!(env.events_to(job.id, JobStatus::Succeeded).await?, 1);
    assert_eq!(env.events_to(job.id, JobStatus::Running).await?, 2);
    let claims: Vec<String> = env
        .store
        .events(job.id)
        .await?
        .into_iter()
        .filter(|e| e.to_status == JobStatus::Running)
        .map(|e| e.actor)
        .collect();
    assert_eq!(claims, ["w-a", "w-b"]);
    let finished_messages = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM outbox
           WHERE payload->>'job_id' = $1::text AND payload ? 'status'"#,
        job.id as JobId
    )
    .fetch_one(env.store.pool())
    .await?;
    assert_eq!(finished_messages, 1, "exactly one finished-job event");
    assert_eq!(server.stall_hits.load(Ordering::SeqCst), 2);

    worker_b.stop().await?;
    env.cleanup().await;
    Ok(())
}
