//! What the operator console reads and keeps: its sessions (cookie token hash, the key
//! that logged in, the CSRF token), the overview's counts and percentiles, and the job
//! list — keyset-paged newest first on indexed columns, so a page costs the same on a
//! table of a million jobs as on an empty one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

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
    /// Pending deliveries whose next attempt is already due, but those of paused
    /// endpoints (they wait by design).
    pub overdue: i64,
    /// Deliveries given up in the last 24 hours.
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

/// Which jobs the list shows. Time bounds apply to `created_at` (`from` inclusive, `to`
/// exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub model: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl JobFilter {
    /// The list's bounds: rows strictly before the returned cursor (the page cursor or
    /// the `to` time, whichever is earlier) and created at or after the returned time.
    fn bounds(&self, before: Option<Cursor>) -> (Cursor, DateTime<Utc>) {
        let end = Cursor {
            at: DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::UNIX_EPOCH),
            id: Uuid::max(),
        };
        // `(created_at, id) < (to, nil)` is exactly `created_at < to`.
        let to = self.to.map(|at| Cursor {
            at,
            id: Uuid::nil(),
        });
        let upper = [Some(end), to, before]
            .into_iter()
            .flatten()
            .min_by_key(|c| (c.at, c.id))
            .unwrap_or(end);
        (upper, self.from.unwrap_or(DateTime::UNIX_EPOCH))
    }
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
        sqlx::query!(r#"DELETE FROM console_sessions WHERE expires_at < now()"#)
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            r#"INSERT INTO console_sessions (token_hash, api_key_id, csrf_token, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))"#,
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
            r#"DELETE FROM console_sessions WHERE token_hash = $1"#,
            token_hash.as_slice()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs per model and state: every queued and running job, and the jobs that
    /// finished in the last hour.
    pub async fn state_counts(&self) -> Result<Vec<StateCount>, StoreError> {
        // Three index scans, not one OR: the literal states pick the partial indexes
        // `jobs_queued_updated` and `jobs_running_lease`; the literal window lets even a
        // cached generic plan see how few rows the last hour holds (`jobs_updated`).
        let rows = sqlx::query_as!(
            StateCount,
            r#"SELECT model_name AS "model!", status AS "status!: JobStatus", count(*) AS "jobs!"
               FROM (SELECT model_name, status FROM jobs WHERE status = 'queued'
                     UNION ALL
                     SELECT model_name, status FROM jobs WHERE status = 'running'
                     UNION ALL
                     SELECT model_name, status FROM jobs
                     WHERE updated_at > now() - interval '1 hour' AND status = ANY($1)) j
               GROUP BY 1, 2 ORDER BY 1, 2"#,
            &[JobStatus::Succeeded, JobStatus::Failed] as &[JobStatus],
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// How the jobs that finished in the last hour went.
    pub async fn finished_stats(&self) -> Result<FinishedStats, StoreError> {
        // A literal window, as in `state_counts`.
        let row = sqlx::query_as!(
            FinishedStats,
            r#"SELECT count(*) AS "finished!",
                      count(*) FILTER (WHERE status = $1) AS "failed!",
                      percentile_cont(0.5) WITHIN GROUP
                        (ORDER BY EXTRACT(EPOCH FROM started_at - created_at)::float8) AS queue_wait_p50,
                      percentile_cont(0.95) WITHIN GROUP
                        (ORDER BY EXTRACT(EPOCH FROM started_at - created_at)::float8) AS queue_wait_p95,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY processing_time) AS processing_p50,
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY processing_time) AS processing_p95
               FROM jobs
               WHERE updated_at > now() - interval '1 hour' AND status = ANY($2)"#,
            JobStatus::Failed as JobStatus,
            &[JobStatus::Succeeded, JobStatus::Failed] as &[JobStatus],
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Pending webhook deliveries, and those given up in the last 24 hours.
    pub async fn webhook_backlog(&self) -> Result<WebhookBacklog, StoreError> {
        let row = sqlx::query_as!(
            WebhookBacklog,
            // The literal 'pending' lets every plan use a partial index on pending
            // deliveries; the literal window, the index `deliveries_created`.
            r#"-- periodic: webhook backlog
               SELECT
                 (SELECT count(*) FROM deliveries WHERE status = 'pending') AS "pending!",
                 (SELECT count(*) FROM deliveries d
                  WHERE d.status = 'pending' AND d.next_attempt_at < now()
                    AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                                    WHERE e.endpoint = d.endpoint AND e.state = 'paused'))
                   AS "overdue!",
                 (SELECT count(*) FROM deliveries
                  WHERE created_at > now() - interval '24 hours' AND status = $1) AS "failed!""#,
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
        // The page's bounds are always bound values, never `$n IS NULL OR …`, so a cached
        // generic plan still walks the index from the boundary: a page deep in a table
        // of millions costs what the first one does.
        let (upper, lower) = filter.bounds(before);
        let rows = match filter.status {
            Some(status) => {
                sqlx::query_as!(
                    JobSummary,
                    r#"SELECT id AS "id: JobId", status AS "status: JobStatus", model_name,
                              image_url, message, attempt, created_at, finished_at, processing_time
                       FROM jobs
                       WHERE status = $1 AND (created_at, id) < ($2, $3) AND created_at >= $4
                         AND ($5::text IS NULL OR model_name = $5)
                       ORDER BY created_at DESC, id DESC LIMIT $6"#,
                    status as JobStatus,
                    upper.at,
                    upper.id,
                    lower,
                    filter.model.as_deref(),
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
                       WHERE (created_at, id) < ($1, $2) AND created_at >= $3
                         AND ($4::text IS NULL OR model_name = $4)
                       ORDER BY created_at DESC, id DESC LIMIT $5"#,
                    upper.at,
                    upper.id,
                    lower,
                    filter.model.as_deref(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn the_upper_bound_is_the_earlier_of_cursor_and_to() {
        let open = JobFilter::default();
        let (upper, lower) = open.bounds(None);
        assert_eq!(upper.id, Uuid::max());
        assert!(upper.at > Utc::now());
        assert_eq!(lower, DateTime::UNIX_EPOCH);

        let cursor = Cursor {
            at: at(1_000),
            id: Uuid::from_u128(7),
        };
        let to_later = JobFilter {
            to: Some(at(2_000)),
            from: Some(at(10)),
            ..JobFilter::default()
        };
        assert_eq!(to_later.bounds(Some(cursor)), (cursor, at(10)));
        let to_earlier = JobFilter {
            to: Some(at(500)),
            ..JobFilter::default()
        };
        assert_eq!(
            to_earlier.bounds(Some(cursor)).0,
            Cursor {
                at: at(500),
                id: Uuid::nil()
            }
        );
    }
}
