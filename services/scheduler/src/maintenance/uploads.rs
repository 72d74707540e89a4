//! Purging uploaded images (`POST /v2/uploads`) that are no longer needed: those whose
//! job finished more than the retention period ago (`FOODSEG_UPLOAD_RETENTION_HOURS`,
//! default 24), and any past its hard maximum age. Runs with every sweep.

use std::time::Duration;

use chrono::Utc;
use foodseg_engine::{Store, StoreError};

/// Uploads deleted by the sweeper.
pub const UPLOADS_PURGED_TOTAL: &str = "foodseg_uploads_purged_total";

/// Default `FOODSEG_UPLOAD_RETENTION_HOURS`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Uploads deleted per statement; a full batch is followed by another at once.
const PURGE_BATCH: i64 = 200;

pub fn describe() {
    metrics::describe_counter!(
        UPLOADS_PURGED_TOTAL,
        "Uploaded images deleted after their job finished and the retention passed, or past their maximum age"
    );
}

/// Deletes every upload no longer needed now; returns how many went.
pub async fn purge(store: &Store, retention: Duration) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = store
            .purge_expired_uploads(Utc::now(), retention, PURGE_BATCH)
            .await?;
        total += n;
        if n < PURGE_BATCH as u64 {
            break;
        }
    }
    if total > 0 {
        metrics::counter!(UPLOADS_PURGED_TOTAL).increment(total);
        tracing::info!(purged = total, "uploaded images purged");
    }
    Ok(total)
}
