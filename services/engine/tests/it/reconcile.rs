//! The daily reconciliation against a real Postgres (one database per test): every count
//! is bounded to the reported UTC day, and a day is reported once.

use chrono::{DateTime, Utc};
use foodseg_engine::store::{
    JobStateCount, LOST_FAIL_DETAIL, REDRIVE_DETAIL, REPUBLISH_DETAIL, day_bounds,
};
use foodseg_engine::{JobId, JobStatus, Store, Subjects};
use foodseg_testkit::{finished_job, new_job};
use sqlx::PgPool;

fn store(pool: PgPool) -> Store {
    Store::from_pool(pool, Subjects::with_prefix("treconcile"))
}

async fn created_at(pool: &PgPool, id: JobId, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query("UPDATE jobs SET created_at = $2 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(at)
        .execute(pool)
        .await?;
    Ok(())
}

async fn event(pool: &PgPool, id: JobId, detail: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO job_events (job_id, at, from_status, to_status, attempt, actor, detail) \
         VALUES ($1, $2, 'running', 'queued', 1, 'scheduler', $3)",
    )
    .bind(id.as_uuid())
    .bind(at)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends the webhook delivery of job `id` as failed at `at`.
async fn delivery_failed(pool: &PgPool, id: JobId, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = 'failed', finished_at = $2, attempts = 1 \
         WHERE job_id = $1",
    )
    .bind(id.as_uuid())
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_report_counts_only_its_day(pool: PgPool) -> anyhow::Result<()> {
    let store = store(pool.clone());
    let day = Utc::now().date_naive().pred_opt().expect("yesterday");
    let (from, until) = day_bounds(day);
    let hour = chrono::Duration::hours(1);
    assert_eq!(until - from, chrono::Duration::days(1));

    // Created that day: one finished (its webhook failed that day), one still queued.
    let done = finished_job(&store).await?;
    created_at(&pool, done, from + hour).await?;
    delivery_failed(&pool, done, from + hour * 5).await?;
    let queued = store
        .enqueue(&new_job("https://img.example.org/a.jpg"), "api")
        .await?;
    created_at(&pool, queued.id, until - chrono::Duration::seconds(1)).await?;
    // Created the day before (its webhook failed after the day) and today (its webhook
    // pending): counted only in the backlog.
    let before = finished_job(&store).await?;
    created_at(&pool, before, from - hour).await?;
    delivery_failed(&pool, before, until + hour).await?;
    let today = finished_job(&store).await?;
    created_at(&pool, today, until).await?;

    event(&pool, done, REDRIVE_DETAIL, from + hour * 2).await?;
    event(&pool, done, REDRIVE_DETAIL, until).await?;
    event(&pool, done, LOST_FAIL_DETAIL, from).await?;
    event(
        &pool,
        done,
        LOST_FAIL_DETAIL,
        from - chrono::Duration::seconds(1),
    )
    .await?;
    event(
        &pool,
        queued.id,
        REPUBLISH_DETAIL,
        until - chrono::Duration::seconds(1),
    )
    .await?;
    event(&pool, queued.id, REPUBLISH_DETAIL, from - hour).await?;
    event(&pool, queued.id, "some other detail", from + hour).await?;

    let report = store
        .reconcile(day)
        .await?
        .expect("the day's first pass runs");
    assert_eq!(report.day, day);
    assert_eq!(
        report.jobs,
        [
            JobStateCount {
                status: JobStatus::Queued,
                count: 1
            },
            JobStateCount {
                status: JobStatus::Succeeded,
                count: 1
            },
        ]
    );
    assert_eq!(
        (
            report.redriven_24h,
            report.lost_failed_24h,
            report.republished_24h
        ),
        (1, 1, 1)
    );
    assert_eq!(report.deliveries_failed_24h, 1);
    assert_eq!(report.deliveries_pending, 1, "today's job's webhook");
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&pool)
            .await?;
    assert_eq!(report.outbox_unpublished, unpublished);

    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT report FROM reconciliations WHERE day = $1")
            .bind(day)
            .fetch_one(&pool)
            .await?;
    assert_eq!(stored["day"], day.to_string());
    assert_eq!(
        stored["jobs"][0],
        serde_json::json!({"status": "queued", "count": 1})
    );
    assert_eq!(stored["redriven_24h"], 1);

    assert!(
        store.reconcile(day).await?.is_none(),
        "a day is reported once"
    );
    Ok(())
}
