//! What wakes the dispatcher before its next poll: finished-job events from JetStream
//! (the primary doorbell) and Postgres notifications on new deliveries (which also cover
//! a finished-job event still waiting in the outbox). Losing either only delays a webhook
//! until the next poll.

use std::sync::Arc;
use std::time::Duration;

use foodseg_engine::error_chain;
use foodseg_engine::message::JobEvent;
use foodseg_engine::{Backoff, Bus};
use futures::StreamExt;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Channel the deliveries trigger notifies (migration `delivery_notify`).
pub const DELIVERIES_CHANNEL: &str = "foodseg_deliveries";

/// How long JetStream waits for the ack of a finished-job event before redelivering it.
const EVENT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Waits between reconnection attempts.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Consumes finished-job events (shared durable consumer) until `shutdown`, reconnecting
/// with backoff while NATS or the stream is unavailable.
pub async fn consume_events(bus: Bus, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut retries = RECONNECT.retries();
    while !shutdown.is_cancelled() {
        match consume_events_once(&bus, &wake, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                if bus.is_connected() {
                    tracing::warn!(error = %e, "finished-job event consumer stopped; reconnecting");
                }
                if !retries.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}

async fn consume_events_once(
    bus: &Bus,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    bus.ensure_streams().await.map_err(|e| error_chain(&e))?;
    let consumer = bus
        .event_consumer(EVENT_ACK_WAIT)
        .await
        .map_err(|e| error_chain(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| error_chain(&e))?;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => m,
        };
        let message = match message {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(error_chain(&e)),
            None => return Err("event stream ended".into()),
        };
        // A CONSUMER span continuing the job's trace from the event's headers.
        let span = foodseg_telemetry::spans::nats_process(
            message.subject.as_str(),
            message.headers.as_ref(),
        );
        async {
            wake.notify_one();
            match serde_json::from_slice::<JobEvent>(&message.payload) {
                Ok(event) => {
                    tracing::Span::current().record("job.id", event.job_id.to_string().as_str());
                    tracing::debug!(job_id = %event.job_id, status = %event.status, "job finished")
                }
                Err(e) => {
                    tracing::warn!(error = %e, subject = %message.subject, "unreadable job event")
                }
            }
            if let Err(e) = message.ack().await {
                tracing::debug!(error = %e, "cannot ack a job event");
            }
        }
        .instrument(span)
        .await;
    }
}

/// Listens for new deliveries until `shutdown`, reconnecting with backoff.
pub async fn listen_deliveries(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut retries = RECONNECT.retries();
    while !shutdown.is_cancelled() {
        match listen_once(&pool, &wake, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "delivery notifications interrupted; reconnecting");
                if !retries.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}

async fn listen_once(
    pool: &PgPool,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(DELIVERIES_CHANNEL).await?;
    // Anything committed while not listening is picked up by this scan.
    wake.notify_one();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = listener.recv() => {
                n?;
                wake.notify_one();
            }
        }
    }
}
