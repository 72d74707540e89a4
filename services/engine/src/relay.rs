//! The outbox relay: publishes the messages that transactions wrote to `outbox` to
//! JetStream, with `Nats-Msg-Id` = the row's msg id and the row's headers (trace context).
//!
//! It is woken at once through a [`RelayWaker`] after each enqueue, and also polls
//! periodically (for rows written by other processes, and after failures). While NATS is
//! down it keeps retrying with backoff; rows stay in Postgres meanwhile, so nothing is
//! lost. Several relays share the work through `FOR UPDATE SKIP LOCKED`, and JetStream's
//! duplicate window drops the rare double publish.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::bus::{Bus, BusError};
use crate::chain::error_chain;
use crate::store::{Store, StoreError};

/// Dispatch messages published from the outbox.
pub const OUTBOX_PUBLISHED_TOTAL: &str = "foodseg_outbox_published_total";
/// Outbox rows whose publish failed (they stay in the outbox and are retried).
pub const OUTBOX_PUBLISH_FAILURES_TOTAL: &str = "foodseg_outbox_publish_failures_total";

/// Describes the relay's counters and registers them at zero, so `/metrics` shows them
/// (and alerts can use them) before the first publish or failure.
pub fn describe_metrics() {
    metrics::describe_counter!(
        OUTBOX_PUBLISHED_TOTAL,
        "Dispatch messages published from the outbox to JetStream"
    );
    metrics::describe_counter!(
        OUTBOX_PUBLISH_FAILURES_TOTAL,
        "Outbox rows whose publish to JetStream failed (kept and retried)"
    );
    metrics::counter!(OUTBOX_PUBLISHED_TOTAL).increment(0);
    metrics::counter!(OUTBOX_PUBLISH_FAILURES_TOTAL).increment(0);
}

/// Tuning of one relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows taken (and published concurrently) per batch.
    pub batch_size: i64,
    /// Poll interval when nobody wakes the relay.
    pub poll_interval: Duration,
    /// Waits between passes after failures.
    pub backoff: Backoff,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// Why one relay pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{failed} of {total} outbox messages could not be published")]
    Partial { failed: usize, total: usize },
}

/// Wakes a relay as soon as new outbox rows are committed. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    /// Asks the relay for a pass; wakes it now or, when busy, right after its current pass.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Publishes outbox rows to JetStream.
#[derive(Debug, Clone)]
pub struct Relay {
    store: Store,
    bus: Bus,
    config: RelayConfig,
    waker: RelayWaker,
}

impl Relay {
    /// A relay; also registers its metrics (see [`describe_metrics`]).
    pub fn new(store: Store, bus: Bus, config: RelayConfig) -> Self {
        describe_metrics();
        Relay {
            store,
            bus,
            config,
            waker: RelayWaker::default(),
        }
    }

    /// The handle that wakes this relay.
    pub fn waker(&self) -> RelayWaker {
        self.waker.clone()
    }

    /// Runs until `shutdown`: a pass on every wake-up and every poll interval, with
    /// exponential backoff while passes fail. Streams are (re)created after failures, so
    /// a relay that started while NATS was down sets them up once NATS is back.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut retries = self.config.backoff.retries();
        let mut streams_ready = false;
        loop {
            if !streams_ready && self.bus.is_connected() {
                match self.bus.ensure_streams().await {
                    Ok(()) => streams_ready = true,
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "cannot set up JetStream streams")
                    }
                }
            }
            match self.publish_pending().await {
                Ok(_) => retries.reset(),
                Err(e) => {
                    if !matches!(e, RelayError::Disconnected) {
                        tracing::warn!(error = %error_chain(&e), "outbox relay pass failed; retrying");
                    }
                    streams_ready = false;
                    if !retries.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.waker.0.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    /// Publishes batches until no unpublished row is left; returns how many were published.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let (published, full) = self.publish_batch().await?;
            total += published;
            if !full {
                return Ok(total);
            }
        }
    }

    /// One batch: returns how many rows were published and whether the batch was full.
    async fn publish_batch(&self) -> Result<(usize, bool), RelayError> {
        if !self.bus.is_connected() {
            return Err(RelayError::Disconnected);
        }
        let batch = self.store.outbox_batch(self.config.batch_size).await?;
        if batch.is_empty() {
            return Ok((0, false));
        }
        let results = join_all(batch.rows().iter().map(|row| {
            let mut headers = row.header_pairs();
            // A PRODUCER span in the job's trace (the row's stored context); the message
            // then carries this span's context, so the consumer is its child.
            let parent = headers
                .iter()
                .find(|(k, _)| k == crate::message::TRACEPARENT)
                .map(|(_, v)| v.clone());
            let span = foodseg_telemetry::spans::nats_publish(&row.subject, parent.as_deref());
            span.record("messaging.message.id", row.msg_id.as_str());
            if let Some(job_id) = row.payload.get("job_id").and_then(|v| v.as_str()) {
                span.record("job.id", job_id);
            }
            foodseg_telemetry::trace::inject_pairs(&span, &mut headers);
            let payload = Bytes::from(row.payload_bytes());
            async move {
                let result = self
                    .bus
                    .publish(&row.subject, &row.msg_id, &headers, payload)
                    .await;
                if result.is_err() {
                    foodseg_telemetry::spans::record_error(&tracing::Span::current(), "publish");
                }
                (row.id, result)
            }
            .instrument(span)
        }))
        .await;
        let total = results.len();
        let mut published = Vec::with_capacity(total);
        let mut failed = Vec::new();
        for (id, result) in results {
            match result {
                Ok(stored) => {
                    if stored.duplicate {
                        tracing::debug!(outbox_id = id, "message was already on the stream");
                    }
                    published.push((id, stored.sequence));
                }
                Err(e) => failed.push((id, error_chain(&e))),
            }
        }
        let full = i64::try_from(total).unwrap_or(i64::MAX) >= self.config.batch_size;
        let failures = failed.len();
        batch.finish(&published, &failed).await?;
        metrics::counter!(OUTBOX_PUBLISHED_TOTAL).increment(published.len() as u64);
        if failures > 0 {
            metrics::counter!(OUTBOX_PUBLISH_FAILURES_TOTAL).increment(failures as u64);
            return Err(RelayError::Partial {
                failed: failures,
                total,
            });
        }
        Ok((published.len(), full))
    }
}
