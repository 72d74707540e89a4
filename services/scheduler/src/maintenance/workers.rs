//! The worker registry seen from the scheduler: per model, queued jobs and live workers
//! as gauges (so an alert can fire when a model has work and nobody to do it), and the
//! purge of the entries of workers silent for a day (stopped, or dead).

use std::time::Duration;

use foodseg_engine::store::WORKER_LIVE_WITHIN;
use foodseg_engine::{Store, StoreError};

/// Live registered workers serving a model.
pub const WORKERS_LIVE: &str = "foodseg_workers_live";
/// Jobs queued per model.
pub const JOBS_QUEUED: &str = "foodseg_jobs_queued";
/// Entries of workers silent for a day, deleted.
pub const WORKERS_PURGED_TOTAL: &str = "foodseg_workers_purged_total";

/// A worker silent this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

pub fn describe() {
    metrics::describe_gauge!(
        WORKERS_LIVE,
        "Registered workers serving the model whose heartbeat is recent"
    );
    metrics::describe_gauge!(JOBS_QUEUED, "Jobs waiting in the queue, per model");
    metrics::describe_counter!(
        WORKERS_PURGED_TOTAL,
        "Registry entries of workers silent (stopped or dead) for a day, deleted"
    );
}

/// Sets the per-model gauges from the worker registry and the queue: for every model of
/// `models` (zero when nothing names it) and every model the database names.
pub async fn export(store: &Store, models: &[String]) -> Result<(), StoreError> {
    let loads = store.model_load(WORKER_LIVE_WITHIN).await?;
    for model in models {
        if !loads.iter().any(|l| &l.model == model) {
            metrics::gauge!(WORKERS_LIVE, "model" => model.clone()).set(0.0);
            metrics::gauge!(JOBS_QUEUED, "model" => model.clone()).set(0.0);
        }
    }
    for load in loads {
        metrics::gauge!(WORKERS_LIVE, "model" => load.model.clone()).set(load.live_workers as f64);
        metrics::gauge!(JOBS_QUEUED, "model" => load.model).set(load.queued as f64);
    }
    Ok(())
}

/// Deletes the entries of workers silent (stopped or dead) for a day.
pub async fn purge(store: &Store) -> Result<u64, StoreError> {
    let purged = store.purge_workers(FORGET_AFTER).await?;
    if purged > 0 {
        metrics::counter!(WORKERS_PURGED_TOTAL).increment(purged);
        tracing::info!(
            purged,
            "entries of long-silent workers removed from the registry"
        );
    }
    Ok(purged)
}
