//! What the operator console reads and keeps: its sessions (cookie token hash, the key
//! that logged in, the CSRF token), the overview's counts and percentiles, and the job
//! list — keyset-paged newest first on indexed columns, so a page costs the same on a
//! table of a million jobs as on an empty one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::feed::Cursor;
use super::{Store, StoreError};
use crate::domain::{ApiKeyId, DeliveryStatus, JobId, JobStatus, Scope};

/// A live console session: the key that opened it and the session's CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub api_key_id: ApiKeyId,
    pub key_name: String,
    pub scopes: Vec<Scope>,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Jobs of one model in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    pub model: String,
    pub status: JobStatus,
    pub jobs: i64,
}

/// How the jobs that finished in a window went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinishedStats {
    pub finished: i64,
    pub failed: i64,
    /// Seconds from enqueue to the last attempt's start: median and 95th percentile.
    pub queue_wait_p50: Option<f64>,
    pub queue_wait_p95: Option<f64>,
    /// `processing_time` (claim to finish), seconds: median and 95th percentile.
    pub processing_p50: Option<f64>,
    pub processing_p95: Option<f64>,
}

/// Webhook deliveries that need attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookBacklog {
    /// Deliveries not yet delivered nor given up.
    pub pending: i64,
    /// Pending deliveries whose next attempt is already due.
    pub overdue: i64,
    /// Deliveries given up in the window.
    pub failed: i64,
}

/// One line of the job list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    pub id: JobId,
    pub status: JobStatus,
    pub model_name: String,
    pub image_url: String,
    pub message: String,
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub processing_time: Option<f64>,
}

/// Which jobs the list shows. Time bounds apply to `created_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub model: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl JobSummary {
    /// Where the next (older) page starts.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id.as_uuid(),
        }
    }
}

impl Store {
    /// Opens a session for `api_key_id`; the cookie token's SHA-256 is the row's key.
    /// Expired sessions are deleted on the way.
    pub async fn open_console_session(
        &self,
        token_hash: &[u8; 32],
        api_key_id: ApiKeyId,
        csrf_token: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("DELETE FROM console_sessions WHERE expires_at < now()")
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "INSERT INTO console_sessions (token_hash, api_key_id, csrf_token, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            token_hash.as_slice(),
            api_key_id as ApiKeyId,
            csrf_token,
            ttl.as_secs_f64(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session whose cookie token hashes to `token_hash`: not expired, and its
    /// key not revoked.
    pub async fn console_session(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let row = sqlx::query_as!(
            ConsoleSession,
            r#"SELECT s.api_key_id AS "api_key_id: ApiKeyId", k.name AS key_name,
                      k.scopes AS "scopes: Vec<Scope>", s.csrf_token, s.expires_at
               FROM console_sessions s JOIN api_keys k ON k.id = s.api_key_id
               WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL"#,
            token_hash.as_slice(),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Ends a session (logout).
    pub async fn close_console_session(&self, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        sqlx::query!(
            "DELETE FROM console_sessions WHERE token_hash = $1",
            token_hash.as_slice()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs per model and state: every queued and running job, and the jobs that
    /// finished within `window`.
    pub async fn state_counts(&self, window: Duration) -> Result<Vec<StateCount>, StoreError> {
        let rows = sqlx::query_as!(
            StateCount,
            r#"SELECT model_name AS "model!", status AS "status!: JobStatus", count(*) AS "jobs!"
               FROM jobs
               WHERE status = ANY($1)
                  OR (updated_at > now() - make_interval(secs => $2) AND status = ANY($3))
               GROUP BY 1, 2 ORDER BY 1, 2"#,
            &[JobStatus::Queued, JobStatus::Running] as &[JobStatus],
            window.as_secs_f64(),
            &[JobStatus::Succeeded, JobStatus::Failed] as &[JobStatus],
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// How the jobs that finished within `window` went.
    pub async fn finished_stats(&self, window: Duration) -> Result<FinishedStats, StoreError> {
        let row = sqlx::query_as!(
            FinishedStats,
            r#"SELECT count(*) AS "finished!",
                      count(*) FILTER (WHERE status = $2) AS "failed!",
                      percentile_cont(0.5) WITHIN GROUP
                        (ORDER BY EXTRACT(EPOCH FROM started_at - created_at)::float8) AS queue_wait_p50,
                      percentile_cont(0.95) WITHIN GROUP
                        (ORDER BY EXTRACT(EPOCH FROM started_at - created_at)::float8) AS queue_wait_p95,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY processing_time) AS processing_p50,
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY processing_time) AS processing_p95
               FROM jobs
               WHERE updated_at > now() - make_interval(secs => $1) AND status = ANY($3)"#,
            window.as_secs_f64(),
            JobStatus::Failed as JobStatus,
            &[JobStatus::Succeeded, JobStatus::Failed] as &[JobStatus],
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Pending webhook deliveries, and those given up within `window`.
    pub async fn webhook_backlog(&self, window: Duration) -> Result<WebhookBacklog, StoreError> {
        let row = sqlx::query_as!(
            WebhookBacklog,
            // The literal 'pending' lets every plan use the partial index `deliveries_due`.
            r#"SELECT
                 (SELECT count(*) FROM deliveries WHERE status = 'pending') AS "pending!",
                 (SELECT count(*) FROM deliveries
                  WHERE status = 'pending' AND next_attempt_at < now()) AS "overdue!",
                 (SELECT count(*) FROM deliveries
                  WHERE created_at > now() - make_interval(secs => $1) AND status = $2) AS "failed!""#,
            window.as_secs_f64(),
            DeliveryStatus::Failed as DeliveryStatus,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Up to `limit` jobs matching `filter`, newest first, older than `before`.
    pub async fn job_page(
        &self,
        filter: &JobFilter,
        before: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<JobSummary>, StoreError> {
        let (before_at, before_id) = before.map(|c| (c.at, c.id)).unzip();
        // Two statements rather than one with `$1 IS NULL OR status = $1`: a cached
        // generic plan could not use the (status, created_at) index for that.
        let rows = match filter.status {
            Some(status) => {
                sqlx::query_as!(
                    JobSummary,
                    r#"SELECT id AS "id: JobId", status AS "status: JobStatus", model_name,
                              image_url, message, attempt, created_at, finished_at, processing_time
                       FROM jobs
                       WHERE status = $1
                         AND ($2::text IS NULL OR model_name = $2)
                         AND ($3::timestamptz IS NULL OR created_at >= $3)
                         AND ($4::timestamptz IS NULL OR created_at < $4)
                         AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
                       ORDER BY created_at DESC, id DESC LIMIT $7"#,
                    status as JobStatus,
                    filter.model.as_deref(),
                    filter.from,
                    filter.to,
                    before_at,
                    before_id,
                    limit,
                )
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as!(
                    JobSummary,
                    r#"SELECT id AS "id: JobId", status AS "status: JobStatus", model_name,
                              image_url, message, attempt, created_at, finished_at, processing_time
                       FROM jobs
                       WHERE ($1::text IS NULL OR model_name = $1)
                         AND ($2::timestamptz IS NULL OR created_at >= $2)
                         AND ($3::timestamptz IS NULL OR created_at < $3)
                         AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
                       ORDER BY created_at DESC, id DESC LIMIT $6"#,
                    filter.model.as_deref(),
                    filter.from,
                    filter.to,
                    before_at,
                    before_id,
                    limit,
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows)
    }

    /// The newest `limit` jobs of exactly this image URL (hash index).
    pub async fn jobs_by_image_url(
        &self,
        image_url: &str,
        limit: i64,
    ) -> Result<Vec<JobSummary>, StoreError> {
        let rows = sqlx::query_as!(
            JobSummary,
            r#"SELECT id AS "id: JobId", status AS "status: JobStatus", model_name,
                      image_url, message, attempt, created_at, finished_at, processing_time
               FROM jobs WHERE image_url = $1
               ORDER BY created_at DESC, id DESC LIMIT $2"#,
            image_url,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
