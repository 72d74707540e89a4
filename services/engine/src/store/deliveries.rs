//! Webhook deliveries: claiming due ones under a lease, recording each attempt with the
//! delivery's next state in one statement, and the operator's view and redelivery.
//!
//! A scheduler claims a delivery by setting `locked_until`; the claimed value is its
//! fencing token. Recording an attempt only succeeds while the delivery is still pending,
//! still at the expected attempt number and still locked with that token, so two
//! schedulers can never both record (or both send) the same attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::jobs::JOB_COLUMNS;
use super::row::{Job, JobRecord};
use super::{Store, StoreError};
use crate::domain::JobStatus;

/// A pending delivery a scheduler has locked to send its next attempt, with its job.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub job_id: Uuid,
    /// Standard Webhooks `webhook-id`, the same for every attempt.
    pub webhook_id: String,
    pub url: String,
    /// Attempts made so far; the one about to be sent is `attempts + 1`.
    pub attempts: i32,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    /// End of the lock; also the fencing token of this claim.
    pub locked_until: DateTime<Utc>,
    /// The job as it is now (its document is the webhook body).
    pub job: Job,
}

#[derive(sqlx::FromRow)]
struct ClaimRecord {
    delivery_id: Uuid,
    job_id: Uuid,
    webhook_id: String,
    url: String,
    attempts: i32,
    delivery_traceparent: Option<String>,
    delivery_created_at: DateTime<Utc>,
    locked_until: DateTime<Utc>,
    #[sqlx(flatten)]
    job: JobRecord,
}

impl TryFrom<ClaimRecord> for ClaimedDelivery {
    type Error = StoreError;

    fn try_from(r: ClaimRecord) -> Result<Self, StoreError> {
        Ok(ClaimedDelivery {
            id: r.delivery_id,
            job_id: r.job_id,
            webhook_id: r.webhook_id,
            url: r.url,
            attempts: r.attempts,
            traceparent: r.delivery_traceparent,
            created_at: r.delivery_created_at,
            locked_until: r.locked_until,
            job: r.job.try_into()?,
        })
    }
}

impl ClaimedDelivery {
    /// The number of the attempt this claim is for (1-based).
    pub fn attempt(&self) -> i32 {
        self.attempts + 1
    }
}

/// What one attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// A 2xx answer: the delivery is done.
    Delivered,
    /// Not delivered; another attempt is scheduled.
    Retry,
    /// The receiver answered 410 Gone: no more attempts.
    Gone,
    /// Not delivered and no attempt left (schedule exhausted or URL refused).
    Failed,
}

impl AttemptOutcome {
    /// The value stored in `delivery_attempts.outcome` (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Gone => "gone",
            AttemptOutcome::Failed => "failed",
        }
    }

    /// The delivery's status after an attempt with this outcome.
    fn delivery_status(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "pending",
            AttemptOutcome::Gone | AttemptOutcome::Failed => "failed",
        }
    }
}

/// One attempt as it happened, and when to try next if it is to be retried.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub latency: Duration,
    /// HTTP status of the answer, if one came.
    pub status_code: Option<u16>,
    /// Why the attempt did not deliver, if it did not.
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
    /// Required for [`AttemptOutcome::Retry`], ignored otherwise.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A delivery with all its attempts, for operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryView {
    pub id: Uuid,
    pub job_id: Uuid,
    pub webhook_id: String,
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<DeliveryAttemptRow>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeliveryAttemptRow {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub latency_ms: f64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub outcome: String,
}

#[derive(sqlx::FromRow)]
struct DeliveryRecord {
    id: Uuid,
    job_id: Uuid,
    webhook_id: String,
    url: String,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl DeliveryRecord {
    fn into_view(self, attempt_log: Vec<DeliveryAttemptRow>) -> DeliveryView {
        DeliveryView {
            next_attempt_at: (self.status == "pending").then_some(self.next_attempt_at),
            id: self.id,
            job_id: self.job_id,
            webhook_id: self.webhook_id,
            url: self.url,
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            attempt_log,
        }
    }
}

/// What an operator's redelivery request led to.
#[derive(Debug, Clone, PartialEq)]
pub enum Redelivery {
    /// A new delivery (new `webhook-id`) is pending.
    Created(Box<DeliveryView>),
    NotFound,
    /// The job has not finished; its webhook goes out when it does.
    NotFinished(JobStatus),
    /// The job has no webhook URL.
    NoWebhook,
}

const DELIVERY_COLUMNS: &str = "id, job_id, webhook_id, url, status, attempts, next_attempt_at, \
     last_error, created_at, updated_at, finished_at";

impl Store {
    /// Locks up to `limit` pending deliveries that are due (and not locked by a live
    /// claim) for `lease`. Competing schedulers skip each other's rows.
    pub async fn claim_due_deliveries(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        // The claimed rows' columns are renamed so that JOB_COLUMNS name the job's.
        let sql = format!(
            "WITH due AS ( \
               SELECT id FROM deliveries \
               WHERE status = 'pending' AND next_attempt_at <= now() \
                 AND (locked_until IS NULL OR locked_until <= now()) \
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
             c AS ( \
               UPDATE deliveries d SET locked_until = now() + make_interval(secs => $2), \
                      updated_at = now() \
               FROM due WHERE d.id = due.id \
               RETURNING d.id AS delivery_id, d.job_id, d.webhook_id, d.url, d.attempts, \
                         d.traceparent AS delivery_traceparent, \
                         d.created_at AS delivery_created_at, d.locked_until) \
             SELECT c.delivery_id, c.job_id, c.webhook_id, c.url, c.attempts, \
                    c.delivery_traceparent, c.delivery_created_at, c.locked_until, {JOB_COLUMNS} \
             FROM c JOIN jobs ON jobs.id = c.job_id"
        );
        let rows: Vec<ClaimRecord> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(limit)
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(ClaimedDelivery::try_from).collect()
    }

    /// Records attempt `claim.attempt()` and moves the delivery to its next state, in one
    /// statement fenced on the attempt number and the claim. Returns `false` (and writes
    /// nothing) when the claim is no longer current.
    pub async fn record_attempt(
        &self,
        claim: &ClaimedDelivery,
        record: &AttemptRecord,
    ) -> Result<bool, StoreError> {
        let status = record.outcome.delivery_status();
        let next = match record.outcome {
            AttemptOutcome::Retry => record.next_attempt_at,
            _ => None,
        };
        let recorded: Option<i64> = sqlx::query_scalar(
            "WITH u AS ( \
               UPDATE deliveries SET status = $3, attempts = $2, \
                      next_attempt_at = COALESCE($4, next_attempt_at), locked_until = NULL, \
                      last_error = $5, updated_at = now(), \
                      finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END \
               WHERE id = $1 AND status = 'pending' AND attempts = $2 - 1 AND locked_until = $6 \
               RETURNING id) \
             INSERT INTO delivery_attempts \
                    (delivery_id, attempt, started_at, latency_ms, status_code, error, outcome) \
             SELECT id, $2, $7, $8, $9, $5, $10 FROM u \
             RETURNING id",
        )
        .bind(claim.id)
        .bind(claim.attempt())
        .bind(status)
        .bind(next)
        .bind(&record.error)
        .bind(claim.locked_until)
        .bind(record.started_at)
        .bind(record.latency.as_secs_f64() * 1000.0)
        .bind(record.status_code.map(i32::from))
        .bind(record.outcome.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(recorded.is_some())
    }

    /// Gives a claim back without an attempt (scheduler shutting down before sending).
    pub async fn release_delivery(&self, claim: &ClaimedDelivery) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries SET locked_until = NULL, updated_at = now() \
             WHERE id = $1 AND status = 'pending' AND locked_until = $2",
        )
        .bind(claim.id)
        .bind(claim.locked_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The job's deliveries with their attempts, oldest first.
    pub async fn deliveries(&self, job_id: Uuid) -> Result<Vec<DeliveryView>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE job_id = $1 ORDER BY created_at, id"
        );
        let records: Vec<DeliveryRecord> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        let mut views = Vec::with_capacity(records.len());
        for record in records {
            let attempts = self.delivery_attempts(record.id).await?;
            views.push(record.into_view(attempts));
        }
        Ok(views)
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryView>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        let record: Option<DeliveryRecord> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match record {
            Some(record) => {
                let attempts = self.delivery_attempts(record.id).await?;
                Ok(Some(record.into_view(attempts)))
            }
            None => Ok(None),
        }
    }

    async fn delivery_attempts(&self, id: Uuid) -> Result<Vec<DeliveryAttemptRow>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT attempt, started_at, latency_ms, status_code, error, outcome \
             FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Queues a new delivery of a finished job's webhook, with a new `webhook-id`, and
    /// notes it in the job's event log.
    pub async fn redeliver(&self, job_id: Uuid, actor: &str) -> Result<Redelivery, StoreError> {
        let webhook_id = format!(
            "msg_{}_{}",
            job_id.simple(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let created: Option<Uuid> = sqlx::query_scalar(
            "WITH w AS ( \
               INSERT INTO deliveries (id, job_id, webhook_id, url, status, traceparent) \
               SELECT gen_random_uuid(), id, $2, webhook_url, 'pending', traceparent FROM jobs \
               WHERE id = $1 AND status IN ('succeeded', 'failed') AND webhook_url IS NOT NULL \
               RETURNING id, job_id), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail) \
                   SELECT j.id, j.status, j.status, j.attempt, $3, 'redeliver: webhook-id ' || $2 \
                   FROM jobs j JOIN w ON w.job_id = j.id) \
             SELECT id FROM w",
        )
        .bind(job_id)
        .bind(&webhook_id)
        .bind(actor)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(id) = created {
            return match self.delivery(id).await? {
                Some(view) => Ok(Redelivery::Created(Box::new(view))),
                None => Ok(Redelivery::NotFound),
            };
        }
        Ok(match self.get(job_id).await? {
            None => Redelivery::NotFound,
            Some(job) if !job.status.is_terminal() => Redelivery::NotFinished(job.status),
            Some(_) => Redelivery::NoWebhook,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_delivery_states() {
        assert_eq!(AttemptOutcome::Delivered.delivery_status(), "delivered");
        assert_eq!(AttemptOutcome::Retry.delivery_status(), "pending");
        assert_eq!(AttemptOutcome::Gone.delivery_status(), "failed");
        assert_eq!(AttemptOutcome::Failed.delivery_status(), "failed");
        assert_eq!(AttemptOutcome::Gone.as_str(), "gone");
    }
}
