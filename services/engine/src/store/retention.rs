//! Retention: finished jobs are deleted once they are old enough, with everything that
//! hangs off them. The foreign keys cascade (`job_events`, `deliveries` and their
//! `delivery_attempts`, `uploads`, `idempotency_keys`); outbox rows carry no reference to
//! their job and are pruned on their own a day after publishing. A batch goes once it is
//! older than the cutoff and none of its jobs is left.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

impl Store {
    /// Deletes up to `limit` finished jobs (SUCCEEDED or FAILED) that finished before
    /// `finished_before`, oldest first, with their events, deliveries, attempts, upload and
    /// idempotency key. A job whose webhook delivery is still pending is kept until the
    /// delivery ends. Returns how many jobs were deleted; a full batch means more may be
    /// left.
    ///
    /// One short statement: rows another scheduler is deleting are skipped, and a job some
    /// transaction holds (an operator's redelivery inserting its delivery) is left for a
    /// later pass.
    pub async fn delete_finished_jobs(
        &self,
        finished_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // The literal states select the partial index `jobs_finished`, the literal
        // 'pending' the unique partial index `deliveries_one_pending`. The ids go through an
        // array so the delete probes the primary key whatever the plan's estimate of the
        // batch.
        let deleted = sqlx::query!(
            r#"-- periodic: retention delete
               WITH x AS (
               SELECT j.id FROM jobs j
               WHERE j.status IN ('succeeded', 'failed') AND j.finished_at < $1
                 AND NOT EXISTS (SELECT 1 FROM deliveries d
                                 WHERE d.job_id = j.id AND d.status = 'pending')
               ORDER BY j.finished_at LIMIT $2
               FOR UPDATE OF j SKIP LOCKED)
             DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM x))"#,
            finished_before,
            limit,
        )
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }

    /// Deletes up to `limit` batches created before `created_before` none of whose jobs
    /// is left (retention deleted them); returns how many.
    pub async fn delete_empty_batches(
        &self,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // `batches_created` serves the range, `jobs_batch` the emptiness check.
        let deleted = sqlx::query!(
            r#"-- periodic: retention of batches
               WITH x AS (
               SELECT b.id FROM batches b
               WHERE b.created_at < $1
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id)
               ORDER BY b.created_at LIMIT $2
               FOR UPDATE OF b SKIP LOCKED)
             DELETE FROM batches WHERE id = ANY(ARRAY(SELECT id FROM x))"#,
            created_before,
            limit,
        )
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}
