//! The outbox relay: publishes the messages that transactions wrote to `outbox` to
//! JetStream, with `Nats-Msg-Id` = the row's msg id and the row's headers (trace context).
//!
//! It is woken at once through a [`RelayWaker`] after each enqueue, and also polls
//! periodically (for rows written by other processes, and after failures). While NATS is
//! down it keeps retrying with backoff; rows stay in Postgres meanwhile, so nothing is
//! lost. Several relays share the work through `FOR UPDATE SKIP LOCKED`, and JetStream's
//! duplicate window drops the rare double publish.
//!
//! Bulk jobs' first dispatch messages are held in the outbox and released a few at a
//! time: per bulk subject (one per model), only while fewer than `bulk_window` messages
//! wait on the stream for a worker (those workers hold do not count), and round-robin
//! over the API keys that own them. The stream thus never holds a backfill's whole
//! backlog in first-in-first-out order: a key that sends a batch later gets its turns as
//! soon as it sends it.

use std::collections::HashMap;
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
use crate::store::{HeldLane, OutboxBatch, Store, StoreError};

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

/// Default `FOODSEG_BULK_WINDOW`: enough bulk messages waiting for a worker per model to
/// keep its workers busy between two releases, few enough that a key which sends a batch
/// later waits behind at most this many of another key's jobs (plus those running).
pub const DEFAULT_BULK_WINDOW: u32 = 32;

/// Tuning of one relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows taken (and published concurrently) per batch.
    pub batch_size: i64,
    /// Poll interval when nobody wakes the relay.
    pub poll_interval: Duration,
    /// Waits between passes after failures.
    pub backoff: Backoff,
    /// Most bulk dispatch messages waiting on the stream for a worker, per model
    /// (`FOODSEG_BULK_WINDOW`); 0 releases none.
    pub bulk_window: u32,
    /// Poll interval while held bulk messages wait for room on the stream.
    pub bulk_poll: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            bulk_window: DEFAULT_BULK_WINDOW,
            bulk_poll: Duration::from_millis(100),
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
    /// Per bulk subject, the owner whose held message was released last.
    served: Arc<std::sync::Mutex<HashMap<String, String>>>,
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
            served: Arc::default(),
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
            let pass = match self.publish_pending().await {
                Ok(_) => self.release_held().await,
                Err(e) => Err(e),
            };
            let held = match pass {
                Ok(held) => {
                    retries.reset();
                    held
                }
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
            };
            let poll = if held {
                self.config.bulk_poll.min(self.config.poll_interval)
            } else {
                self.config.poll_interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.waker.0.notified() => {}
                _ = tokio::time::sleep(poll) => {}
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

    /// Releases held bulk dispatch messages into the room each bulk subject has on the
    /// stream; returns whether any are still held (the relay then polls sooner).
    pub async fn release_held(&self) -> Result<bool, RelayError> {
        let owners = self.store.held_lanes().await?;
        if owners.is_empty() {
            return Ok(false);
        }
        if self.config.bulk_window == 0 {
            return Ok(true);
        }
        if !self.bus.is_connected() {
            return Err(RelayError::Disconnected);
        }
        let waiting = self
            .bus
            .jobs_stream()
            .await?
            .bulk_undelivered(self.bus.subjects())
            .await?;
        let window = i64::from(self.config.bulk_window);
        let lanes: Vec<HeldLane> = {
            let served = self.served.lock().unwrap_or_else(|e| e.into_inner());
            let mut lanes: Vec<HeldLane> = Vec::new();
            // `held_lanes` comes ordered by subject.
            for (subject, owner) in owners {
                match lanes.last_mut() {
                    Some(lane) if lane.subject == subject => lane.owners.push(owner),
                    _ => lanes.push(HeldLane {
                        room: window
                            - i64::try_from(waiting.get(&subject).copied().unwrap_or(0))
                                .unwrap_or(i64::MAX),
                        after: served.get(&subject).cloned().unwrap_or_default(),
                        subject,
                        owners: vec![owner],
                    }),
                }
            }
            lanes.retain(|lane| lane.room > 0);
            lanes
        };
        if lanes.is_empty() {
            return Ok(true);
        }
        let Some(batch) = self.store.held_batch(&lanes).await? else {
            return Ok(true);
        };
        if batch.dropped() > 0 {
            tracing::debug!(
                dropped = batch.dropped(),
                "held dispatch messages of jobs no longer queued were dropped"
            );
        }
        {
            let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
            for (subject, owner) in batch.last_served() {
                served.insert(subject.clone(), owner.clone());
            }
        }
        self.publish(batch).await?;
        Ok(true)
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
        let total = batch.rows().len();
        let published = self.publish(batch).await?;
        let full = i64::try_from(total).unwrap_or(i64::MAX) >= self.config.batch_size;
        Ok((published, full))
    }

    /// Publishes a batch's rows concurrently and records the outcomes; returns how many
    /// were published.
    async fn publish(&self, batch: OutboxBatch) -> Result<usize, RelayError> {
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
        Ok(published.len())
    }
}
