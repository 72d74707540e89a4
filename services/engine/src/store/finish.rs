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

/// A fenced attempt's result, for [`Store::succeed_many`](super::Store::succeed_many).
#[derive(Debug, Clone)]
pub struct Success {
    pub fence: Fence,
    pub response: serde_json::Value,
    /// The version of the model that produced the result.
    pub model_version: String,
}

/// One job a statement ends, with what differs from job to job.
struct Row<'a> {
    id: JobId,
    msg_id: String,
    /// The attempt's fence; none for a queued job.
    fence: Option<&'a Fence>,
    actor: &'a str,
    response: Option<&'a serde_json::Value>,
    model_version: Option<&'a str>,
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
        let rows = [attempt_row(fence, actor, f)];
        let mut rows = self.finish_jobs(executor, &rows, f, f.error).await?;
        rows.pop()
            .ok_or_else(|| StoreError::FenceLost(fence.into()))
    }

    /// Finishes several fenced attempts as `f` says, each with its own result and model
    /// version, in one statement. The jobs whose attempt is no longer current are left
    /// out of the answer.
    pub(crate) async fn finish_attempts(
        &self,
        results: &[Success],
        f: &Finish<'_>,
    ) -> Result<Vec<Job>, StoreError> {
        let rows: Vec<Row<'_>> = results
            .iter()
            .map(|r| Row {
                response: Some(&r.response),
                model_version: Some(&r.model_version),
                ..attempt_row(&r.fence, &r.fence.owner, f)
            })
            .collect();
        self.finish_jobs(&self.pool, &rows, f, f.error).await
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
        let rows: Vec<Row<'_>> = ids
            .iter()
            .map(|&id| Row {
                id,
                msg_id: ended_msg_id(id, transition),
                fence: None,
                actor,
                response: None,
                model_version: None,
            })
            .collect();
        self.finish_jobs(executor, &rows, &finish, Some(&detail))
            .await
    }

    /// The statement. Every row is a running job's fenced attempt (the rows' fences) or
    /// else a queued job; `f` says what all of them become. A running job's
    /// `processing_time` is its time since the claim. A result's event names the model
    /// and the first 12 hex digits of its version. The finished message's `Nats-Msg-Id`
    /// comes from [`crate::message`]; the webhook's `webhook-id` from `job_webhook_id`
    /// (a migration's SQL function). A job that already has a pending delivery keeps it:
    /// that delivery sends the job as it is when it goes out.
    ///
    /// Each job is found by its primary key. The status is compared with `IS NOT DISTINCT
    /// FROM` (the same test here, `status` being `NOT NULL`) because no index answers it:
    /// written as `status = $9`, a plan made without statistics (a new database, or
    /// autovacuum off) read the status index instead, every entry of every job that was
    /// ever running, dead or alive, to update one row; prepared statements kept that plan.
    async fn finish_jobs<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
        rows: &[Row<'_>],
        f: &Finish<'_>,
        detail: Option<&str>,
    ) -> Result<Vec<Job>, StoreError> {
        let from = if rows.iter().any(|r| r.fence.is_some()) {
            JobStatus::Running
        } else {
            JobStatus::Queued
        };
        let ids: Vec<JobId> = rows.iter().map(|r| r.id).collect();
        let msg_ids: Vec<&str> = rows.iter().map(|r| r.msg_id.as_str()).collect();
        let attempts: Vec<Option<i32>> = rows
            .iter()
            .map(|r| r.fence.map(|f| f.attempt.get()))
            .collect();
        let owners: Vec<Option<&str>> = rows
            .iter()
            .map(|r| r.fence.map(|f| f.owner.as_str()))
            .collect();
        let actors: Vec<&str> = rows.iter().map(|r| r.actor).collect();
        let responses: Vec<Option<serde_json::Value>> =
            rows.iter().map(|r| r.response.cloned()).collect();
        let versions: Vec<Option<&str>> = rows.iter().map(|r| r.model_version).collect();
        let rows = query_job!(
            r#"WITH m AS (SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::text[],
                                                  $7::jsonb[], $14::text[], $10::text[])
                          AS m(id, msg_id, attempt, owner, response, model_version, actor)),
               d AS (
                 UPDATE jobs j SET status = $5, message = $6, response = m.response,
                        last_error = COALESCE($8, j.last_error), lease_owner = NULL,
                        lease_expires_at = NULL, not_before = NULL, finished_at = now(),
                        updated_at = now(),
                        model_version = COALESCE(m.model_version, j.model_version),
                        processing_time = CASE WHEN j.status = 'running'
                          THEN EXTRACT(EPOCH FROM now() - j.started_at)::float8
                          ELSE j.processing_time END
                 FROM m
                 WHERE j.id = m.id AND j.status IS NOT DISTINCT FROM $9
                   AND (m.attempt IS NULL OR (j.attempt = m.attempt AND j.lease_owner = m.owner))
                 RETURNING j.*, m.msg_id, m.actor),
               e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail)
                     SELECT id, $9, status, attempt, actor,
                            COALESCE($11, 'model ' || model_name || ' version ' || left(model_version, 12))
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
            &msg_ids as &[&str],
            &attempts as &[Option<i32>],
            &owners as &[Option<&str>],
            f.to as JobStatus,
            f.message,
            &responses as &[Option<serde_json::Value>],
            f.error,
            from as JobStatus,
            &actors as &[&str],
            detail,
            self.subjects.job_event(""),
            DeliveryStatus::Pending as DeliveryStatus,
            &versions as &[Option<&str>],
        )
        .fetch_all(executor)
        .await?;
        Ok(rows)
    }
}

/// The row of a fenced attempt finished as `f` says, on `actor`'s behalf.
fn attempt_row<'a>(fence: &'a Fence, actor: &'a str, f: &Finish<'a>) -> Row<'a> {
    Row {
        id: fence.job_id,
        msg_id: finished_msg_id(fence.job_id, f.to, fence.attempt),
        fence: Some(fence),
        actor,
        response: f.response,
        model_version: f.model_version,
    }
}
