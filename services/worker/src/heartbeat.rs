//! The worker's entry in the worker registry: registered at start, refreshed every
//! [`HEARTBEAT_EVERY`], marked stopped on a clean stop. A Postgres outage only delays the next
//! heartbeat; the first one after it puts the worker back.

use std::time::Duration;

use foodseg_engine::store::WorkerInfo;
use foodseg_engine::{Store, error_chain};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a worker refreshes its heartbeat. Readers count a worker live while its
/// heartbeat is younger than [`WORKER_LIVE_WITHIN`](foodseg_engine::store::WORKER_LIVE_WITHIN).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Keeps the worker's row fresh until `stop`, then marks it stopped. A change of `info`
/// (a model added while the worker runs) is written at once.
pub async fn run(store: Store, mut info: watch::Receiver<WorkerInfo>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            Ok(()) = info.changed() => {}
        }
        let current = info.borrow_and_update().clone();
        if let Err(e) = store.heartbeat(&current).await {
            tracing::warn!(error = %error_chain(&e), "cannot refresh the worker's heartbeat; retrying");
        }
    }
    let id = info.borrow().id.clone();
    if let Err(e) = store.worker_stopped(&id).await {
        tracing::warn!(error = %error_chain(&e), "cannot mark the worker stopped in the registry; its entry goes silent");
    }
}
