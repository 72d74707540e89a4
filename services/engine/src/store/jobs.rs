//! Job transitions. Each is a single statement (data-modifying CTEs) or a single
//! transaction, guarded by the state it expects, and appends to `job_events`.
//! Transitions that need a message on NATS write it to `outbox` in the same statement.
//!
//! Statuses are bound as [`JobStatus`] / [`DeliveryStatus`] values; every statement here
//! finds its job by primary key, so no partial index depends on a literal.

use std::borrow::Borrow;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::finish::{Finish, Success};
use super::row::{Job, JobEventRow};
use super::{Store, StoreError};
use crate::domain::{
    ApiKeyId, Attempt, BatchId, Fence, JobId, JobStatus, Priority, RetryPolicy, Transition,
    next_status,
};
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
    pub id: JobId,
    /// The model identifier the job runs with (shown as `model_identifier`).
    pub model_id: String,
    /// Registry name of the model (dispatch subject suffix).
    pub model_name: String,
    pub image_url: String,
    pub webhook_url: Option<String>,
    /// The attempt budget.
    pub max_attempts: Attempt,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    /// The API key the job belongs to: the key that created it, or the key
    /// `FOODSEG_V1_OWNER` names for keyless v1 calls; `None` for no one.
    pub owner: Option<ApiKeyId>,
    /// The lane it waits in: interactive unless a batch asked for bulk.
    pub priority: Priority,
    /// The batch it came in, if any.
    pub batch_id: Option<BatchId>,
}

/// What happened when a worker tried to claim a job.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once per claim; boxing would only add noise
pub enum ClaimOutcome {
    /// The lease is ours; every write about this attempt carries `fence`.
    Claimed { job: Job, fence: Fence },
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
    pub job_id: JobId,
    pub attempt: Attempt,
}

impl From<&Fence> for FenceLost {
    fn from(f: &Fence) -> Self {
        FenceLost {
            job_id: f.job_id,
            attempt: f.attempt,
        }
    }
}

/// The error for a write whose attempt no longer holds the job.
fn fence_lost(fence: &Fence) -> StoreError {
    StoreError::FenceLost(fence.into())
}

fn status_after(from: JobStatus, t: Transition) -> Result<JobStatus, StoreError> {
    Ok(next_status(Some(from), t)?)
}

/// How a requeue is written: its transition, the job's new message, the error kept in
/// `last_error` (if any), the event's detail and the backoff.
pub(crate) struct Requeue<'a> {
    pub transition: Transition,
    pub message: &'a str,
    pub last_error: Option<&'a str>,
    pub detail: &'a str,
    pub delay: Duration,
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
        let mut rows = self
            .enqueue_many_on(executor, std::slice::from_ref(job), &[actor])
            .await?;
        // An INSERT … RETURNING of one row returns it or fails.
        rows.pop()
            .ok_or(StoreError::Query(sqlx::Error::RowNotFound))
    }

    /// Writes several new jobs, each with its first event (naming `actors[i]`) and its
    /// dispatch message, in one statement: all of them or none. The rows come back in no
    /// particular order.
    pub async fn enqueue_many<J: Borrow<NewJob> + Sync>(
        &self,
        jobs: &[J],
        actors: &[&str],
    ) -> Result<Vec<Job>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.enqueue_many_on(&self.pool, jobs, actors).await
    }

    /// The one statement that writes new jobs, for [`Store::enqueue`] and
    /// [`Store::enqueue_many`].
    pub(crate) async fn enqueue_many_on<'c, J: Borrow<NewJob> + Sync>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        jobs: &[J],
        actors: &[&str],
    ) -> Result<Vec<Job>, StoreError> {
        let jobs: Vec<&NewJob> = jobs.iter().map(Borrow::borrow).collect();
        let to = next_status(None, Transition::Enqueue)?;
        let ids: Vec<uuid::Uuid> = jobs.iter().map(|j| j.id.as_uuid()).collect();
        let model_ids: Vec<&str> = jobs.iter().map(|j| j.model_id.as_str()).collect();
        let model_names: Vec<&str> = jobs.iter().map(|j| j.model_name.as_str()).collect();
        let image_urls: Vec<&str> = jobs.iter().map(|j| j.image_url.as_str()).collect();
        let webhook_urls: Vec<Option<&str>> =
            jobs.iter().map(|j| j.webhook_url.as_deref()).collect();
        let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts.get()).collect();
        let trace_ids: Vec<Option<&str>> = jobs.iter().map(|j| j.trace_id.as_deref()).collect();
        let traceparents: Vec<Option<&str>> =
            jobs.iter().map(|j| j.traceparent.as_deref()).collect();
        let owners: Vec<Option<uuid::Uuid>> =
            jobs.iter().map(|j| j.owner.map(|o| o.as_uuid())).collect();
        let msg_ids: Vec<String> = jobs.iter().map(|j| dispatch_msg_id(j.id)).collect();
        let priorities: Vec<&str> = jobs.iter().map(|j| j.priority.as_str()).collect();
        let batch_ids: Vec<Option<uuid::Uuid>> = jobs
            .iter()
            .map(|j| j.batch_id.map(|b| b.as_uuid()))
            .collect();
        // A bulk job's first dispatch message is held for the relay to release in turn
        // (`held_for` names its owner); every other is published at once.
        let rows = query_job!(
            r#"WITH i AS (
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::int4[], $7::text[], $8::text[], $9::text[],
                                      $13::uuid[], $14::text[], $15::text[], $16::uuid[])
                   AS i(id, model_id, model_name, image_url, webhook_url, max_attempts,
                        trace_id, traceparent, actor, owner_key_id, msg_id, priority, batch_id)),
               j AS (
                 INSERT INTO jobs (id, status, model_id, model_name, image_url, webhook_url,
                                   message, max_attempts, trace_id, traceparent, owner_key_id,
                                   priority, batch_id)
                 SELECT id, $10, model_id, model_name, image_url, webhook_url, $11,
                        max_attempts, trace_id, traceparent, owner_key_id,
                        priority::job_priority, batch_id FROM i
                 RETURNING *),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor)
                     SELECT j.id, NULL, j.status, j.attempt, i.actor FROM j JOIN i USING (id)),
               o AS (INSERT INTO outbox (subject, msg_id, payload, headers, held_for)
                     SELECT job_subject($12, j.priority, j.model_name), i.msg_id,
                            jsonb_build_object('job_id', j.id), job_trace_headers(j.traceparent),
                            CASE WHEN j.priority = 'bulk'
                                 THEN coalesce(j.owner_key_id::text, '') END
                     FROM j JOIN i USING (id))
               SELECT "#,
            r#" FROM j"#,
            &ids,
            &model_ids as &[&str],
            &model_names as &[&str],
            &image_urls as &[&str],
            &webhook_urls as &[Option<&str>],
            &max_attempts,
            &trace_ids as &[Option<&str>],
            &traceparents as &[Option<&str>],
            actors as &[&str],
            to as JobStatus,
            MSG_QUEUED,
            &self.subjects.prefix,
            &owners as &[Option<uuid::Uuid>],
            &msg_ids,
            &priorities as &[&str],
            &batch_ids as &[Option<uuid::Uuid>],
        )
        .fetch_all(executor)
        .await?;
        Ok(rows)
    }

    /// The job with this id, if any.
    pub async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let job = query_job!(r#"SELECT "#, r#" FROM jobs WHERE id = $1"#, id as JobId)
            .fetch_optional(&self.pool)
            .await?;
        Ok(job)
    }

    /// The job's event log, oldest first.
    pub async fn events(&self, id: JobId) -> Result<Vec<JobEventRow>, StoreError> {
        let rows = sqlx::query_as!(
            JobEventRow,
            r#"SELECT id, job_id AS "job_id: JobId", at,
                      from_status AS "from_status: JobStatus", to_status AS "to_status: JobStatus",
                      attempt AS "attempt: Attempt", actor, detail
               FROM job_events WHERE job_id = $1 ORDER BY id"#,
            id as JobId
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Takes a lease on a queued job, bumping its attempt number (the fencing token).
    pub async fn claim(
        &self,
        id: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let from = JobStatus::Queued;
        let to = status_after(from, Transition::Claim)?;
        let claimed = query_job!(
            r#"WITH c AS (
                 UPDATE jobs SET status = $2, attempt = attempt + 1, lease_owner = $3,
                        lease_expires_at = now() + make_interval(secs => $4), not_before = NULL,
                        started_at = now(), updated_at = now(), message = $5
                 WHERE id = $1 AND status = $6 AND (not_before IS NULL OR not_before <= now())
                 RETURNING *),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor)
                     SELECT id, $6, status, attempt, $3 FROM c)
               SELECT "#,
            r#" FROM c"#,
            id as JobId,
            to as JobStatus,
            owner,
            lease.as_secs_f64(),
            MSG_IN_PROGRESS,
            from as JobStatus,
        )
        .fetch_optional(&self.pool)
        .await?;
        if let Some(job) = claimed {
            let fence = Fence {
                job_id: job.id,
                attempt: job.attempt,
                owner: owner.to_string(),
            };
            return Ok(ClaimOutcome::Claimed { job, fence });
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

    /// Extends the lease while `fence` is still current.
    pub async fn renew(&self, fence: &Fence, lease: Duration) -> Result<DateTime<Utc>, StoreError> {
        let until = sqlx::query_scalar!(
            r#"UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4)
               WHERE id = $1 AND status = $5 AND attempt = $2 AND lease_owner = $3
               RETURNING lease_expires_at AS "until!""#,
            fence.job_id as JobId,
            fence.attempt as Attempt,
            &fence.owner,
            lease.as_secs_f64(),
            JobStatus::Running as JobStatus,
        )
        .fetch_optional(&self.pool)
        .await?;
        until.ok_or_else(|| fence_lost(fence))
    }

    /// Stores the result of the fenced attempt, made by the model of version
    /// `model_version`: SUCCESS, its event, the finished-job message and the webhook
    /// delivery, all or nothing.
    pub async fn succeed(
        &self,
        fence: &Fence,
        response: &serde_json::Value,
        model_version: &str,
    ) -> Result<Job, StoreError> {
        let finish = Finish {
            to: status_after(JobStatus::Running, Transition::Succeed)?,
            message: MSG_SUCCESS,
            response: Some(response),
            error: None,
            model_version: Some(model_version),
        };
        self.finish_on(&self.pool, fence, &fence.owner, &finish)
            .await
    }

    /// Stores the results of several fenced attempts in one statement and one commit
    /// (SUCCESS, event, finished-job message and webhook delivery of each, all or
    /// nothing). The jobs whose attempt is no longer current are left out of the answer.
    pub async fn succeed_many(&self, results: &[Success]) -> Result<Vec<Job>, StoreError> {
        let finish = Finish {
            to: status_after(JobStatus::Running, Transition::Succeed)?,
            message: MSG_SUCCESS,
            response: None,
            error: None,
            model_version: None,
        };
        self.finish_attempts(results, &finish).await
    }

    /// Fails the job for good with a message that says why.
    pub async fn fail(&self, fence: &Fence, reason: &str) -> Result<Job, StoreError> {
        let finish = Finish {
            to: status_after(JobStatus::Running, Transition::Fail)?,
            message: reason,
            response: None,
            error: Some(reason),
            model_version: None,
        };
        self.finish_on(&self.pool, fence, &fence.owner, &finish)
            .await
    }

    /// A transient failure: back to the queue after the policy's backoff, or failed with
    /// the reason when the job's attempt budget is spent. One transaction, with the row
    /// locked, so the decision and the write see the same job.
    pub async fn retry(
        &self,
        fence: &Fence,
        reason: &str,
        policy: &RetryPolicy,
        jitter: f64,
    ) -> Result<RetryOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let max = sqlx::query_scalar!(
            r#"SELECT max_attempts AS "max: Attempt" FROM jobs
               WHERE id = $1 AND status = $4 AND attempt = $2 AND lease_owner = $3
               FOR UPDATE"#,
            fence.job_id as JobId,
            fence.attempt as Attempt,
            &fence.owner,
            JobStatus::Running as JobStatus,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| fence_lost(fence))?;
        let outcome = if fence.attempt.has_next_within(max) {
            let message = format!(
                "{MSG_QUEUED} (attempt {} failed: {reason}; retrying)",
                fence.attempt
            );
            let detail = format!("{}: {reason}", Transition::Retry.as_str());
            let requeue = Requeue {
                transition: Transition::Retry,
                message: &message,
                last_error: Some(reason),
                detail: &detail,
                delay: policy.delay_after(fence.attempt, jitter),
            };
            let job = self
                .requeue_on(&mut *tx, fence, &fence.owner, &requeue)
                .await?;
            RetryOutcome::Requeued {
                not_before: job.not_before.unwrap_or_else(Utc::now),
            }
        } else {
            let message = format!("{reason} (gave up after {} attempts)", fence.attempt);
            let finish = Finish {
                to: status_after(JobStatus::Running, Transition::Fail)?,
                message: &message,
                response: None,
                error: Some(&message),
                model_version: None,
            };
            let job = self
                .finish_on(&mut *tx, fence, &fence.owner, &finish)
                .await?;
            RetryOutcome::Failed(job)
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Hands a running job back to the queue (worker shutting down). The attempt does not
    /// count: the budget grows by one, since the next claim takes a new attempt number
    /// (the fence must never repeat).
    pub async fn release(&self, fence: &Fence) -> Result<Job, StoreError> {
        let requeue = Requeue {
            transition: Transition::Release,
            message: MSG_QUEUED,
            last_error: None,
            detail: Transition::Release.as_str(),
            delay: Duration::ZERO,
        };
        self.requeue_on(&self.pool, fence, &fence.owner, &requeue)
            .await
    }

    /// Back to the queue with a new dispatch message (unique `Nats-Msg-Id` per attempt),
    /// fenced on `fence`; `actor` is who the event names. A transition that does not
    /// spend the attempt gives the budget one back.
    pub(crate) async fn requeue_on<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        fence: &Fence,
        actor: &str,
        r: &Requeue<'_>,
    ) -> Result<Job, StoreError> {
        let from = JobStatus::Running;
        let to = status_after(from, r.transition)?;
        let row = query_job!(
            r#"WITH q AS (
                 UPDATE jobs SET status = $4, lease_owner = NULL, lease_expires_at = NULL,
                        not_before = now() + make_interval(secs => $5), message = $6,
                        last_error = COALESCE($7, last_error), updated_at = now(),
                        max_attempts = max_attempts + $13
                 WHERE id = $1 AND status = $11 AND attempt = $2 AND lease_owner = $3
                 RETURNING *),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail)
                     SELECT id, $11, status, attempt, $12, $8 FROM q),
               o AS (INSERT INTO outbox (subject, msg_id, payload, headers, not_before)
                     SELECT job_subject($9, priority, model_name), $10, jsonb_build_object('job_id', id),
                            job_trace_headers(traceparent), CASE WHEN $5 > 0 THEN not_before END
                     FROM q)
               SELECT "#,
            r#" FROM q"#,
            fence.job_id as JobId,
            fence.attempt as Attempt,
            &fence.owner,
            to as JobStatus,
            r.delay.as_secs_f64(),
            r.message,
            r.last_error,
            r.detail,
            &self.subjects.prefix,
            redispatch_msg_id(fence.job_id, fence.attempt),
            from as JobStatus,
            actor,
            i32::from(!r.transition.spends_attempt()),
        )
        .fetch_optional(executor)
        .await?;
        row.ok_or_else(|| fence_lost(fence))
    }
}
