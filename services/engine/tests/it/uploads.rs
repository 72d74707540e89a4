//! Uploaded images in the store against a real Postgres (one database per test): written
//! with their job in one transaction, read back by job id, purged after retention.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use foodseg_engine::store::{ClaimOutcome, NewJob, NewUpload, upload_image_url};
use foodseg_engine::{Attempt, JobId, JobStatus, Store, Subjects};
use sqlx::PgPool;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("tuploads"))
}

fn new_upload(bytes: &'static [u8], expires_at: DateTime<Utc>) -> (NewJob, NewUpload) {
    let id = JobId::new();
    let job = NewJob {
        id,
        model_id: "124096".into(),
        model_name: "yolov5s-seg-coco".into(),
        image_url: upload_image_url(id, "dish.jpg"),
        webhook_url: None,
        max_attempts: Attempt::new(2),
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
        bytes: Bytes::from_static(bytes),
        expires_at,
    };
    (job, upload)
}

/// Rows in `jobs`, `job_events`, `outbox` and `uploads`.
#[derive(Debug, PartialEq)]
struct Rows {
    jobs: i64,
    events: i64,
    outbox: i64,
    uploads: i64,
}

async fn rows(pool: &PgPool) -> anyhow::Result<Rows> {
    Ok(sqlx::query_as!(
        Rows,
        r#"SELECT (SELECT count(*) FROM jobs) AS "jobs!",
                  (SELECT count(*) FROM job_events) AS "events!",
                  (SELECT count(*) FROM outbox) AS "outbox!",
                  (SELECT count(*) FROM uploads) AS "uploads!""#
    )
    .fetch_one(pool)
    .await?)
}

async fn upload_exists(store: &Store, job_id: JobId) -> anyhow::Result<bool> {
    Ok(store.load_upload(job_id).await?.is_some())
}

/// Enqueues an upload and, when `finish` is set, runs it to SUCCESS.
async fn stored(store: &Store, expires_at: DateTime<Utc>, finish: bool) -> anyhow::Result<JobId> {
    let (job, upload) = new_upload(b"\xff\xd8\xff\xe0bytes", expires_at);
    store.enqueue_upload(&job, &upload, "api").await?;
    if finish {
        let fence = match store.claim(job.id, "w", LEASE).await? {
            ClaimOutcome::Claimed { fence, .. } => fence,
            other => anyhow::bail!("not claimed: {other:?}"),
        };
        store
            .succeed(&fence, &serde_json::json!([]), "test-version")
            .await?;
    }
    Ok(job.id)
}

#[sqlx::test(migrations = "../../migrations")]
async fn enqueue_upload_writes_job_event_outbox_and_bytes(pool: PgPool) -> anyhow::Result<()> {
    let store = store(pool.clone());
    let expires_at = Utc::now() + chrono::Duration::days(7);
    let (job, upload) = new_upload(b"\x89PNG\r\n\x1a\nrest", expires_at);
    let queued = store.enqueue_upload(&job, &upload, "api").await?;
    assert_eq!(queued.status, JobStatus::Queued);
    assert_eq!(queued.image_url, format!("upload://{}/dish.jpg", job.id));
    let rows = rows(&pool).await?;
    assert_eq!((rows.events, rows.outbox, rows.uploads), (1, 1, 1));

    let loaded = store.load_upload(job.id).await?.expect("upload stored");
    assert_eq!(loaded.id, upload.id);
    assert_eq!(loaded.job_id, job.id);
    assert_eq!(loaded.bytes, b"\x89PNG\r\n\x1a\nrest");
    assert_eq!(loaded.size, 12);
    assert_eq!(loaded.filename, "dish.jpg");
    assert_eq!(loaded.content_type, "image/jpeg");
    assert_eq!(store.load_upload(JobId::new()).await?, None);
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_failed_enqueue_stores_no_bytes(pool: PgPool) -> anyhow::Result<()> {
    let store = store(pool.clone());
    let expires_at = Utc::now() + chrono::Duration::days(7);
    let (job, upload) = new_upload(b"first", expires_at);
    store.enqueue_upload(&job, &upload, "api").await?;
    // Same job id again: the job insert fails, and the second upload must not remain.
    let again = NewUpload {
        id: Uuid::now_v7(),
        ..upload.clone()
    };
    assert!(store.enqueue_upload(&job, &again, "api").await.is_err());
    assert_eq!(rows(&pool).await?.uploads, 1);

    // The upload insert fails (duplicate upload id): the job must not remain either.
    let (other_job, _) = new_upload(b"second", expires_at);
    assert!(
        store
            .enqueue_upload(&other_job, &upload, "api")
            .await
            .is_err()
    );
    assert_eq!(store.get(other_job.id).await?, None);
    assert_eq!(
        rows(&pool).await?,
        Rows {
            jobs: 1,
            events: 1,
            outbox: 1,
            uploads: 1
        }
    );
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn purge_deletes_uploads_of_jobs_finished_past_retention_and_past_the_hard_maximum(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = store(pool.clone());
    let now = Utc::now();
    let week = now + chrono::Duration::days(7);
    let finished = stored(&store, week, true).await?;
    let queued = stored(&store, week, false).await?;
    let queued_expired = stored(&store, now + chrono::Duration::hours(3), false).await?;

    // Right now nothing is past retention or expiry.
    assert_eq!(store.purge_expired_uploads(now, HOUR, 100).await?, 0);
    for id in [finished, queued, queued_expired] {
        assert!(upload_exists(&store, id).await?);
    }

    // Two hours on: the finished job's upload is past its 1 h retention; the queued
    // jobs still need theirs.
    let later = now + chrono::Duration::hours(2);
    assert_eq!(store.purge_expired_uploads(later, HOUR, 100).await?, 1);
    assert!(!upload_exists(&store, finished).await?);
    assert!(upload_exists(&store, queued).await?);
    assert!(upload_exists(&store, queued_expired).await?);
    // The job itself stays.
    assert_eq!(
        store.get(finished).await?.map(|j| j.status),
        Some(JobStatus::Succeeded)
    );

    // Past the hard maximum, an upload goes whatever its job's state.
    let much_later = now + chrono::Duration::hours(4);
    assert_eq!(store.purge_expired_uploads(much_later, HOUR, 100).await?, 1);
    assert!(!upload_exists(&store, queued_expired).await?);
    assert!(upload_exists(&store, queued).await?);
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn purge_works_in_batches(pool: PgPool) -> anyhow::Result<()> {
    let store = store(pool.clone());
    let soon = Utc::now() + chrono::Duration::minutes(1);
    for _ in 0..5 {
        stored(&store, soon, false).await?;
    }
    let later = soon + chrono::Duration::minutes(1);
    assert_eq!(store.purge_expired_uploads(later, HOUR, 2).await?, 2);
    assert_eq!(store.purge_expired_uploads(later, HOUR, 2).await?, 2);
    assert_eq!(store.purge_expired_uploads(later, HOUR, 2).await?, 1);
    assert_eq!(store.purge_expired_uploads(later, HOUR, 2).await?, 0);
    assert_eq!(rows(&pool).await?.uploads, 0);
    Ok(())
}
