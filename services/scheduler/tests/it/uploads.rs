//! The sweeper purges uploaded images once their job finished and the retention passed,
//! keeps those still needed, and counts what it deleted in `/metrics`.

use anyhow::Context;
use std::time::Duration;

use crate::common::{DEADLINE, Env, wait_until};
use chrono::Utc;
use foodseg_engine::store::{NewJob, NewUpload, upload_image_url};
use foodseg_engine::{Attempt, JobId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A QUEUED job with an uploaded image.
async fn uploaded_job(env: &Env) -> anyhow::Result<JobId> {
    let id = JobId::new();
    let job = NewJob {
        id,
        model_id: "124096".into(),
        model_name: "test-model".into(),
        image_url: upload_image_url(id, "dish.jpg"),
        webhook_url: None,
        max_attempts: Attempt::new(3),
        trace_id: None,
        traceparent: None,
        owner: None,
        priority: Default::default(),
        batch_id: None,
    };
    let upload = NewUpload {
        id: Uuid::now_v7(),
        content_type: "image/jpeg".into(),
        filename: "dish.jpg".into(),
        bytes: b"\xff\xd8\xff\xe0 not really a photo".as_slice().into(),
        expires_at: Utc::now() + chrono::Duration::days(7),
    };
    env.store.enqueue_upload(&job, &upload, "test").await?;
    Ok(id)
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_sweeper_purges_uploads_of_finished_jobs_after_retention(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let finished = uploaded_job(&env).await?;
    let (_, fence) = env.claim(finished).await?;
    env.store
        .succeed(&fence, &serde_json::json!([]), "test-version")
        .await?;
    let queued = uploaded_job(&env).await?;
    let running = uploaded_job(&env).await?;
    env.claim(running).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = env.config();
    // Purge as soon as a job finished.
    config.upload_retention = Duration::ZERO;
    let parts = foodseg_scheduler::Parts {
        store: env.store.clone(),
        bus: env.bus.clone(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(foodseg_scheduler::serve(
        config,
        parts,
        Some(listener),
        shutdown.clone(),
    ));

    let store = env.store.clone();
    wait_until(DEADLINE, || {
        let store = store.clone();
        async move {
            store
                .load_upload(finished)
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await
    .context("the finished job's upload to be purged")?;
    // The same statement looked at the others: the jobs still need their images.
    assert!(env.store.load_upload(queued).await?.is_some());
    assert!(env.store.load_upload(running).await?.is_some());
    // The job and its result stay.
    let job = env.store.get(finished).await?.expect("job kept");
    assert_eq!(job.response, Some(serde_json::json!([])));

    let text = foodseg_http::client()?
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let purged = text
        .lines()
        .find(|l| l.starts_with("foodseg_uploads_purged_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(purged, Some(1.0), "{text}");

    shutdown.cancel();
    task.await??;
    env.cleanup().await
}

#[test]
fn retention_defaults_to_a_day_and_is_configurable() -> anyhow::Result<()> {
    let read = |v: Option<&str>| {
        foodseg_scheduler::Config::load(&foodseg_runtime::Env::from_pairs(
            v.map(|v| ("FOODSEG_UPLOAD_RETENTION_HOURS", v)),
        ))
    };
    assert_eq!(read(None)?.upload_retention, Duration::from_secs(24 * 3600));
    assert_eq!(read(Some("2"))?.upload_retention, Duration::from_secs(7200));
    let e = read(Some("-3")).expect_err("negative retention");
    assert_eq!(e.var, "FOODSEG_UPLOAD_RETENTION_HOURS");
    Ok(())
}
