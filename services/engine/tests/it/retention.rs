//! Retention against a real Postgres (one database per test): finished jobs past the
//! cutoff go, batch by batch, with their events, deliveries, attempts, upload and
//! idempotency key; unfinished jobs, recent ones and jobs whose webhook is still pending
//! stay.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use foodseg_engine::domain::{EndpointLimits, Health, HealthPolicy};
use foodseg_engine::store::{
    AttemptRecord, ClaimOutcome, IdempotencyKey, IdempotencyScope, NewJob, NewUpload,
};
use foodseg_engine::{AttemptOutcome, JobId, Store, Subjects};
use foodseg_testkit::new_job;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);
const DAY: i64 = 86_400;

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("tretention"))
}

fn job(webhook: bool) -> NewJob {
    let mut job = new_job("https://img.example.org/dish.jpg");
    if !webhook {
        job.webhook_url = None;
    }
    job
}

/// Claims `id` and finishes it: SUCCESS when `ok`, else ERROR.
async fn finish(store: &Store, id: JobId, ok: bool) -> anyhow::Result<()> {
    let ClaimOutcome::Claimed { fence, .. } = store.claim(id, "w", LEASE).await? else {
        anyhow::bail!("job {id} not claimed");
    };
    if ok {
        store
            .succeed(&fence, &serde_json::json!([]), "test-version")
            .await?;
    } else {
        store.fail(&fence, "bad image").await?;
    }
    Ok(())
}

/// Delivers every due webhook (one attempt each).
async fn deliver_all(store: &Store) -> anyhow::Result<usize> {
    let claims = store
        .claim_due_deliveries(100, LEASE, &EndpointLimits::default())
        .await?;
    for claim in &claims {
        let record = AttemptRecord {
            started_at: Utc::now(),
            latency: Duration::from_millis(12),
            status_code: Some(200),
            error: None,
            outcome: AttemptOutcome::Delivered,
            next_attempt_at: None,
        };
        let recorded = store
            .record_attempt(
                claim,
                &record,
                &Health::Up,
                &HealthPolicy::default(),
                "test",
            )
            .await?;
        anyhow::ensure!(recorded.is_some(), "attempt lost");
    }
    Ok(claims.len())
}

/// Moves every time of job `id` `days` into the past.
async fn age(pool: &PgPool, id: JobId, days: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE jobs SET created_at = created_at - make_interval(secs => $2), \
                updated_at = updated_at - make_interval(secs => $2), \
                finished_at = finished_at - make_interval(secs => $2) \
         WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind((days * DAY) as f64)
    .execute(pool)
    .await?;
    Ok(())
}

async fn count(pool: &PgPool, table: &str, column: &str, ids: &[Uuid]) -> anyhow::Result<i64> {
    let sql = format!("SELECT count(*) FROM {table} WHERE {column} = ANY($1)");
    // Table and column names are this file's literals.
    Ok(sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(ids)
        .fetch_one(pool)
        .await?)
}

#[sqlx::test(migrations = "../../migrations")]
async fn retention_deletes_old_finished_jobs_with_their_rows_in_batches(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = store(pool.clone());

    // Old and finished: deleted.
    let mut old = Vec::new();
    for _ in 0..4 {
        let j = store.enqueue(&job(true), "api").await?;
        finish(&store, j.id, true).await?;
        old.push(j.id);
    }
    let failed = store.enqueue(&job(false), "api").await?;
    finish(&store, failed.id, false).await?;
    old.push(failed.id);
    let uploaded = job(true);
    let upload = NewUpload {
        id: Uuid::now_v7(),
        content_type: "image/jpeg".into(),
        filename: "dish.jpg".into(),
        bytes: Bytes::from_static(b"\xff\xd8\xff\xe0bytes"),
        expires_at: Utc::now() + chrono::Duration::days(365),
    };
    let key = IdempotencyKey {
        scope: IdempotencyScope::Address("127.0.0.1".into()),
        key: "retention-key".into(),
        request_hash: [7; 32],
        keep: Duration::from_secs(400 * DAY as u64),
    };
    store
        .enqueue_idempotent(&uploaded, Some(&upload), &key, "api")
        .await?;
    finish(&store, uploaded.id, true).await?;
    old.push(uploaded.id);
    assert_eq!(deliver_all(&store).await?, 5, "every old webhook delivered");

    // Kept: finished recently, webhook still pending, not finished.
    let recent = store.enqueue(&job(true), "api").await?;
    finish(&store, recent.id, true).await?;
    deliver_all(&store).await?;
    let pending = store.enqueue(&job(true), "api").await?;
    finish(&store, pending.id, false).await?;
    let queued = store.enqueue(&job(true), "api").await?;
    let running = store.enqueue(&job(true), "api").await?;
    let ClaimOutcome::Claimed { .. } = store.claim(running.id, "w", LEASE).await? else {
        anyhow::bail!("not claimed");
    };
    for id in old.iter().chain([&pending.id, &queued.id, &running.id]) {
        age(&pool, *id, 40).await?;
    }
    age(&pool, recent.id, 10).await?;
    let kept = [recent.id, pending.id, queued.id, running.id];

    let old_ids: Vec<Uuid> = old.iter().map(|id| id.as_uuid()).collect();
    let kept_ids: Vec<Uuid> = kept.iter().map(|id| id.as_uuid()).collect();
    let old_deliveries: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE job_id = ANY($1)")
            .bind(&old_ids)
            .fetch_all(&pool)
            .await?;
    assert_eq!(old_deliveries.len(), 5);
    assert_eq!(
        count(&pool, "delivery_attempts", "delivery_id", &old_deliveries).await?,
        5
    );
    assert_eq!(count(&pool, "uploads", "job_id", &old_ids).await?, 1);
    assert_eq!(
        count(&pool, "idempotency_keys", "job_id", &old_ids).await?,
        1
    );
    let kept_events = count(&pool, "job_events", "job_id", &kept_ids).await?;
    let kept_deliveries = count(&pool, "deliveries", "job_id", &kept_ids).await?;
    assert_eq!(kept_deliveries, 2, "the recent job's and the pending one");

    // Six old jobs, two per batch: three full batches, then nothing.
    let cutoff = Utc::now() - chrono::Duration::days(30);
    let mut batches = Vec::new();
    loop {
        let n = store.delete_finished_jobs(cutoff, 2).await?;
        batches.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(batches, [2, 2, 2, 0]);

    for id in &old {
        assert!(store.get(*id).await?.is_none(), "{id} deleted");
    }
    for id in &kept {
        assert!(store.get(*id).await?.is_some(), "{id} kept");
    }
    assert_eq!(count(&pool, "job_events", "job_id", &old_ids).await?, 0);
    assert_eq!(count(&pool, "deliveries", "job_id", &old_ids).await?, 0);
    assert_eq!(
        count(&pool, "delivery_attempts", "delivery_id", &old_deliveries).await?,
        0
    );
    assert_eq!(count(&pool, "uploads", "job_id", &old_ids).await?, 0);
    assert_eq!(
        count(&pool, "idempotency_keys", "job_id", &old_ids).await?,
        0
    );
    assert_eq!(
        count(&pool, "job_events", "job_id", &kept_ids).await?,
        kept_events
    );
    assert_eq!(
        count(&pool, "deliveries", "job_id", &kept_ids).await?,
        kept_deliveries
    );

    // Once its webhook is delivered, the old job goes too.
    assert_eq!(deliver_all(&store).await?, 1);
    assert_eq!(store.delete_finished_jobs(cutoff, 2).await?, 1);
    assert!(store.get(pending.id).await?.is_none());
    Ok(())
}
