//! Job transitions. Each is a single statement (data-modifying CTEs) or a single
//! transaction, guarded by the state it expects, and appends to `job_events`.
//! Transitions that need a message on NATS write it to `outbox` in the same statement.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::row::{Job, JobEventRow, JobRecord};
use super::{Store, StoreError};
use crate::domain::{JobStatus, RetryPolicy, Transition, next_status};
use crate::message::{dispatch_msg_id, redispatch_msg_id};

/// Status message of a job waiting in the queue.
pub const MSG_QUEUED: &str = "Job queued";
/// Status message of a job a worker is running.
pub const MSG_IN_PROGRESS: &str = "Job in progress";
/// Status message of a finished job.
pub const MSG_SUCCESS: &str = "Job completed";

/// A job the api accepted.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    /// The model identifier the job runs with (shown as `model_identifier`).
    pub model_id: String,
    /// Registry name of the model (dispatch subject suffix).
    pub model_name: String,
    pub image_url: String,
    pub webhook_url: Option<String>,
    pub max_attempts: i32,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
}

/// What happened when a worker tried to claim a job.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once per claim; boxing would only add noise
pub enum ClaimOutcome {
    /// The lease is ours; `job.attempt` is the fencing token.
    Claimed(Job),
    /// No such job.
    NotFound,
    /// The job already finished; the message is stale.
    Finished(JobStatus),
    /// The job waits for a retry backoff until this time.
    NotYet(DateTime<Utc>),
    /// Another worker holds a lease until this time.
    Running(DateTime<Utc>),
}

/// What a transient failure led to.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum RetryOutcome {
    /// Back in the queue, not to run before `not_before`.
    Requeued { not_before: DateTime<Utc> },
    /// No attempt left: the job failed with the last reason.
    Failed(Job),
}

/// The caller's attempt is no longer current (lease expired and re-driven, or finished).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id}: attempt {attempt} no longer holds the lease")]
pub struct FenceLost {
    pub job_id: Uuid,
    pub attempt: i32,
}

pub(crate) const JOB_COLUMNS: &str = "id, status, model_id, model_name, image_url, webhook_url, message, response, \
     attempt, max_attempts, lease_owner, lease_expires_at, not_before, last_error, trace_id, \
     traceparent, created_at, updated_at, started_at, finished_at, processing_time";

/// Outbox headers built from a job row's trace context.
const TRACE_HEADERS_SQL: &str = "CASE WHEN traceparent IS NULL THEN '{}'::jsonb \
     ELSE jsonb_build_object('traceparent', traceparent) END";

/// The error for a write whose attempt no longer holds the job.
fn fence_lost(job_id: Uuid, attempt: i32) -> StoreError {
    StoreError::FenceLost(FenceLost { job_id, attempt })
}

fn status_after(from: JobStatus, t: Transition) -> Result<&'static str, StoreError> {
    Ok(next_status(Some(from), t)?.as_str())
}

impl Store {
    /// Writes a new job, its first event and its dispatch message in one statement.
    pub async fn enqueue(&self, job: &NewJob, actor: &str) -> Result<Job, StoreError> {
        self.enqueue_on(&self.pool, job, actor).await
    }

    /// [`Store::enqueue`] on a given connection or transaction (an upload's enqueue adds
    /// its image row in the same transaction).
    pub(crate) async fn enqueue_on<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        job: &NewJob,
        actor: &str,
    ) -> Result<Job, StoreError> {
        let to = next_status(None, Transition::Enqueue)?.as_str();
        let sql = format!(
            "WITH j AS ( \
               INSERT INTO jobs (id, status, model_id, model_name, image_url, webhook_url, message, \
                                 max_attempts, trace_id, traceparent) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {JOB_COLUMNS}), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor) \
                   SELECT id, NULL, status, attempt, $11 FROM j), \
             o AS (INSERT INTO outbox (subject, msg_id, payload, headers) \
                   SELECT $12, $13, jsonb_build_object('job_id', id), {TRACE_HEADERS_SQL} FROM j) \
             SELECT {JOB_COLUMNS} FROM j"
        );
        let rec: JobRecord = sqlx::query_as(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(to)
            .bind(&job.model_id)
            .bind(&job.model_name)
            .bind(&job.image_url)
            .bind(&job.webhook_url)
            .bind(MSG_QUEUED)
            .bind(job.max_attempts)
            .bind(&job.trace_id)
            .bind(&job.traceparent)
            .bind(actor)
            .bind(self.subjects.job(&job.model_name))
            .bind(dispatch_msg_id(job.id))
            .fetch_one(executor)
            .await?;
        rec.try_into()
    }

    /// The job with this id, if any.
    pub async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let rec: Option<JobRecord> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        rec.map(Job::try_from).transpose()
    }

    /// The job's event log, oldest first.
    pub async fn events(&self, id: Uuid) -> Result<Vec<JobEventRow>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT id, at, from_status, to_status, attempt, actor, detail \
             FROM job_events WHERE job_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Takes a lease on a queued job, bumping its attempt number (the fencing token).
    pub async fn claim(
        &self,
        id: Uuid,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let to = status_after(JobStatus::Queued, Transition::Claim)?;
        let sql = format!(
            "WITH c AS ( \
               UPDATE jobs SET status = $2, attempt = attempt + 1, lease_owner = $3, \
                      lease_expires_at = now() + make_interval(secs => $4), not_before = NULL, \
                      started_at = now(), updated_at = now(), message = $5 \
               WHERE id = $1 AND status = 'queued' AND (not_before IS NULL OR not_before <= now()) \
               RETURNING {JOB_COLUMNS}), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor) \
                   SELECT id, 'queued', status, attempt, $3 FROM c) \
             SELECT {JOB_COLUMNS} FROM c"
        );
        let claimed: Option<JobRecord> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .bind(to)
            .bind(owner)
            .bind(lease.as_secs_f64())
            .bind(MSG_IN_PROGRESS)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(rec) = claimed {
            return Ok(ClaimOutcome::Claimed(rec.try_into()?));
        }
        let Some(job) = self.get(id).await? else {
            return Ok(ClaimOutcome::NotFound);
        };
        Ok(match job.status {
            JobStatus::Succeeded | JobStatus::Failed => ClaimOutcome::Finished(job.status),
            JobStatus::Running => {
                ClaimOutcome::Running(job.lease_expires_at.unwrap_or_else(Utc::now))
            }
            JobStatus::Queued => ClaimOutcome::NotYet(job.not_before.unwrap_or_else(Utc::now)),
        })
    }

    /// Extends the lease while attempt `attempt` is still current.
    pub async fn renew(
        &self,
        id: Uuid,
        attempt: i32,
        owner: &str,
        lease: Duration,
    ) -> Result<DateTime<Utc>, StoreError> {
        let until: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4) \
             WHERE id = $1 AND status = 'running' AND attempt = $2 AND lease_owner = $3 \
             RETURNING lease_expires_at",
        )
        .bind(id)
        .bind(attempt)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        until.ok_or(fence_lost(id, attempt))
    }

    /// Stores the result of attempt `attempt`: SUCCESS, its event, the finished-job
    /// message and the webhook delivery, all or nothing.
    pub async fn succeed(
        &self,
        id: Uuid,
        attempt: i32,
        owner: &str,
        response: &serde_json::Value,
    ) -> Result<Job, StoreError> {
        let to = status_after(JobStatus::Running, Transition::Succeed)?;
        self.finish(id, attempt, owner, to, MSG_SUCCESS, Some(response), None)
            .await
    }

    /// Fails the job for good with a message that says why.
    pub async fn fail(
        &self,
        id: Uuid,
        attempt: i32,
        owner: &str,
        reason: &str,
    ) -> Result<Job, StoreError> {
        let to = status_after(JobStatus::Running, Transition::Fail)?;
        self.finish(id, attempt, owner, to, reason, None, Some(reason))
            .await
    }

    /// A transient failure: back to the queue after the policy's backoff, or failed with
    /// the reason when no attempt is left.
    pub async fn retry(
        &self,
        id: Uuid,
        attempt: i32,
        owner: &str,
        reason: &str,
        policy: &RetryPolicy,
    ) -> Result<RetryOutcome, StoreError> {
        let max: Option<i32> = sqlx::query_scalar(
            "SELECT max_attempts FROM jobs \
             WHERE id = $1 AND status = 'running' AND attempt = $2 AND lease_owner = $3",
        )
        .bind(id)
        .bind(attempt)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let max = max.ok_or(fence_lost(id, attempt))?;
        if attempt >= max {
            let message = format!("{reason} (gave up after {attempt} attempts)");
            let job = self.fail(id, attempt, owner, &message).await?;
            return Ok(RetryOutcome::Failed(job));
        }
        let delay = policy.delay_after(u32::try_from(attempt).unwrap_or(u32::MAX));
        let message = format!("{MSG_QUEUED} (attempt {attempt} failed: {reason}; retrying)");
        let job = self
            .requeue(
                id,
                attempt,
                owner,
                Transition::Retry,
                &message,
                Some(reason),
                delay,
            )
            .await?;
        Ok(RetryOutcome::Requeued {
            not_before: job.not_before.unwrap_or_else(Utc::now),
        })
    }

    /// Hands a running job back to the queue (worker shutting down).
    pub async fn release(&self, id: Uuid, attempt: i32, owner: &str) -> Result<Job, StoreError> {
        self.requeue(
            id,
            attempt,
            owner,
            Transition::Release,
            MSG_QUEUED,
            None,
            Duration::ZERO,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn requeue(
        &self,
        id: Uuid,
        attempt: i32,
        owner: &str,
        transition: Transition,
        message: &str,
        error: Option<&str>,
        delay: Duration,
    ) -> Result<Job, StoreError> {
        let to = status_after(JobStatus::Running, transition)?;
        let sql = format!(
            "WITH q AS ( \
               UPDATE jobs SET status = $4, lease_owner = NULL, lease_expires_at = NULL, \
                      not_before = now() + make_interval(secs => $5), message = $6, \
                      last_error = COALESCE($7, last_error), updated_at = now() \
               WHERE id = $1 AND status = 'running' AND attempt = $2 AND lease_owner = $3 \
               RETURNING {JOB_COLUMNS}), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail) \
                   SELECT id, 'running', status, attempt, $3, $8 FROM q), \
             o AS (INSERT INTO outbox (subject, msg_id, payload, headers) \
                   SELECT $9 || model_name, $10, jsonb_build_object('job_id', id), \
                          {TRACE_HEADERS_SQL} FROM q) \
             SELECT {JOB_COLUMNS} FROM q"
        );
        let detail = match error {
            Some(e) => format!("{}: {e}", transition.as_str()),
            None => transition.as_str().to_string(),
        };
        let rec: Option<JobRecord> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .bind(attempt)
            .bind(owner)
            .bind(to)
            .bind(delay.as_secs_f64())
            .bind(message)
            .bind(error)
            .bind(detail)
            .bind(self.subjects.job(""))
            .bind(redispatch_msg_id(id, attempt))
            .fetch_optional(&self.pool)
            .await?;
        rec.ok_or(fence_lost(id, attempt))?.try_into()
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        id: Uuid,
        attempt: i32,
        owner: &str,
        to: &str,
        message: &str,
        response: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<Job, StoreError> {
        let sql = format!(
            "WITH d AS ( \
               UPDATE jobs SET status = $4, message = $5, response = $6, \
                      last_error = COALESCE($7, last_error), lease_owner = NULL, \
                      lease_expires_at = NULL, finished_at = now(), updated_at = now(), \
                      processing_time = EXTRACT(EPOCH FROM now() - started_at)::float8 \
               WHERE id = $1 AND status = 'running' AND attempt = $2 AND lease_owner = $3 \
               RETURNING {JOB_COLUMNS}), \
             {FINISH_SIDE_EFFECTS} \
             SELECT {JOB_COLUMNS} FROM d"
        );
        let rec: Option<JobRecord> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .bind(attempt)
            .bind(owner)
            .bind(to)
            .bind(message)
            .bind(response)
            .bind(error)
            .bind(self.subjects.job_event(""))
            .fetch_optional(&self.pool)
            .await?;
        rec.ok_or(fence_lost(id, attempt))?.try_into()
    }
}

/// What finishing a job writes besides the job row (CTE `d` holds the finished rows;
/// `$3` is the actor, `$7` the error detail, `$8` the event subject prefix):
/// the event log line, the finished-job event for the outbox, and the webhook delivery.
pub(crate) const FINISH_SIDE_EFFECTS: &str = "\
    e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail) \
          SELECT id, 'running', status, attempt, $3, $7 FROM d), \
    o AS (INSERT INTO outbox (subject, msg_id, payload, headers) \
          SELECT $8 || status, id::text || '.' || status, \
                 jsonb_build_object('job_id', id, 'status', status, 'attempt', attempt), \
                 CASE WHEN traceparent IS NULL THEN '{}'::jsonb \
                      ELSE jsonb_build_object('traceparent', traceparent) END FROM d), \
    w AS (INSERT INTO deliveries (id, job_id, webhook_id, url, status, traceparent) \
          SELECT gen_random_uuid(), id, 'msg_' || replace(id::text, '-', ''), webhook_url, \
                 'pending', traceparent FROM d WHERE webhook_url IS NOT NULL)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_side_effects_write_event_outbox_and_delivery() {
        for table in ["job_events", "outbox", "deliveries"] {
            assert!(FINISH_SIDE_EFFECTS.contains(table), "{table}");
        }
    }
}
