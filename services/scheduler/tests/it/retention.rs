//! The sweeper deletes finished jobs once the retention passed, a few batches per sweep,
//! keeps the others, and counts what it deleted in `/metrics`.

use std::time::Duration;

use anyhow::Context;
use foodseg_engine::JobId;
use foodseg_scheduler::maintenance::retention;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::common::{DEADLINE, Env, wait_until};

/// Moves job `id`'s finish (and creation) `secs` into the past.
async fn finished_ago(pool: &PgPool, id: JobId, secs: f64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE jobs SET finished_at = finished_at - make_interval(secs => $2), \
                created_at = created_at - make_interval(secs => $2) WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(secs)
    .execute(pool)
    .await?;
    Ok(())
}

/// A finished job without a webhook (nothing pending), finished `secs` ago.
async fn old_job(env: &Env, secs: f64) -> anyhow::Result<JobId> {
    let job = env.enqueue(None, 1).await?;
    let (_, fence) = env.claim(job.id).await?;
    env.store
        .succeed(&fence, &serde_json::json!([]), "test-version")
        .await?;
    finished_ago(&env.pool, job.id, secs).await?;
    Ok(job.id)
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_pass_deletes_at_most_its_batches_and_the_next_one_goes_on(
    pool: PgPool,
) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let hour = Duration::from_secs(3600);
    let mut old = Vec::new();
    for _ in 0..5 {
        old.push(old_job(&env, 7200.0).await?);
    }
    let recent = old_job(&env, 60.0).await?;

    assert_eq!(retention::purge(&env.store, hour, 2, 2).await?, 4);
    assert_eq!(retention::purge(&env.store, hour, 2, 2).await?, 1);
    assert_eq!(retention::purge(&env.store, hour, 2, 2).await?, 0);
    for id in old {
        assert!(env.store.get(id).await?.is_none(), "{id} deleted");
    }
    assert!(env.store.get(recent).await?.is_some(), "recent job kept");
    env.cleanup().await
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_sweeper_deletes_jobs_past_retention(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::new(pool).await?;
    let old = old_job(&env, 3.0 * 86_400.0).await?;
    let kept = old_job(&env, 86_400.0).await?;
    let queued = env.enqueue(None, 1).await?;
    finished_ago(&env.pool, queued.id, 3.0 * 86_400.0).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = env.config();
    config.retention = Some(Duration::from_secs(2 * 86_400));
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
        async move { store.get(old).await.ok()?.is_none().then_some(()) }
    })
    .await
    .context("the job finished three days ago to be deleted")?;
    assert!(env.store.get(kept).await?.is_some(), "within retention");
    assert!(env.store.get(queued.id).await?.is_some(), "not finished");

    let text = foodseg_http::client()?
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let deleted = text
        .lines()
        .find(|l| l.starts_with("foodseg_retention_jobs_deleted_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(deleted.is_some_and(|n| n >= 1.0), "{text}");

    shutdown.cancel();
    task.await??;
    env.cleanup().await
}
