//! Keeping a claimed job's lease alive: renew it in Postgres every third of the lease and
//! tell JetStream the message is still being worked on (also while Postgres is away). Losing the fence (the attempt
//! was re-driven or finished elsewhere) cancels the job's work.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, message::Acker};
use foodseg_engine::{Fence, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// The lease a job runs under.
#[derive(Debug, Clone)]
pub struct Lease {
    /// What every write about this attempt is fenced on.
    pub fence: Fence,
    pub duration: Duration,
    pub renew_every: Duration,
}

/// Renews until dropped or until the fence is lost (then `lost` is cancelled).
pub struct Renewer {
    task: tokio::task::JoinHandle<()>,
}

impl Renewer {
    pub fn start(store: Store, lease: Lease, acker: Arc<Acker>, lost: CancellationToken) -> Self {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease.renew_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; the claim just set the lease
            loop {
                tick.tick().await;
                match store.renew(&lease.fence, lease.duration).await {
                    Ok(_) => {
                        if let Err(e) = acker.ack_with(AckKind::Progress).await {
                            tracing::warn!(job_id = %lease.fence.job_id, error = %e,
                                "cannot tell JetStream the job is in progress");
                        }
                    }
                    Err(StoreError::FenceLost(f)) => {
                        tracing::warn!(job_id = %f.job_id, attempt = f.attempt.get(),
                            "lease lost to another attempt; abandoning the job");
                        lost.cancel();
                        return;
                    }
                    Err(e) => {
                        // Keep trying, and keep the message: the job goes on, and its
                        // result is written when Postgres answers again. The lease may
                        // lapse meanwhile; the fence still holds until the sweeper
                        // re-drives the job, which it does not do while live workers
                        // can still renew after an outage.
                        tracing::warn!(job_id = %lease.fence.job_id, error = %foodseg_engine::error_chain(&e),
                            "cannot renew the lease");
                        if e.is_unavailable()
                            && let Err(e) = acker.ack_with(AckKind::Progress).await
                        {
                            tracing::warn!(job_id = %lease.fence.job_id, error = %e,
                                "cannot tell JetStream the job is in progress");
                        }
                    }
                }
            }
        });
        Renewer { task }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
