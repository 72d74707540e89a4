//! The worker's life around the jobs: stray messages, graceful shutdown, refusing to start
//! without the asked-for execution provider, health and metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use foodseg_engine::store::ClaimOutcome;
use foodseg_engine::{Backoff, JobStatus, RetryPolicy};
use foodseg_testkit::wait_until;
use foodseg_worker::Device;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::common::server::ImageServer;
use crate::common::{Env, MODEL_NAME};

/// Garbage and messages for unknown or finished jobs are acknowledged (gone from the
/// work-queue stream), never retried forever.
#[sqlx::test(migrations = "../../migrations")]
async fn stray_messages_are_acknowledged(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let subject = env.subjects.job(MODEL_NAME);
    env.bus
        .publish(&subject, "garbage", &[], "not json".into())
        .await?;
    let unknown = serde_json::json!({ "job_id": uuid::Uuid::now_v7() }).to_string();
    env.bus
        .publish(&subject, "unknown", &[], unknown.into())
        .await?;
    // A job in its retry backoff, and an early copy of its dispatch message: the copy is
    // dropped, the retry's own message waits in Postgres until the backoff is over.
    let job = env.enqueue("http://127.0.0.1:9/never.jpg", 3).await?;
    let ClaimOutcome::Claimed { fence, .. } = env
        .store
        .claim(job.id, "w-before", Duration::from_secs(15))
        .await?
    else {
        anyhow::bail!("the job could not be claimed");
    };
    let hour = RetryPolicy {
        backoff: Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600)),
    };
    env.store
        .retry(&fence, "image host 503", &hour, 0.5)
        .await?;
    let copy = serde_json::json!({ "job_id": job.id }).to_string();
    env.bus.publish(&subject, "early", &[], copy.into()).await?;
    wait_until(Duration::from_secs(30), || async {
        anyhow::Ok(env.store.outbox_pending().await? == 0)
    })
    .await
    .context("the first dispatch message to be published")?;

    let worker = env.start_worker(env.config("w-stray", 15.0));
    let js = env.bus.jetstream().clone();
    let stream_name = env.subjects.jobs_stream.clone();
    wait_until(Duration::from_secs(60), || async {
        let mut stream = js.get_stream(&stream_name).await?;
        anyhow::Ok(stream.info().await?.state.messages == 0)
    })
    .await
    .context("the stream to drain")?;
    // Nothing waits on the server: no delayed NAK holds an ack-pending slot.
    let consumer = js
        .get_stream(&stream_name)
        .await?
        .consumer_info(format!("worker-{MODEL_NAME}"))
        .await?;
    assert_eq!(consumer.num_ack_pending, 0);
    assert_eq!(
        consumer.config.max_ack_pending,
        2 * 256,
        "256 × concurrency"
    );
    assert_eq!(
        env.store.outbox_pending().await?,
        0,
        "the retry's message is parked"
    );
    let queued = env.store.get(job.id).await?.context("job")?;
    assert_eq!(queued.status, JobStatus::Queued);
    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}

/// Shutdown stops pulling; a job that cannot finish within the drain time is released
/// (back to QUEUED, no result) and then completes on the next worker.
#[sqlx::test(migrations = "../../migrations")]
async fn shutdown_releases_unfinished_jobs(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let job = env
        .enqueue(&server.url("/stall-once/fruits.jpg"), 3)
        .await?;
    let mut config = env.config("w-draining", 15.0);
    config.drain_timeout = Duration::from_millis(300);
    let worker = env.start_worker(config);
    env.wait_for(job.id, Duration::from_secs(60), |j| {
        j.status == JobStatus::Running
    })
    .await?;
    wait_until(Duration::from_secs(30), || async {
        server.stall_hits.load(Ordering::SeqCst) > 0
    })
    .await
    .context("the stalled fetch")?;
    worker.stop().await?;

    let released = env.store.get(job.id).await?.expect("job exists");
    assert_eq!(released.status, JobStatus::Queued, "{}", released.message);
    assert!(released.response.is_none());
    let events = env.store.events(job.id).await?;
    assert_eq!(
        events.last().and_then(|e| e.detail.as_deref()),
        Some("release")
    );

    let next = env.start_worker(env.config("w-next", 15.0));
    let done = env.wait_finished(job.id, Duration::from_secs(120)).await?;
    assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);
    assert_eq!(done.attempt.get(), 2);
    next.stop().await?;
    env.cleanup().await;
    Ok(())
}

/// CUDA asked for on a machine whose ONNX Runtime cannot load it: `run` fails with a clear
/// message before consuming anything.
#[sqlx::test(migrations = "../../migrations")]
async fn unavailable_cuda_refuses_to_start(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let job = env.enqueue("http://127.0.0.1:9/x.jpg", 3).await?;
    let mut config = env.config("w-cuda", 15.0);
    config.device = Device::Cuda { device_id: 0 };
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        foodseg_worker::run(config, CancellationToken::new()),
    )
    .await?;
    let err = result.expect_err("a CPU-only ONNX Runtime cannot run CUDA");
    let text = foodseg_engine::error_chain(&err);
    assert!(text.contains("CUDA"), "{text}");
    let job = env.store.get(job.id).await?.expect("job exists");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempt.get(), 0, "nothing was claimed");
    env.cleanup().await;
    Ok(())
}

/// `/health/live`, `/health/ready` and `/metrics` on the worker's listener.
#[sqlx::test(migrations = "../../migrations")]
async fn health_and_metrics_are_served(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let server = ImageServer::start(0).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = env.config("w-http", 15.0);
    config.http_addr = Some(([127, 0, 0, 1], port).into());
    let worker = env.start_worker(config);
    let base = format!("http://127.0.0.1:{port}");
    let http = foodseg_http::client()?;
    wait_until(Duration::from_secs(60), || async {
        match http.get(format!("{base}/health/ready")).send().await {
            Ok(r) => r.status() == 200,
            Err(_) => false,
        }
    })
    .await
    .context("readiness")?;
    assert_eq!(
        http.get(format!("{base}/health/live"))
            .send()
            .await?
            .status(),
        200
    );

    let job = env.enqueue(&server.url("/img/coffee.png"), 3).await?;
    let done = env.wait_finished(job.id, Duration::from_secs(120)).await?;
    assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        text.lines()
            .any(|l| l.starts_with("foodseg_worker_jobs_total")
                && l.contains("outcome=\"succeeded\"")
                && l.contains(MODEL_NAME)),
        "{text}"
    );
    for stage in ["fetch", "decode", "preprocess", "inference", "postprocess"] {
        let series = format!("foodseg_worker_stage_seconds_count{{stage=\"{stage}\"}}");
        assert!(text.contains(&series), "no {series} in {text}");
    }
    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}
