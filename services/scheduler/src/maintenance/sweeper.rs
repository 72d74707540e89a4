//! Periodic repairs: RUNNING jobs whose lease expired (dead worker) are re-driven or
//! failed; QUEUED jobs whose dispatch message was lost are republished; queue-lag gauges
//! are refreshed. New outbox rows are handed to the relay at once.
//!
//! An outage is not a failure. After Postgres was unreachable (or at the scheduler's own
//! start) lapsed leases are left alone for one lease period, so workers that kept running
//! renew them or write their results first. A dispatch message is republished only when
//! it was published, nobody claimed the job within the stale threshold, and JetStream
//! answers that the stream no longer holds it — never while NATS is away, and never for
//! a job that simply waits in a long queue.
//!
//! Webhook deliveries pending longer than `FOODSEG_WEBHOOK_MAX_AGE` (their endpoint
//! paused or failing all along) fail, and show among the undelivered.
//!
//! Then the purges: uploads, idempotency keys, silent workers and finished jobs past
//! retention.

use std::time::{Duration, Instant};

use foodseg_engine::error_chain;
use foodseg_engine::store::{DispatchState, StaleQueued};
use foodseg_engine::{Bus, JobId, RelayWaker, Store, StoreError};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Jobs handled per sweep statement; a full batch is followed by another at once.
const SWEEP_BATCH: i64 = 200;
/// Pages of stale queued jobs looked at per sweep (the rest wait for the next sweep).
const REDISPATCH_PAGES: usize = 10;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub redriven: usize,
    pub failed: usize,
    pub republished: usize,
    /// Queued jobs ended because no worker served their model.
    pub unserved: usize,
}

/// Runs the sweeps.
#[derive(Debug, Clone)]
pub struct Sweeper {
    /// The models of the registry (each gets the per-model gauges, zero or not).
    pub models: Vec<String>,
    pub store: Store,
    pub bus: Bus,
    pub relay: RelayWaker,
    pub actor: String,
    pub stale_queued_after: Duration,
    /// Queued jobs of a model no worker served for this long end failed.
    pub max_queue_wait: Duration,
    /// Uploaded images are purged this long after their job finished.
    pub upload_retention: Duration,
    /// Lapsed leases are re-driven only after Postgres has answered this sweeper (and
    /// been up) for this long: the workers' lease.
    pub redrive_grace: Duration,
    /// Finished jobs are deleted this long after they finished; `None` keeps them.
    pub retention: Option<Duration>,
    /// Webhook deliveries pending this long fail.
    pub delivery_max_age: Duration,
}

impl Sweeper {
    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        // Since when Postgres has answered every sweep.
        let mut connected_since: Option<Instant> = None;
        loop {
            let redrive = self.redrive_grace.is_zero()
                || connected_since.is_some_and(|t| t.elapsed() >= self.redrive_grace);
            let result = self.sweep(redrive).await;
            match &result {
                Err(e) if e.is_unavailable() => connected_since = None,
                _ => {
                    connected_since.get_or_insert_with(Instant::now);
                }
            }
            match result {
                Ok(c) if c != SweepCounts::default() => {
                    tracing::info!(
                        redriven = c.redriven,
                        failed = c.failed,
                        republished = c.republished,
                        unserved = c.unserved,
                        "sweep recovered jobs"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %error_chain(&e), "sweep failed"),
            }
            self.export_lag().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One pass of every sweep; lapsed leases are handled only when `redrive` is set.
    pub async fn sweep(&self, redrive: bool) -> Result<SweepCounts, StoreError> {
        let mut counts = SweepCounts::default();
        if redrive {
            self.redrive(&mut counts).await?;
        }
        counts.republished = self.republish_lost().await?;
        loop {
            let ended = self
                .store
                .expire_unserved(self.max_queue_wait, &self.actor, SWEEP_BATCH)
                .await?;
            counts.unserved += ended.len();
            for job in &ended {
                tracing::warn!(job_id = %job.id, model = %job.model_name, "no worker served the job's model for the maximum queue wait; job failed");
            }
            if (ended.len() as i64) < SWEEP_BATCH {
                break;
            }
        }
        metrics::recovered("lease_expired", counts.redriven);
        metrics::recovered("failed_exhausted", counts.failed);
        metrics::recovered("republished", counts.republished);
        metrics::recovered("unserved", counts.unserved);
        // The sweeper's transitions, beside the workers' in the shared counter.
        foodseg_telemetry::metrics::job_transitions("running", "queued", counts.redriven as u64);
        foodseg_telemetry::metrics::job_transitions("running", "failed", counts.failed as u64);
        foodseg_telemetry::metrics::job_transitions("queued", "failed", counts.unserved as u64);
        if counts != SweepCounts::default() {
            self.relay.wake();
        }
        self.expire_deliveries().await?;
        // Last, so a failing purge never holds up job recovery.
        super::uploads::purge(&self.store, self.upload_retention).await?;
        super::idempotency::purge(&self.store).await?;
        super::workers::purge(&self.store).await?;
        if let Some(retention) = self.retention {
            super::retention::purge(
                &self.store,
                retention,
                super::retention::DELETE_BATCH,
                super::retention::MAX_BATCHES_PER_PASS,
            )
            .await?;
        }
        Ok(counts)
    }

    /// Fails the webhook deliveries pending past the maximum age, a batch at a time.
    async fn expire_deliveries(&self) -> Result<(), StoreError> {
        loop {
            let failed = self
                .store
                .fail_expired_deliveries(self.delivery_max_age, SWEEP_BATCH)
                .await?;
            if failed > 0 {
                metrics::deliveries_expired(failed);
                tracing::warn!(
                    failed,
                    max_age = ?self.delivery_max_age,
                    "webhook deliveries not delivered within the maximum age failed"
                );
            }
            if failed < SWEEP_BATCH as u64 {
                return Ok(());
            }
        }
    }

    /// Re-drives or fails every job whose lease lapsed, a batch at a time.
    async fn redrive(&self, counts: &mut SweepCounts) -> Result<(), StoreError> {
        loop {
            let report = self
                .store
                .redrive_expired(&self.actor, self.redrive_grace, SWEEP_BATCH)
                .await?;
            counts.redriven += report.redriven.len();
            counts.failed += report.failed.len();
            for id in &report.redriven {
                tracing::info!(job_id = %id, "lease expired; job re-driven");
            }
            for id in &report.failed {
                tracing::warn!(job_id = %id, "lease expired with no attempt left; job failed");
            }
            let full = report.redriven.len() as i64 >= SWEEP_BATCH
                || report.failed.len() as i64 >= SWEEP_BATCH;
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Republishes the dispatch messages of stale QUEUED jobs that JetStream lost.
    async fn republish_lost(&self) -> Result<usize, StoreError> {
        let mut republished = 0;
        let mut after = None;
        for _ in 0..REDISPATCH_PAGES {
            let page = self
                .store
                .stale_queued(self.stale_queued_after, after, SWEEP_BATCH)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.updated_at, last.id));
            let Some(lost) = self.lost(&page).await else {
                break; // NATS does not answer: nothing can be called lost.
            };
            if !lost.is_empty() {
                let ids = self
                    .store
                    .republish(&lost, &self.actor, self.stale_queued_after)
                    .await?;
                for id in &ids {
                    tracing::info!(job_id = %id, "dispatch message lost; republished");
                }
                republished += ids.len();
            }
            if (page.len() as i64) < SWEEP_BATCH {
                break;
            }
        }
        Ok(republished)
    }

    /// The jobs of `page` whose dispatch message is gone from the stream; `None` when
    /// JetStream does not answer.
    async fn lost(&self, page: &[StaleQueued]) -> Option<Vec<JobId>> {
        let asks = |j: &&StaleQueued| {
            matches!(
                j.dispatch,
                DispatchState::InStream(_) | DispatchState::Unknown
            )
        };
        if !page.iter().any(|j| asks(&j)) {
            return Some(Vec::new());
        }
        if !self.bus.is_connected() {
            return None;
        }
        let stream = match self.bus.jobs_stream().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "JetStream does not answer; no republish");
                return None;
            }
        };
        let mut lost = Vec::new();
        for job in page.iter().filter(asks) {
            match job.dispatch {
                DispatchState::InStream(seq) => match stream.holds(seq).await {
                    Ok(true) => {}
                    Ok(false) => lost.push(job.id),
                    Err(e) => {
                        tracing::debug!(error = %error_chain(&e), "JetStream does not answer; no republish");
                        return None;
                    }
                },
                _ => lost.push(job.id),
            }
        }
        Some(lost)
    }

    /// Oldest QUEUED age, per-model queue and live workers, the outbox and webhook
    /// backlogs, and JetStream consumer backlogs, as gauges.
    async fn export_lag(&self) {
        match self.store.queue_by_priority().await {
            Ok(lanes) => {
                for (priority, queued, oldest) in lanes {
                    foodseg_telemetry::metrics::queue_by_priority(
                        priority.as_str(),
                        queued,
                        oldest,
                    );
                }
            }
            Err(e) => tracing::debug!(error = %error_chain(&e), "cannot read the queue"),
        }
        if let Err(e) = super::workers::export(&self.store, &self.models).await {
            tracing::debug!(error = %error_chain(&e), "cannot read the worker registry");
        }
        match self.store.outbox_pending().await {
            Ok(rows) => metrics::outbox_pending(rows),
            Err(e) => tracing::debug!(error = %error_chain(&e), "cannot count the outbox"),
        }
        match self.store.webhook_backlog().await {
            Ok(b) => metrics::webhook_backlog(b.pending, b.overdue),
            Err(e) => tracing::debug!(error = %error_chain(&e), "cannot count pending webhooks"),
        }
        match self.store.endpoint_health_counts().await {
            Ok(h) => metrics::endpoint_health(&h),
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "cannot read webhook endpoint health")
            }
        }
        if !self.bus.is_connected() {
            return;
        }
        let subjects = self.bus.subjects().clone();
        for stream_name in [&subjects.jobs_stream, &subjects.events_stream] {
            let Ok(stream) = self.bus.jetstream().get_stream(stream_name).await else {
                continue;
            };
            let mut consumers = stream.consumers();
            while let Some(info) = consumers.next().await {
                match info {
                    Ok(info) => foodseg_telemetry::metrics::stream_pending(
                        stream_name,
                        &info.name,
                        info.num_pending + info.num_ack_pending as u64,
                    ),
                    Err(e) => {
                        tracing::debug!(error = %error_chain(&e), "cannot list consumers");
                        break;
                    }
                }
            }
        }
    }
}
