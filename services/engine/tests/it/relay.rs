//! The outbox relay against real Postgres and NATS (own database and streams per test).

use std::time::Duration;

use foodseg_engine::store::NewJob;
use foodseg_engine::{Attempt, JobId, Relay, RelayConfig, Store};
use foodseg_testkit::{TestBus, wait_until};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// A job on model `m1` with a trace context and no webhook.
pub(crate) fn new_job() -> NewJob {
    NewJob {
        id: JobId::new(),
        model_id: "124096".into(),
        model_name: "m1".into(),
        image_url: "https://images.example.org/a.jpg".into(),
        webhook_url: None,
        max_attempts: Attempt::new(3),
        trace_id: None,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        owner: None,
        priority: Default::default(),
        batch_id: None,
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn relay_publishes_outbox_rows_with_msg_id_and_trace_header(
    pool: PgPool,
) -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let store = Store::from_pool(pool, tb.subjects.clone());
    let relay = Relay::new(store.clone(), tb.bus.clone(), RelayConfig::default());
    let waker = relay.waker();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay.run(shutdown.clone()));

    let job = store.enqueue(&new_job(), "test").await?;
    waker.wake();
    let subject = tb.subjects.job("m1");
    let msg = wait_until(Duration::from_secs(10), || async {
        tb.last_message(&subject).await.ok().flatten()
    })
    .await?;
    let body: serde_json::Value = serde_json::from_slice(&msg.payload)?;
    assert_eq!(body["job_id"], job.id.to_string());
    assert_eq!(
        msg.headers.get("Nats-Msg-Id").map(|v| v.to_string()),
        Some(job.id.to_string())
    );
    assert_eq!(
        msg.headers.get("traceparent").map(|v| v.to_string()),
        job.traceparent.clone()
    );
    wait_until(Duration::from_secs(10), || async {
        store.outbox_pending().await.ok() == Some(0)
    })
    .await?;

    shutdown.cancel();
    task.await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn republishing_a_row_is_deduplicated_by_the_stream(pool: PgPool) -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let store = Store::from_pool(pool.clone(), tb.subjects.clone());
    let relay = Relay::new(store.clone(), tb.bus.clone(), RelayConfig::default());
    store.enqueue(&new_job(), "test").await?;
    assert_eq!(relay.publish_pending().await?, 1);
    // A relay that published but died before marking the row: the row is published again.
    sqlx::query!("UPDATE outbox SET published_at = NULL")
        .execute(&pool)
        .await?;
    assert_eq!(relay.publish_pending().await?, 1);
    assert_eq!(tb.jobs_stream_len().await?, 1);
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn two_relays_publish_each_row_once(pool: PgPool) -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let store = Store::from_pool(pool, tb.subjects.clone());
    let config = RelayConfig {
        batch_size: 7,
        ..RelayConfig::default()
    };
    for _ in 0..50 {
        store.enqueue(&new_job(), "test").await?;
    }
    let a = Relay::new(store.clone(), tb.bus.clone(), config.clone());
    let b = Relay::new(store.clone(), tb.bus.clone(), config);
    let (na, nb) = tokio::try_join!(a.publish_pending(), b.publish_pending())?;
    assert_eq!(na + nb, 50);
    assert_eq!(tb.jobs_stream_len().await?, 50);
    assert_eq!(store.outbox_pending().await?, 0);
    tb.cleanup().await;
    Ok(())
}
