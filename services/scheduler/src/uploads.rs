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

/// `FOODSEG_UPLOAD_RETENTION_HOURS`: hours (fractions allowed, 0 purges as soon as the
/// job finished).
pub fn parse_retention_hours(value: &str) -> Result<Duration, String> {
    let hours: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number of hours such as 24"))?;
    if !hours.is_finite() || hours < 0.0 {
        return Err(format!("{value:?} must be zero or more hours"));
    }
    Duration::try_from_secs_f64(hours * 3600.0).map_err(|e| format!("{value:?}: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_read_in_hours() {
        assert_eq!(parse_retention_hours("24"), Ok(DEFAULT_RETENTION));
        assert_eq!(parse_retention_hours("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_retention_hours(" 0.5 "),
            Ok(Duration::from_secs(1800))
        );
        for bad in ["-1", "1d", "", "NaN", "inf"] {
            assert!(parse_retention_hours(bad).is_err(), "{bad}");
        }
    }
}
