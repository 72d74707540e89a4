//! Webhook deliveries: their rows, the operator's view and redelivery. Claiming and
//! recording attempts is in `attempts.rs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{AttemptOutcome, DeliveryId, DeliveryStatus, JobId, JobStatus};

/// A row of `deliveries`: one webhook delivery (one `webhook-id`) of a finished job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub job_id: JobId,
    /// Standard Webhooks `webhook-id`, the same for every attempt.
    pub webhook_id: String,
    pub url: String,
    /// The URL's scheme, host and port, whose health and limits the delivery shares.
    pub endpoint: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// While set and in the future, a scheduler is sending the next attempt.
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A row of `delivery_attempts`: one recorded attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttemptRow {
    pub id: i64,
    pub delivery_id: DeliveryId,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub latency_ms: f64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// A pending delivery a scheduler has locked to send its next attempt, with its job.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryRow,
    /// End of the lock; also the fencing token of this claim.
    pub locked_until: DateTime<Utc>,
    /// The job as it is now (its document is the webhook body).
    pub job: Job,
    /// Wait this long before sending: the endpoint's rate limit gave the attempt this slot.
    pub send_after: Duration,
    /// The attempt is its paused endpoint's probe.
    pub probe: bool,
}

impl ClaimedDelivery {
    /// The number of the attempt this claim is for (1-based).
    pub fn attempt(&self) -> i32 {
        self.delivery.attempts + 1
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

/// One attempt to record, with what fences it: the delivery, the attempt number and the
/// claim's lock, which the delivery must still hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttemptRow {
    pub delivery_id: DeliveryId,
    pub attempt: i32,
    pub locked_until: DateTime<Utc>,
    pub endpoint: String,
    /// The attempt was its paused endpoint's probe.
    pub probe: bool,
    pub record: AttemptRecord,
    /// The answer showed the endpoint up.
    pub up: bool,
}

impl AttemptRow {
    pub(crate) fn new(claim: &ClaimedDelivery, record: &AttemptRecord, up: bool) -> Self {
        AttemptRow {
            delivery_id: claim.delivery.id,
            attempt: claim.attempt(),
            locked_until: claim.locked_until,
            endpoint: claim.delivery.endpoint.clone(),
            probe: claim.probe,
            record: record.clone(),
            up,
        }
    }
}

/// A delivery with all its attempts, for operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryView {
    pub delivery: DeliveryRow,
    pub attempt_log: Vec<DeliveryAttemptRow>,
}

/// A view reads as its delivery row (`view.status`, `view.webhook_id`, …).
impl std::ops::Deref for DeliveryView {
    type Target = DeliveryRow;

    fn deref(&self) -> &DeliveryRow {
        &self.delivery
    }
}

impl DeliveryView {
    /// When the next attempt is due, while the delivery is pending.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.delivery.status == DeliveryStatus::Pending).then_some(self.delivery.next_attempt_at)
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
    /// A delivery of this job is still pending; a new one may be asked for once it ended.
    Pending,
}

/// `sqlx::query_as!(DeliveryRow, …)` selecting every column of `deliveries`, typed, put
/// between the two literals.
macro_rules! query_delivery {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            DeliveryRow,
            $before
                + r#"id AS "id!: DeliveryId", job_id AS "job_id!: JobId",
                   webhook_id AS "webhook_id!", url AS "url!", endpoint AS "endpoint!",
                   status AS "status!: DeliveryStatus", attempts AS "attempts!",
                   next_attempt_at AS "next_attempt_at!", locked_until AS "locked_until?",
                   last_error AS "last_error?", traceparent AS "traceparent?",
                   created_at AS "created_at!", updated_at AS "updated_at!",
                   finished_at AS "finished_at?""#
                + $after
            $(, $arg)*
        )
    };
}

impl Store {
    /// Gives a claim back without an attempt (scheduler shutting down before sending).
    pub async fn release_delivery(&self, claim: &ClaimedDelivery) -> Result<(), StoreError> {
        sqlx::query!(
            r#"UPDATE deliveries SET locked_until = NULL, updated_at = now()
             WHERE id = $1 AND status = $3 AND locked_until = $2"#,
            claim.delivery.id as DeliveryId,
            claim.locked_until,
            DeliveryStatus::Pending as DeliveryStatus,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The job's deliveries with their attempts, oldest first.
    pub async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryView>, StoreError> {
        let rows = query_delivery!(
            r#"SELECT "#,
            r#" FROM deliveries WHERE job_id = $1 ORDER BY created_at, id"#,
            job_id as JobId
        )
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<Uuid> = rows.iter().map(|d| d.id.as_uuid()).collect();
        let mut attempts = self.delivery_attempts(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|delivery| {
                let (mine, rest) = attempts
                    .drain(..)
                    .partition(|a: &DeliveryAttemptRow| a.delivery_id == delivery.id);
                attempts = rest;
                DeliveryView {
                    delivery,
                    attempt_log: mine,
                }
            })
            .collect())
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryView>, StoreError> {
        let row = query_delivery!(
            r#"SELECT "#,
            r#" FROM deliveries WHERE id = $1"#,
            id as DeliveryId
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(delivery) = row else {
            return Ok(None);
        };
        let attempt_log = self.delivery_attempts(&[delivery.id.as_uuid()]).await?;
        Ok(Some(DeliveryView {
            delivery,
            attempt_log,
        }))
    }

    /// The attempts of these deliveries, by delivery then attempt number.
    async fn delivery_attempts(&self, ids: &[Uuid]) -> Result<Vec<DeliveryAttemptRow>, StoreError> {
        let rows = sqlx::query_as!(
            DeliveryAttemptRow,
            r#"SELECT id, delivery_id AS "delivery_id: DeliveryId", attempt, started_at,
                      latency_ms, status_code, error, outcome AS "outcome: AttemptOutcome"
               FROM delivery_attempts WHERE delivery_id = ANY($1)
               ORDER BY delivery_id, attempt"#,
            ids
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Queues a new delivery of a finished job's webhook, with a new `webhook-id`, and
    /// notes it in the job's event log.
    pub async fn redeliver(&self, job_id: JobId, actor: &str) -> Result<Redelivery, StoreError> {
        let created = sqlx::query_scalar!(
            r#"WITH w AS (
                 INSERT INTO deliveries (id, job_id, webhook_id, url, status, traceparent)
                 SELECT $3, id, job_webhook_id(id), webhook_url, $4, traceparent FROM jobs
                 WHERE id = $1 AND status = ANY($5) AND webhook_url IS NOT NULL
                 ON CONFLICT (job_id) WHERE status = 'pending' DO NOTHING
                 RETURNING id, job_id, webhook_id),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail)
                     SELECT j.id, j.status, j.status, j.attempt, $2, 'redeliver: webhook-id ' || w.webhook_id
                     FROM jobs j JOIN w ON w.job_id = j.id)
               SELECT id AS "id!: DeliveryId" FROM w"#,
            job_id as JobId,
            actor,
            DeliveryId::new() as DeliveryId,
            DeliveryStatus::Pending as DeliveryStatus,
            &[JobStatus::Succeeded, JobStatus::Failed] as &[JobStatus],
        )
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
            Some(job) if job.webhook_url.is_none() => Redelivery::NoWebhook,
            Some(_) => Redelivery::Pending,
        })
    }
}
