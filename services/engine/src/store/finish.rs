//! The one place a job finishes. Every path that ends a job — a worker's result or
//! failure, a retry budget spent, a sweep giving up on a lost worker, an operator's cancel,
//! an expiry — goes through [`Store::finish_jobs`]: one statement that writes the job row,
//! its event, its finished-job message for the outbox and its webhook delivery, all or
//! nothing.

use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{DeliveryStatus, Fence, JobId, JobStatus, Transition, next_status};
use crate::message::{ended_msg_id, finished_msg_id};

/// How a finish is written: the state it leads to, the job's message, the result (on
/// success) and the error (kept in `last_error` and as the event's detail).
pub(crate) struct Finish<'a> {
    pub to: JobStatus,
    pub message: &'a str,
    pub response: Option<&'a serde_json::Value>,
    pub error: Option<&'a str>,
    /// The version of the model that produced the result, recorded with the job and named
    /// in the event.
    pub model_version: Option<&'a str>,
}

/// Which jobs a finish ends.
enum Ending<'a> {
    /// The fenced running attempt.
    Attempt(&'a Fence),
    /// These jobs, those still queued.
    Queued(&'a [JobId], Transition),
}

impl Store {
    /// Finishes the fenced attempt; `actor` is who the event names. Fails with
    /// [`StoreError::FenceLost`] when the attempt no longer holds the job.
    pub(crate) async fn finish_on<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        fence: &Fence,
        actor: &str,
        f: &Finish<'_>,
    ) -> Result<Job, StoreError> {
        let mut rows = self
            .finish_jobs(executor, Ending::Attempt(fence), actor, f, f.error)
            .await?;
        rows.pop()
            .ok_or_else(|| StoreError::FenceLost(fence.into()))
    }

    /// Ends the queued jobs among `ids` as failed with `message` through `transition`
    /// (cancel, expire). Jobs no longer queued are left alone; the ended ones come back.
    pub(crate) async fn fail_queued<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        ids: &[JobId],
        transition: Transition,
        message: &str,
        actor: &str,
    ) -> Result<Vec<Job>, StoreError> {
        let finish = Finish {
            to: next_status(Some(JobStatus::Queued), transition)?,
            message,
            response: None,
            error: Some(message),
            model_version: None,
        };
        let detail = format!("{}: {message}", transition.as_str());
        self.finish_jobs(
            executor,
            Ending::Queued(ids, transition),
            actor,
            &finish,
            Some(&detail),
        )
        .await
    }

    /// The statement. A running job's `processing_time` is its time since the claim. A
    /// result's event names the model and the first 12 hex digits of its version. The
    /// finished message's `Nats-Msg-Id` comes from [`crate::message`]; the webhook's
    /// `webhook-id` from `job_webhook_id` (a migration's SQL function). A job that
    /// already has a pending delivery keeps it: that delivery sends the job as it is
    /// when it goes out.
    async fn finish_jobs<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        ending: Ending<'_>,
        actor: &str,
        f: &Finish<'_>,
        detail: Option<&str>,
    ) -> Result<Vec<Job>, StoreError> {
        let (from, ids, msg_ids, attempt, owner) = match ending {
            Ending::Attempt(fence) => (
                JobStatus::Running,
                vec![fence.job_id],
                vec![finished_msg_id(fence.job_id, f.to, fence.attempt)],
                Some(fence.attempt.get()),
                Some(fence.owner.as_str()),
            ),
            Ending::Queued(ids, transition) => (
                JobStatus::Queued,
                ids.to_vec(),
                ids.iter().map(|&id| ended_msg_id(id, transition)).collect(),
                None,
                None,
            ),
        };
        let rows = query_job!(
            r#"WITH m AS (SELECT * FROM UNNEST($1::uuid[], $2::text[]) AS m(id, msg_id)),
               d AS (
                 UPDATE jobs j SET status = $5, message = $6, response = $7,
                        last_error = COALESCE($8, j.last_error), lease_owner = NULL,
                        lease_expires_at = NULL, not_before = NULL, finished_at = now(),
                        updated_at = now(), model_version = COALESCE($14, j.model_version),
                        processing_time = CASE WHEN j.status = 'running'
                          THEN EXTRACT(EPOCH FROM now() - j.started_at)::float8
                          ELSE j.processing_time END
                 FROM m
                 WHERE j.id = m.id AND j.status = $9
                   AND ($3::int4 IS NULL OR (j.attempt = $3 AND j.lease_owner = $4))
                 RETURNING j.*, m.msg_id),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail)
                     SELECT id, $9, status, attempt, $10,
                            COALESCE($11, 'model ' || model_name || ' version ' || left($14, 12))
                     FROM d),
               o AS (INSERT INTO outbox (subject, msg_id, payload, headers)
                     SELECT $12 || status, msg_id,
                            jsonb_build_object('job_id', id, 'status', status, 'attempt', attempt),
                            job_trace_headers(traceparent)
                     FROM d),
               w AS (INSERT INTO deliveries (id, job_id, webhook_id, url, status, traceparent)
                     SELECT gen_random_uuid(), id, job_webhook_id(id), webhook_url, $13, traceparent
                     FROM d WHERE webhook_url IS NOT NULL
                     ON CONFLICT (job_id) WHERE status = 'pending' DO NOTHING)
               SELECT "#,
            r#" FROM d"#,
            &ids as &[JobId],
            &msg_ids,
            attempt,
            owner,
            f.to as JobStatus,
            f.message,
            f.response,
            f.error,
            from as JobStatus,
            actor,
            detail,
            self.subjects.job_event(""),
            DeliveryStatus::Pending as DeliveryStatus,
            f.model_version,
        )
        .fetch_all(executor)
        .await?;
        Ok(rows)
    }
}
