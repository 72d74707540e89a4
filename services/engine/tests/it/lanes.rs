//! Batches and the bulk lane against a real Postgres and NATS: a batch is written whole
//! with its idempotency keys, bulk dispatch messages are held and released within the
//! window with the owners taking turns, and cancelled jobs' held messages are dropped.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use foodseg_engine::store::{
    BatchCancel, BatchWrite, IdempotencyKey, IdempotencyScope, NewBatch, NewJob,
};
use foodseg_engine::{
    ApiKeyId, BatchId, JobId, JobStatus, Priority, Relay, RelayConfig, Scope, Store,
};
use foodseg_testkit::TestBus;
use futures::StreamExt;
use sqlx::PgPool;

use crate::relay::new_job;

/// A key named `name` (its token hash only needs to be unique here).
async fn key(store: &Store, name: &str) -> anyhow::Result<ApiKeyId> {
    let hash = *uuid::Uuid::new_v4().as_bytes();
    let mut token_hash = [0u8; 32];
    token_hash[..16].copy_from_slice(&hash);
    Ok(store
        .create_api_key(name, &[Scope::Submit], &token_hash)
        .await?
        .id)
}

fn idem(owner: ApiKeyId, key: &str, request: u8) -> IdempotencyKey {
    IdempotencyKey {
        scope: IdempotencyScope::Key(owner),
        key: key.into(),
        request_hash: [request; 32],
        keep: Duration::from_secs(3600),
    }
}

fn batch(owner: Option<ApiKeyId>, priority: Priority, n: usize) -> NewBatch {
    let id = BatchId::new();
    let items = (0..n)
        .map(|i| {
            let job = NewJob {
                id: JobId::new(),
                image_url: format!("https://images.example.org/{i}.jpg"),
                owner,
                priority,
                batch_id: Some(id),
                ..new_job()
            };
            (job, None)
        })
        .collect();
    NewBatch {
        id,
        owner,
        priority,
        items,
    }
}

async fn write(store: &Store, b: &NewBatch) -> anyhow::Result<(BatchId, Vec<foodseg_engine::Job>)> {
    match store.enqueue_batch(b, "test").await? {
        BatchWrite::Written { batch_id, items } => {
            Ok((batch_id, items.into_iter().map(|i| i.job).collect()))
        }
        other => anyhow::bail!("batch not written: {other:?}"),
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_is_written_whole_in_order_and_a_retry_answers_the_same_batch(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = Store::from_pool(pool.clone(), foodseg_testkit::unique_subjects());
    let owner = key(&store, "client-a").await?;
    let mut b = batch(Some(owner), Priority::Bulk, 3);
    b.items[0].1 = Some(idem(owner, "k0", 1));
    b.items[2].1 = Some(idem(owner, "k2", 2));
    let (id, jobs) = write(&store, &b).await?;
    assert_eq!(id, b.id);
    let sent: Vec<JobId> = b.items.iter().map(|(j, _)| j.id).collect();
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), sent);
    assert!(jobs.iter().all(|j| j.priority == Priority::Bulk
        && j.batch_id == Some(b.id)
        && j.owner_key_id == Some(owner)
        && j.status == JobStatus::Queued));
    // Bulk first dispatches are held for their owner.
    let held: Vec<Option<String>> = sqlx::query_scalar!("SELECT held_for FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await?;
    assert_eq!(held, vec![Some(owner.to_string()); 3]);

    // The same keyed jobs again: a retry of the whole batch (only keyed items).
    let mut retry = batch(Some(owner), Priority::Bulk, 2);
    retry.items[0].1 = Some(idem(owner, "k0", 1));
    retry.items[1].1 = Some(idem(owner, "k2", 2));
    let (again, replayed) = write(&store, &retry).await?;
    assert_eq!(again, b.id, "a retry answers the first batch");
    assert_eq!(replayed[0].id, jobs[0].id);
    assert_eq!(replayed[1].id, jobs[2].id);

    // A key reused for another request refuses the batch and writes nothing.
    let mut reused = batch(Some(owner), Priority::Interactive, 3);
    reused.items[1].1 = Some(idem(owner, "k2", 9));
    let before = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM jobs"#)
        .fetch_one(&pool)
        .await?;
    match store.enqueue_batch(&reused, "test").await? {
        BatchWrite::KeyReused { index, job_id } => {
            assert_eq!(index, 1);
            assert_eq!(job_id, jobs[2].id);
        }
        other => anyhow::bail!("expected a reused key, got {other:?}"),
    }
    let after = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM jobs"#)
        .fetch_one(&pool)
        .await?;
    assert_eq!(before, after);
    assert!(store.batch(reused.id, None).await?.is_none());

    // Progress: three queued, owner-scoped.
    let progress = store.batch(b.id, Some(owner)).await?.expect("own batch");
    assert_eq!(
        (progress.size, progress.queued, progress.remaining()),
        (3, 3, 3)
    );
    assert_eq!(progress.eta_seconds(), None);
    let other = key(&store, "client-b").await?;
    assert!(store.batch(b.id, Some(other)).await?.is_none());
    Ok(())
}

/// Pulls and acknowledges up to `n` messages of the bulk lane; returns their job ids.
async fn take(consumer: &PullConsumer, n: usize) -> anyhow::Result<Vec<JobId>> {
    let mut ids = Vec::new();
    let mut batch = consumer.fetch().max_messages(n).messages().await?;
    while let Some(msg) = batch.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("{e}"))?;
        let body: serde_json::Value = serde_json::from_slice(&msg.payload)?;
        ids.push(body["job_id"].as_str().unwrap_or_default().parse()?);
        msg.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(ids)
}

#[sqlx::test(migrations = "../../migrations")]
async fn held_bulk_messages_go_out_within_the_window_with_owners_taking_turns(
    pool: PgPool,
) -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let store = Store::from_pool(pool, tb.subjects.clone());
    let (a, b) = (key(&store, "a").await?, key(&store, "b").await?);
    // Key a sends a large backfill first; b sends a small one after.
    let (_, jobs_a) = write(&store, &batch(Some(a), Priority::Bulk, 1200)).await?;
    let (_, jobs_b) = write(&store, &batch(Some(b), Priority::Bulk, 10)).await?;
    store.enqueue(&new_job(), "test").await?;
    let window = 4;
    let relay = Relay::new(
        store.clone(),
        tb.bus.clone(),
        RelayConfig {
            bulk_window: window,
            ..RelayConfig::default()
        },
    );
    // The interactive job goes out at once; bulk ones only into the window.
    assert_eq!(relay.publish_pending().await?, 1);
    assert!(relay.release_held().await?);
    let stream = tb.bus.jobs_stream().await?;
    let waiting = stream.bulk_waiting(&tb.subjects).await?;
    let subject = tb.subjects.dispatch(Priority::Bulk, "m1");
    assert_eq!(waiting.get(&subject), Some(&u64::from(window)));
    // A second release finds no room.
    relay.release_held().await?;
    assert_eq!(tb.jobs_stream_len().await?, u64::from(window) + 1);

    let consumer: PullConsumer = tb
        .bus
        .jetstream()
        .get_stream(&tb.subjects.jobs_stream)
        .await?
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bulk".into()),
            filter_subject: subject,
            ..Default::default()
        })
        .await?;
    let of_b = |id: &JobId| jobs_b.iter().any(|j| j.id == *id);
    // Work through the backlog two at a time, releasing after each, until b's are done.
    let (mut taken_a, mut taken_b) = (0, 0);
    while taken_b < jobs_b.len() {
        let ids = take(&consumer, 2).await?;
        anyhow::ensure!(
            !ids.is_empty(),
            "the stream ran dry with {taken_b} of b's jobs out"
        );
        for id in &ids {
            if of_b(id) {
                taken_b += 1;
            } else {
                anyhow::ensure!(jobs_a.iter().any(|j| j.id == *id), "unknown job {id}");
                taken_a += 1;
            }
        }
        relay.release_held().await?;
    }
    // They took turns: b's ten jobs came out among about as many of a's (plus the first
    // window, released before b's turn came), not behind a's 1,200.
    assert!(
        taken_a <= jobs_b.len() + window as usize + 1,
        "{taken_a} of a's jobs went before b's {taken_b}"
    );
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn cancelling_a_batch_ends_its_queued_jobs_and_drops_their_held_messages(
    pool: PgPool,
) -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let store = Store::from_pool(pool.clone(), tb.subjects.clone());
    let owner = key(&store, "a").await?;
    let b = batch(Some(owner), Priority::Bulk, 5);
    write(&store, &b).await?;
    let other = key(&store, "b").await?;
    assert_eq!(
        store.cancel_batch(b.id, Some(other), "key:b").await?,
        BatchCancel::NotFound
    );
    let BatchCancel::Cancelled(ended) = store.cancel_batch(b.id, Some(owner), "key:a").await?
    else {
        anyhow::bail!("own batch not found");
    };
    assert_eq!(ended.len(), 5);
    assert!(ended.iter().all(|j| j.status == JobStatus::Failed));
    // Again: nothing left to cancel.
    assert_eq!(
        store.cancel_batch(b.id, None, "operator").await?,
        BatchCancel::Cancelled(vec![])
    );
    let progress = store.batch(b.id, None).await?.expect("batch");
    assert_eq!((progress.failed, progress.remaining()), (5, 0));
    assert_eq!(progress.cancelled_by.as_deref(), Some("key:a"));
    assert_eq!(progress.eta_seconds(), Some(0.0));

    let relay = Relay::new(store.clone(), tb.bus.clone(), RelayConfig::default());
    relay.publish_pending().await?; // the finished-job events
    relay.release_held().await?;
    let waiting = tb
        .bus
        .jobs_stream()
        .await?
        .bulk_waiting(&tb.subjects)
        .await?;
    assert!(waiting.is_empty(), "{waiting:?}");
    assert!(store.held_lanes().await?.is_empty());

    // Retention: the batch goes once its jobs are gone, not before.
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(store.delete_empty_batches(later, 10).await?, 0);
    assert_eq!(store.delete_finished_jobs(later, 10).await?, 5);
    assert_eq!(store.delete_empty_batches(later, 10).await?, 1);
    assert!(store.batch(b.id, None).await?.is_none());
    tb.cleanup().await;
    Ok(())
}
