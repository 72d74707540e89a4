//! Reading many jobs at once, for reconciling clients and operators: the jobs changed
//! since a time, the finished jobs whose webhook is not delivered, and the daily
//! reconciliation reports. Lists are keyset-paged on indexed columns, so a page costs
//! the same on the millionth job as on the first.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::deliveries::DeliveryRow;
use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{ApiKeyId, DeliveryId, DeliveryStatus, JobId, JobStatus};

/// Where a keyset-paged list stopped: the sort time and id of the last row returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// A stored daily reconciliation report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconciliationRow {
    pub day: NaiveDate,
    pub started_at: DateTime<Utc>,
    pub report: serde_json::Value,
}

impl Store {
    /// Up to `limit` jobs whose last change is at or after `since` and after `after`, in
    /// `statuses` (all when empty), owned by `owner` (every job when `None`), oldest change
    /// first. Changes younger than `settle` are left for a later page: a transaction that
    /// stamped its change a moment ago may not have committed yet, and a cursor that
    /// passed its time would skip it.
    ///
    /// Without a status filter or an owner the page is one range of `jobs_updated`. With
    /// either, each status's range is read in order from `jobs_status_updated` (or, for an
    /// owner, `jobs_owner_status_updated`), at most `limit` rows each, and the ranges are
    /// merged: a page costs the same on a table of millions of jobs.
    pub async fn jobs_changed(
        &self,
        since: DateTime<Utc>,
        after: Option<Cursor>,
        statuses: &[JobStatus],
        owner: Option<ApiKeyId>,
        settle: Duration,
        limit: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let after = after.unwrap_or(Cursor {
            at: since,
            id: Uuid::nil(),
        });
        let statuses = if statuses.is_empty() && owner.is_some() {
            &JobStatus::ALL[..]
        } else {
            statuses
        };
        let jobs = match owner {
            Some(owner) => {
                query_job!(
                    r#"-- periodic: feed of one owner
                       SELECT "#,
                    r#" FROM unnest($4::job_status[]) AS wanted(st)
                       CROSS JOIN LATERAL (
                         SELECT * FROM jobs
                         WHERE owner_key_id = $7 AND status = wanted.st
                           AND updated_at >= $1 AND (updated_at, id) > ($2, $3)
                           AND updated_at < now() - make_interval(secs => $5)
                         ORDER BY updated_at, id LIMIT $6) j
                       ORDER BY updated_at, id LIMIT $6"#,
                    since,
                    after.at,
                    after.id,
                    statuses as &[JobStatus],
                    settle.as_secs_f64(),
                    limit,
                    owner as ApiKeyId,
                )
                .fetch_all(&self.pool)
                .await?
            }
            None if !statuses.is_empty() => {
                query_job!(
                    r#"-- periodic: feed by status
                       SELECT "#,
                    r#" FROM unnest($4::job_status[]) AS wanted(st)
                       CROSS JOIN LATERAL (
                         SELECT * FROM jobs
                         WHERE status = wanted.st
                           AND updated_at >= $1 AND (updated_at, id) > ($2, $3)
                           AND updated_at < now() - make_interval(secs => $5)
                         ORDER BY updated_at, id LIMIT $6) j
                       ORDER BY updated_at, id LIMIT $6"#,
                    since,
                    after.at,
                    after.id,
                    statuses as &[JobStatus],
                    settle.as_secs_f64(),
                    limit,
                )
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                query_job!(
                    r#"SELECT "#,
                    r#" FROM jobs
                       WHERE updated_at >= $1 AND (updated_at, id) > ($2, $3)
                         AND updated_at < now() - make_interval(secs => $4)
                       ORDER BY updated_at, id LIMIT $5"#,
                    since,
                    after.at,
                    after.id,
                    settle.as_secs_f64(),
                    limit,
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(jobs)
    }

    /// Finished jobs whose webhook is not delivered: up to `limit` deliveries, each the
    /// latest of its job, pending or failed, created at or after `since` and after
    /// `after`, oldest first.
    pub async fn undelivered(
        &self,
        since: DateTime<Utc>,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let after = after.unwrap_or(Cursor {
            at: since,
            id: Uuid::nil(),
        });
        let rows = query_delivery!(
            r#"SELECT "#,
            r#" FROM deliveries d
             WHERE created_at >= $1 AND (created_at, id) > ($2, $3) AND status = ANY($4)
               AND NOT EXISTS (SELECT 1 FROM deliveries later
                               WHERE later.job_id = d.job_id AND later.created_at > d.created_at)
             ORDER BY created_at, id LIMIT $5"#,
            since,
            after.at,
            after.id,
            &[DeliveryStatus::Pending, DeliveryStatus::Failed] as &[DeliveryStatus],
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The stored daily reconciliation reports, newest first.
    pub async fn reconciliations(&self, limit: i64) -> Result<Vec<ReconciliationRow>, StoreError> {
        let rows = sqlx::query_as!(
            ReconciliationRow,
            r#"SELECT day, started_at, report FROM reconciliations ORDER BY day DESC LIMIT $1"#,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

impl Cursor {
    /// The cursor after `job` in [`Store::jobs_changed`]'s order.
    pub fn after_job(job: &Job) -> Self {
        Cursor {
            at: job.updated_at,
            id: job.id.as_uuid(),
        }
    }

    /// The cursor after `delivery` in [`Store::undelivered`]'s order.
    pub fn after_delivery(delivery: &DeliveryRow) -> Self {
        Cursor {
            at: delivery.created_at,
            id: delivery.id.as_uuid(),
        }
    }
}
