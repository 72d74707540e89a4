//! Sweeps that repair what crashes and lost messages leave behind, and the daily
//! reconciliation counts. Each sweep works on rows locked with `FOR UPDATE SKIP LOCKED`,
//! so any number of schedulers can run them at once. The literals `'queued'` and
//! `'running'` in their `WHERE` clauses select the partial indexes `jobs_queued_updated`
//! and `jobs_running_lease`; values written are bound enums.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;

use super::finish::Finish;
use super::jobs::Requeue;
use super::{MSG_QUEUED, Store, StoreError};
use crate::domain::{Attempt, Fence, JobId, JobStatus, Priority, Transition, next_status};

/// Why a re-driven job's attempt failed (its `last_error`).
const WORKER_LOST: &str = "worker lost (lease expired)";
/// Event detail of a re-drive (also how reconciliation counts them).
pub const REDRIVE_DETAIL: &str = "redrive: lease expired (worker lost)";
/// Event detail of a job failed because its workers kept disappearing.
pub const LOST_FAIL_DETAIL: &str = "fail: lease expired with no attempt left";

/// Advisory lock key held by the scheduler running the daily reconciliation.
const RECONCILE_LOCK_KEY: i64 = 0x666f_6f64_7365_6701;

/// Jobs whose lease expired, by what happened to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedriveReport {
    /// Back in the queue with a new dispatch message.
    pub redriven: Vec<JobId>,
    /// No attempt left: failed, with the event, finished-job message and webhook delivery.
    pub failed: Vec<JobId>,
}

/// Jobs of one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStateCount {
    pub status: JobStatus,
    pub count: i64,
}

/// What the daily reconciliation found for one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconciliationReport {
    /// The UTC day counted: `[day 00:00, day+1 00:00)`.
    pub day: NaiveDate,
    /// Jobs created that day, by their state when the pass ran.
    pub jobs: Vec<JobStateCount>,
    /// Jobs re-driven after a lost worker that day.
    pub redriven_24h: i64,
    /// Jobs failed after losing their worker on every attempt that day.
    pub lost_failed_24h: i64,
    /// Dispatch messages republished for QUEUED jobs that day.
    pub republished_24h: i64,
    /// Webhook deliveries that failed for good that day.
    pub deliveries_failed_24h: i64,
    /// Webhook deliveries pending when the pass ran (the backlog, not the day's).
    pub deliveries_pending: i64,
    /// Outbox rows unpublished when the pass ran (the backlog, not the day's; held bulk
    /// dispatch messages wait by design and are not counted).
    pub outbox_unpublished: i64,
}

/// The first instant of `day` (UTC) and of the day after.
pub fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_time(NaiveTime::MIN).and_utc();
    (start, start + chrono::Duration::days(1))
}

impl Store {
    /// Handles up to `limit` RUNNING jobs whose lease expired: re-driven to the queue with
    /// a new dispatch message while their attempt budget allows, otherwise failed with a
    /// message saying the worker was lost (plus the finish side effects: event, message,
    /// webhook). One transaction; the budget is decided by [`Attempt::has_next_within`]
    /// and each write goes through the same fenced requeue and finish as a worker's.
    /// Nothing is re-driven while Postgres itself has been up for less than `grace` (a
    /// restart lapses every lease at once; the workers renew within one lease period).
    pub async fn redrive_expired(
        &self,
        actor: &str,
        grace: Duration,
        limit: i64,
    ) -> Result<RedriveReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        let expired = sqlx::query!(
            r#"-- periodic: redrive select
               SELECT id AS "id: JobId", attempt AS "attempt: Attempt",
                      max_attempts AS "max_attempts: Attempt", lease_owner AS "owner!",
                      (SELECT count(*) FROM job_events ev
                       WHERE ev.job_id = jobs.id AND ev.detail = $2) AS "lost_before!"
               FROM jobs
               WHERE status = 'running' AND lease_expires_at < now()
                 AND pg_postmaster_start_time() < now() - make_interval(secs => $3)
               ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED"#,
            limit,
            REDRIVE_DETAIL,
            grace.as_secs_f64(),
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut report = RedriveReport::default();
        for row in expired {
            let fence = Fence {
                job_id: row.id,
                attempt: row.attempt,
                owner: row.owner,
            };
            if row.attempt.has_next_within(row.max_attempts) {
                let message = format!(
                    "{MSG_QUEUED} (attempt {} failed: {WORKER_LOST}; retrying)",
                    row.attempt
                );
                let requeue = Requeue {
                    transition: Transition::Redrive,
                    message: &message,
                    last_error: Some(WORKER_LOST),
                    detail: REDRIVE_DETAIL,
                    delay: Duration::ZERO,
                };
                self.requeue_on(&mut *tx, &fence, actor, &requeue).await?;
                report.redriven.push(row.id);
            } else {
                let message = format!(
                    "worker lost {} times (lease expired); giving up",
                    row.lost_before + 1
                );
                let finish = Finish {
                    to: next_status(Some(JobStatus::Running), Transition::Fail)?,
                    message: &message,
                    response: None,
                    error: Some(LOST_FAIL_DETAIL),
                    model_version: None,
                };
                self.finish_on(&mut *tx, &fence, actor, &finish).await?;
                report.failed.push(row.id);
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Per priority: how many jobs are QUEUED, and how long the oldest of them has
    /// waited since it was created (zero when none is). Both read the partial index
    /// `jobs_queued_priority`.
    pub async fn queue_by_priority(&self) -> Result<Vec<(Priority, i64, Duration)>, StoreError> {
        let rows = sqlx::query!(
            r#"-- periodic: queue by priority
               SELECT p AS "priority!: Priority",
                      (SELECT count(*) FROM jobs WHERE status = 'queued' AND priority = p)
                        AS "queued!",
                      (SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM jobs
                       WHERE status = 'queued' AND priority = p) AS oldest
               FROM unnest(enum_range(NULL::job_priority)) AS p"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let age = r.oldest.map_or(Duration::ZERO, |s| {
                    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
                });
                (r.priority, r.queued, age)
            })
            .collect())
    }

    /// Runs the reconciliation of the UTC day `day` unless another scheduler holds the
    /// reconciliation lock or already ran it: counts the jobs created that day by state,
    /// the recoveries and failed deliveries of that day, the webhook and outbox backlogs,
    /// and stores the report. `None` when skipped.
    ///
    /// Every count reads one index range (the day's rows, or the backlog's partial index),
    /// never a whole table.
    pub async fn reconcile(
        &self,
        day: NaiveDate,
    ) -> Result<Option<ReconciliationReport>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_xact_lock($1) AS "locked!""#,
            RECONCILE_LOCK_KEY
        )
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            // Roll back now: a dropped transaction only rolls back when its connection is
            // next used, and until then it would keep the advisory lock.
            tx.rollback().await?;
            return Ok(None);
        }
        let done = sqlx::query_scalar!(
            r#"SELECT 1 AS one FROM reconciliations WHERE day = $1"#,
            day
        )
        .fetch_optional(&mut *tx)
        .await?;
        if done.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        let (from, until) = day_bounds(day);
        // The index `jobs_created`.
        let jobs = sqlx::query_as!(
            JobStateCount,
            r#"-- periodic: reconciliation: jobs of the day
               SELECT status AS "status!: JobStatus", count(*) AS "count!"
               FROM jobs WHERE created_at >= $1 AND created_at < $2
               GROUP BY 1 ORDER BY 1"#,
            from,
            until,
        )
        .fetch_all(&mut *tx)
        .await?;
        // The details are literals (`REDRIVE_DETAIL`, `LOST_FAIL_DETAIL`,
        // `REPUBLISH_DETAIL`) so every plan can use the partial index
        // `job_events_recoveries`, whose predicate lists the same three.
        let recoveries = sqlx::query!(
            r#"-- periodic: reconciliation: recoveries of the day
               SELECT count(*) FILTER (WHERE detail = 'redrive: lease expired (worker lost)')
                        AS "redriven!",
                      count(*) FILTER (WHERE detail = 'fail: lease expired with no attempt left')
                        AS "lost_failed!",
                      count(*) FILTER
                        (WHERE detail = 'republish: dispatch message may have been lost')
                        AS "republished!"
               FROM job_events
               WHERE at >= $1 AND at < $2
                 AND detail IN ('redrive: lease expired (worker lost)',
                                'fail: lease expired with no attempt left',
                                'republish: dispatch message may have been lost')"#,
            from,
            until,
        )
        .fetch_one(&mut *tx)
        .await?;
        // Literal states: the partial indexes deliveries_failed and deliveries_one_pending;
        // the outbox backlog, outbox_unpublished.
        let deliveries = sqlx::query!(
            r#"-- periodic: reconciliation: failed deliveries and backlogs
               SELECT (SELECT count(*) FROM deliveries
                       WHERE status = 'failed' AND finished_at >= $1 AND finished_at < $2)
                        AS "failed!",
                      (SELECT count(*) FROM deliveries WHERE status = 'pending') AS "pending!",
                      (SELECT count(*) FROM outbox
                       WHERE published_at IS NULL AND held_for IS NULL)
                        AS "outbox_unpublished!""#,
            from,
            until,
        )
        .fetch_one(&mut *tx)
        .await?;
        let report = ReconciliationReport {
            day,
            jobs,
            redriven_24h: recoveries.redriven,
            lost_failed_24h: recoveries.lost_failed,
            republished_24h: recoveries.republished,
            deliveries_failed_24h: deliveries.failed,
            deliveries_pending: deliveries.pending,
            outbox_unpublished: deliveries.outbox_unpublished,
        };
        let json = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
        sqlx::query!(
            r#"INSERT INTO reconciliations (day, report) VALUES ($1, $2)"#,
            day,
            json
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(report))
    }
}
