//! What an operator may do to a job besides redelivering its webhook: cancel it while it
//! is queued (it ends failed, with its finished message and its webhook, as if a worker
//! had failed it), or send a failed job back to the queue with a new attempt budget.

use uuid::Uuid;

use super::jobs::MSG_QUEUED;
use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{Attempt, DeliveryStatus, JobId, JobStatus, Transition, next_status};

/// The message (and error) of a job an operator cancelled.
pub const CANCELLED_BY_OPERATOR: &str = "cancelled by operator";

/// How an operator's action on a job went.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Done; the job as it is now.
    Done(Box<Job>),
    NotFound,
    /// The job is not in a state the action applies to.
    WrongState(JobStatus),
    /// A webhook delivery of the job is still pending: resubmitting now could end with
    /// two deliveries of the job in flight at once.
    DeliveryPending,
}

impl Store {
    /// Cancels a queued job: it fails with [`CANCELLED_BY_OPERATOR`], its finished
    /// message goes to the outbox and its webhook (if any) is queued, in one statement.
    /// A worker that receives its dispatch message later finds nothing to claim.
    pub async fn cancel(&self, job_id: JobId, actor: &str) -> Result<Action, StoreError> {
        let ended = self
            .fail_queued(
                &self.pool,
                &[job_id],
                Transition::Cancel,
                CANCELLED_BY_OPERATOR,
                actor,
            )
            .await?;
        match ended.into_iter().next() {
            Some(job) => Ok(Action::Done(Box::new(job))),
            None => self.why_not(job_id).await,
        }
    }

    /// Ends the queued jobs among `ids` as failed with `message` through `transition`
    /// (cancel, expire): each with its event, its finished message in the outbox and its
    /// webhook delivery, in one statement. Jobs no longer queued are left alone. The one
    /// place a job that never ran finishes.
    pub(crate) async fn fail_queued<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        ids: &[JobId],
        transition: Transition,
        message: &str,
        actor: &str,
    ) -> Result<Vec<Job>, StoreError> {
        let from = JobStatus::Queued;
        let to = next_status(Some(from), transition)?;
        let detail = format!("{}: {message}", transition.as_str());
        let rows = query_job!(
            "WITH c AS ( \
               UPDATE jobs SET status = $2, message = $3, last_error = $3, not_before = NULL, \
                      finished_at = now(), updated_at = now() \
               WHERE id = ANY($1) AND status = $4 \
               RETURNING *), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail) \
                   SELECT id, $4, status, attempt, $5, $6 FROM c), \
             o AS (INSERT INTO outbox (subject, msg_id, payload, headers) \
                   SELECT $7 || status, id::text || '.' || $9 || '.' || gen_random_uuid(), \
                          jsonb_build_object('job_id', id, 'status', status, 'attempt', attempt), \
                          CASE WHEN traceparent IS NULL THEN '{}'::jsonb \
                               ELSE jsonb_build_object('traceparent', traceparent) END \
                   FROM c), \
             w AS (INSERT INTO deliveries (id, job_id, webhook_id, url, status, traceparent) \
                   SELECT gen_random_uuid(), c.id, \
                          CASE WHEN EXISTS (SELECT 1 FROM deliveries x WHERE x.job_id = c.id) \
                               THEN 'msg_' || replace(c.id::text, '-', '') || '_' \
                                    || left(replace(gen_random_uuid()::text, '-', ''), 8) \
                               ELSE 'msg_' || replace(c.id::text, '-', '') END, \
                          c.webhook_url, $8, c.traceparent \
                   FROM c WHERE c.webhook_url IS NOT NULL \
                   ON CONFLICT (job_id) WHERE status = 'pending' DO NOTHING) \
             SELECT ",
            " FROM c",
            ids as &[JobId],
            to as JobStatus,
            message,
            from as JobStatus,
            actor,
            detail,
            self.subjects.job_event(""),
            DeliveryStatus::Pending as DeliveryStatus,
            transition.as_str(),
        )
        .fetch_all(executor)
        .await?;
        Ok(rows)
    }

    /// Sends a failed job back to the queue with `budget` more attempts: its result and
    /// finish time are cleared, an event records who did it, and a new dispatch message
    /// (with its own `Nats-Msg-Id`) goes to the outbox. Refused while a webhook delivery
    /// of the job is pending.
    pub async fn resubmit(
        &self,
        job_id: JobId,
        actor: &str,
        budget: Attempt,
    ) -> Result<Action, StoreError> {
        let from = JobStatus::Failed;
        let to = next_status(Some(from), Transition::Resubmit)?;
        let detail = format!(
            "{}: {} more attempt(s)",
            Transition::Resubmit.as_str(),
            budget
        );
        let row = query_job!(
            "WITH r AS ( \
               UPDATE jobs SET status = $2, max_attempts = attempt + $3, message = $4, \
                      response = NULL, finished_at = NULL, processing_time = NULL, \
                      not_before = NULL, updated_at = now() \
               WHERE id = $1 AND status = $5 \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = $1 AND d.status = $6) \
               RETURNING *), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail) \
                   SELECT id, $5, status, attempt, $7, $8 FROM r), \
             o AS (INSERT INTO outbox (subject, msg_id, payload, headers) \
                   SELECT $9 || model_name, $10, jsonb_build_object('job_id', id), \
                          CASE WHEN traceparent IS NULL THEN '{}'::jsonb \
                               ELSE jsonb_build_object('traceparent', traceparent) END \
                   FROM r) \
             SELECT ",
            " FROM r",
            job_id as JobId,
            to as JobStatus,
            budget.get(),
            MSG_QUEUED,
            from as JobStatus,
            DeliveryStatus::Pending as DeliveryStatus,
            actor,
            detail,
            self.subjects.job(""),
            format!("{job_id}.resubmit.{}", Uuid::new_v4().simple()),
        )
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(job) => Ok(Action::Done(Box::new(job))),
            None => match self.why_not(job_id).await? {
                Action::WrongState(JobStatus::Failed) => Ok(Action::DeliveryPending),
                other => Ok(other),
            },
        }
    }

    /// Why an action's statement changed nothing: no such job, or its state now.
    async fn why_not(&self, job_id: JobId) -> Result<Action, StoreError> {
        Ok(match self.get(job_id).await? {
            None => Action::NotFound,
            Some(job) => Action::WrongState(job.status),
        })
    }
}
