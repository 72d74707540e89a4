//! Sweeps that repair what crashes and lost messages leave behind, and the daily
//! reconciliation counts. Each sweep is one guarded statement over rows locked with
//! `FOR UPDATE SKIP LOCKED`, so any number of schedulers can run them at once.

use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::jobs::FINISH_SIDE_EFFECTS;
use super::{MSG_QUEUED, Store, StoreError};
use crate::domain::{JobStatus, Transition, next_status};

/// Event detail of a re-drive (also how reconciliation counts them).
pub const REDRIVE_DETAIL: &str = "redrive: lease expired (worker lost)";
/// Event detail of a job failed because its workers kept disappearing.
pub const LOST_FAIL_DETAIL: &str = "fail: lease expired with no attempt left";
/// Event detail of a republished dispatch message.
pub const REPUBLISH_DETAIL: &str = "republish: dispatch message may have been lost";

/// Advisory lock key held by the scheduler running the daily reconciliation.
const RECONCILE_LOCK_KEY: i64 = 0x666f_6f64_7365_6701;

/// Jobs whose lease expired, by what happened to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedriveReport {
    /// Back in the queue with a new dispatch message.
    pub redriven: Vec<Uuid>,
    /// No attempt left: failed, with the event, finished-job message and webhook delivery.
    pub failed: Vec<Uuid>,
}

/// Jobs of one state in one age bucket (age since creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct JobAgeCount {
    pub status: String,
    /// `lt_1m`, `lt_1h`, `lt_1d`, `lt_7d` or `ge_7d`.
    pub age: String,
    pub count: i64,
}

/// What the daily reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconciliationReport {
    pub day: NaiveDate,
    pub jobs: Vec<JobAgeCount>,
    /// Jobs re-driven after a lost worker in the last 24 h.
    pub redriven_24h: i64,
    /// Jobs failed after losing their worker on every attempt in the last 24 h.
    pub lost_failed_24h: i64,
    /// Dispatch messages republished for QUEUED jobs in the last 24 h.
    pub republished_24h: i64,
    /// Webhook deliveries that failed for good in the last 24 h.
    pub deliveries_failed_24h: i64,
    pub deliveries_pending: i64,
    pub outbox_unpublished: i64,
}

impl Store {
    /// Handles up to `limit` RUNNING jobs whose lease expired: re-driven to the queue with
    /// a new dispatch message while attempts are left, otherwise failed with a message
    /// saying the worker was lost (plus the finish side effects: event, message, webhook).
    pub async fn redrive_expired(
        &self,
        actor: &str,
        limit: i64,
    ) -> Result<RedriveReport, StoreError> {
        let queued = next_status(Some(JobStatus::Running), Transition::Redrive)?.as_str();
        let redriven: Vec<Uuid> = sqlx::query_scalar(
            "WITH x AS ( \
               SELECT id FROM jobs \
               WHERE status = 'running' AND lease_expires_at < now() AND attempt < max_attempts \
               ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
             q AS ( \
               UPDATE jobs j SET status = $2, lease_owner = NULL, lease_expires_at = NULL, \
                      not_before = NULL, updated_at = now(), last_error = $4, \
                      message = $5 || ' (attempt ' || j.attempt || ' failed: ' || $4 || '; retrying)' \
               FROM x WHERE j.id = x.id AND j.status = 'running' \
               RETURNING j.id, j.status, j.attempt, j.model_name, j.traceparent), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail) \
                   SELECT id, 'running', status, attempt, $3, $6 FROM q), \
             o AS (INSERT INTO outbox (subject, msg_id, payload, headers) \
                   SELECT $7 || model_name, id::text || '.' || attempt, \
                          jsonb_build_object('job_id', id), \
                          CASE WHEN traceparent IS NULL THEN '{}'::jsonb \
                               ELSE jsonb_build_object('traceparent', traceparent) END FROM q) \
             SELECT id FROM q",
        )
        .bind(limit)
        .bind(queued)
        .bind(actor)
        .bind("worker lost (lease expired)")
        .bind(MSG_QUEUED)
        .bind(REDRIVE_DETAIL)
        .bind(self.subjects.job(""))
        .fetch_all(&self.pool)
        .await?;

        let failed_status = next_status(Some(JobStatus::Running), Transition::Fail)?.as_str();
        // Parameters $3, $7 and $8 are the ones FINISH_SIDE_EFFECTS expects.
        let sql = format!(
            "WITH x AS ( \
               SELECT id FROM jobs \
               WHERE status = 'running' AND lease_expires_at < now() AND attempt >= max_attempts \
               ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
             d AS ( \
               UPDATE jobs j SET status = $2, \
                      message = $4 || (1 + (SELECT count(*) FROM job_events ev \
                                            WHERE ev.job_id = j.id AND ev.detail = $5)) || $6, \
                      last_error = $7, lease_owner = NULL, lease_expires_at = NULL, \
                      finished_at = now(), updated_at = now(), \
                      processing_time = EXTRACT(EPOCH FROM now() - j.started_at)::float8 \
               FROM x WHERE j.id = x.id AND j.status = 'running' \
               RETURNING j.id, j.status, j.attempt, j.traceparent, j.webhook_url), \
             {FINISH_SIDE_EFFECTS} \
             SELECT id FROM d"
        );
        let failed: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(limit)
            .bind(failed_status)
            .bind(actor)
            .bind("worker lost ")
            .bind(REDRIVE_DETAIL)
            .bind(" times (lease expired); giving up")
            .bind(LOST_FAIL_DETAIL)
            .bind(self.subjects.job_event(""))
            .fetch_all(&self.pool)
            .await?;
        Ok(RedriveReport { redriven, failed })
    }

    /// Writes a new dispatch message (unique `Nats-Msg-Id`) for up to `limit` QUEUED jobs
    /// that are due to run but saw no change for `stale_after`: JetStream may have lost
    /// their message. The wait doubles with each republish of the same job (up to 64×), so
    /// a long but healthy queue is not flooded with copies.
    pub async fn republish_stale_queued(
        &self,
        actor: &str,
        stale_after: Duration,
        limit: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let ids = sqlx::query_scalar(
            "WITH x AS ( \
               SELECT id FROM jobs \
               WHERE status = 'queued' AND updated_at < now() - make_interval(secs => $2) \
                 AND (not_before IS NULL OR not_before < now() - make_interval(secs => $2)) \
                 AND (redispatched_at IS NULL OR redispatched_at < now() \
                      - make_interval(secs => $2 * power(2, LEAST(redispatches, 6)))) \
               ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
             r AS ( \
               UPDATE jobs j SET redispatched_at = now(), redispatches = j.redispatches + 1 \
               FROM x WHERE j.id = x.id AND j.status = 'queued' \
               RETURNING j.id, j.status, j.attempt, j.model_name, j.traceparent, j.redispatches), \
             e AS (INSERT INTO job_events (job_id, from_status, to_status, attempt, actor, detail) \
                   SELECT id, status, status, attempt, $3, $4 FROM r), \
             o AS (INSERT INTO outbox (subject, msg_id, payload, headers) \
                   SELECT $5 || model_name, id::text || '.' || attempt || '.r' || redispatches, \
                          jsonb_build_object('job_id', id), \
                          CASE WHEN traceparent IS NULL THEN '{}'::jsonb \
                               ELSE jsonb_build_object('traceparent', traceparent) END FROM r) \
             SELECT id FROM r",
        )
        .bind(limit)
        .bind(stale_after.as_secs_f64())
        .bind(actor)
        .bind(REPUBLISH_DETAIL)
        .bind(self.subjects.job(""))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// How long the oldest QUEUED job has waited since it was created, if any is queued.
    pub async fn oldest_queued_age(&self) -> Result<Option<Duration>, StoreError> {
        let secs: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 \
             FROM jobs WHERE status = 'queued'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(secs.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)))
    }

    /// Runs the reconciliation of `day` unless another scheduler holds the reconciliation
    /// lock or already ran it: counts jobs by state and age, recoveries and failed
    /// deliveries of the last 24 h, and stores the report. `None` when skipped.
    pub async fn reconcile(
        &self,
        day: NaiveDate,
    ) -> Result<Option<ReconciliationReport>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RECONCILE_LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            // Roll back now: a dropped transaction only rolls back when its connection is
            // next used, and until then it would keep the advisory lock.
            tx.rollback().await?;
            return Ok(None);
        }
        let done: Option<i32> = sqlx::query_scalar("SELECT 1 FROM reconciliations WHERE day = $1")
            .bind(day)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        let jobs: Vec<JobAgeCount> = sqlx::query_as(
            "SELECT status, \
                    CASE WHEN age < interval '1 minute' THEN 'lt_1m' \
                         WHEN age < interval '1 hour' THEN 'lt_1h' \
                         WHEN age < interval '1 day' THEN 'lt_1d' \
                         WHEN age < interval '7 days' THEN 'lt_7d' \
                         ELSE 'ge_7d' END AS age, \
                    count(*) AS count \
             FROM (SELECT status, now() - created_at AS age FROM jobs) a \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(&mut *tx)
        .await?;
        let (redriven_24h, lost_failed_24h, republished_24h): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE detail = $1), count(*) FILTER (WHERE detail = $2), \
                    count(*) FILTER (WHERE detail = $3) \
             FROM job_events WHERE at > now() - interval '1 day' AND detail IN ($1, $2, $3)",
        )
        .bind(REDRIVE_DETAIL)
        .bind(LOST_FAIL_DETAIL)
        .bind(REPUBLISH_DETAIL)
        .fetch_one(&mut *tx)
        .await?;
        let (deliveries_failed_24h, deliveries_pending): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM deliveries \
                     WHERE status = 'failed' AND finished_at > now() - interval '1 day'), \
                    (SELECT count(*) FROM deliveries WHERE status = 'pending')",
        )
        .fetch_one(&mut *tx)
        .await?;
        let outbox_unpublished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&mut *tx)
                .await?;
        let report = ReconciliationReport {
            day,
            jobs,
            redriven_24h,
            lost_failed_24h,
            republished_24h,
            deliveries_failed_24h,
            deliveries_pending,
            outbox_unpublished,
        };
        let json = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
        sqlx::query("INSERT INTO reconciliations (day, report) VALUES ($1, $2)")
            .bind(day)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(report))
    }
}
