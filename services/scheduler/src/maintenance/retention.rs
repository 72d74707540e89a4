//! Retention: finished jobs are deleted `FOODSEG_RETENTION_DAYS` (default 30) after they
//! finished, with their events, webhook deliveries and attempts, upload and idempotency
//! key. Jobs whose webhook delivery is still pending are kept until it ends. Batches go
//! once none of their jobs is left. Runs with
//! every sweep, in small batches, so a backlog (retention just switched on, or shortened)
//! is worked off over several sweeps without long transactions or long locks.

use std::time::Duration;

use chrono::Utc;
use foodseg_engine::{Store, StoreError};

/// Finished jobs deleted by retention.
pub const JOBS_DELETED_TOTAL: &str = "foodseg_retention_jobs_deleted_total";

/// Jobs deleted per statement (each its own short transaction).
pub const DELETE_BATCH: i64 = 500;

/// Batches one sweep runs at most; what is left waits for the next sweep, so recovering
/// jobs is never held up for long by a large backlog.
pub const MAX_BATCHES_PER_PASS: usize = 20;

pub fn describe() {
    metrics::describe_counter!(
        JOBS_DELETED_TOTAL,
        "Finished jobs deleted (with their events, deliveries, upload and idempotency key) once older than FOODSEG_RETENTION_DAYS"
    );
    metrics::counter!(JOBS_DELETED_TOTAL).increment(0);
}

/// Deletes finished jobs older than `retention`, `batch` at a time and at most
/// `max_batches` batches, yielding between batches; returns how many went.
pub async fn purge(
    store: &Store,
    retention: Duration,
    batch: i64,
    max_batches: usize,
) -> Result<u64, StoreError> {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        // Longer than chrono can count: nothing is that old.
        return Ok(0);
    };
    let Some(cutoff) = Utc::now().checked_sub_signed(retention) else {
        return Ok(0);
    };
    let mut total = 0;
    for _ in 0..max_batches {
        let n = store.delete_finished_jobs(cutoff, batch).await?;
        total += n;
        if n < batch as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
    // Batches older than the cutoff none of whose jobs is left.
    let batches = store.delete_empty_batches(cutoff, batch).await?;
    if batches > 0 {
        tracing::info!(
            deleted = batches,
            "batches whose jobs retention deleted are removed"
        );
    }
    if total > 0 {
        metrics::counter!(JOBS_DELETED_TOTAL).increment(total);
        tracing::info!(
            deleted = total,
            finished_before = %cutoff.to_rfc3339(),
            "finished jobs past retention deleted"
        );
    }
    Ok(total)
}
