//! What an operator may do to a job besides redelivering its webhook: cancel it while it
//! is queued (it ends failed, with its finished message and its webhook, as if a worker
//! had failed it), or send a failed job back to the queue with a new attempt budget.

use super::jobs::MSG_QUEUED;
use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{Attempt, DeliveryStatus, JobId, JobStatus, Transition, next_status};
use crate::message::resubmit_msg_id;

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
            r#"WITH r AS (
                 UPDATE jobs SET status = $2, max_attempts = attempt + $3, message = $4,
                        response = NULL, finished_at = NULL, processing_time = NULL,
                        not_before = NULL, updated_at = now()
                 WHERE id = $1 AND status = $5
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = $1 AND d.status = $6)
                 RETURNING *),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail)
                     SELECT id, $5, status, attempt, $7, $8 FROM r),
               o AS (INSERT INTO outbox (subject, msg_id, payload, headers)
                     SELECT job_subject($9, priority, model_name), $10, jsonb_build_object('job_id', id),
                            job_trace_headers(traceparent)
                     FROM r)
               SELECT "#,
            r#" FROM r"#,
            job_id as JobId,
            to as JobStatus,
            budget.get(),
            MSG_QUEUED,
            from as JobStatus,
            DeliveryStatus::Pending as DeliveryStatus,
            actor,
            detail,
            &self.subjects.prefix,
            resubmit_msg_id(job_id),
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
