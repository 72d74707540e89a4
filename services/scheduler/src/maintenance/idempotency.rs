//! Purging idempotency keys past their expiry (`FOODSEG_IDEMPOTENCY_HOURS` on the api
//! decides it when the key is stored). Runs with every sweep.

use foodseg_engine::{Store, StoreError};

/// Idempotency keys deleted by the sweeper.
pub const IDEMPOTENCY_KEYS_PURGED_TOTAL: &str = "foodseg_idempotency_keys_purged_total";

/// Keys deleted per statement; a full batch is followed by another at once.
const PURGE_BATCH: i64 = 1000;

pub fn describe() {
    metrics::describe_counter!(
        IDEMPOTENCY_KEYS_PURGED_TOTAL,
        "Idempotency keys deleted after their expiry"
    );
}

/// Deletes every expired key; returns how many went.
pub async fn purge(store: &Store) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = store.purge_expired_idempotency_keys(PURGE_BATCH).await?;
        total += n;
        if n < PURGE_BATCH as u64 {
            break;
        }
    }
    if total > 0 {
        metrics::counter!(IDEMPOTENCY_KEYS_PURGED_TOTAL).increment(total);
        tracing::info!(purged = total, "expired idempotency keys purged");
    }
    Ok(total)
}
