//! The delivery loop: claims due deliveries (woken by finished-job events, Postgres
//! notifications, scheduled retries, or at least every poll interval) within each
//! endpoint's rate and concurrency, and sends each attempt in its own task at the time
//! its endpoint's rate gave it, at most `max_in_flight` at once, so a slow or hanging
//! receiver only ever holds its own slots. A paused endpoint is only sent its probe; the
//! probe's span says so, and a pause or resume is an event on the attempt's span.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use foodseg_engine::domain::{EndpointAction, EndpointLimits, HealthPolicy};
use foodseg_engine::error_chain;
use foodseg_engine::store::{AttemptRecord, ClaimedDelivery, Recorded};
use foodseg_engine::{AttemptOutcome, Backoff, GroupConfig, JobDocument, Recorder, Store};
use foodseg_telemetry::{spans, trace};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::metrics;
use crate::webhook::body;
use crate::webhook::schedule::{Answer, RetrySchedule, decide, health};
use crate::webhook::sender::{Outgoing, Sender};

/// Deliveries claimed per query at most.
const CLAIM_BATCH: u32 = 64;
/// A claim outlives the attempt's timeout by this much before another scheduler may take
/// the delivery over (only ever needed when this scheduler died mid-attempt).
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Tries at recording an attempt before leaving it to the claim's expiry.
const RECORD_TRIES: u32 = 3;

/// Sends webhook attempts.
pub struct Dispatcher {
    store: Store,
    /// Records attempts that arrive together in one commit.
    recorder: Recorder,
    sender: Sender,
    schedule: RetrySchedule,
    limits: EndpointLimits,
    health: HealthPolicy,
    /// Names this scheduler in endpoint events.
    actor: String,
    lease: Duration,
    poll_interval: Duration,
    slots: Arc<Semaphore>,
    wake: Arc<Notify>,
}

impl Dispatcher {
    /// A dispatcher with the webhook settings of `config` (its attempts' writers start on
    /// the current tokio runtime).
    pub fn new(store: Store, sender: Sender, config: &Config, wake: Arc<Notify>) -> Self {
        let limits = config.endpoint_limits;
        Dispatcher {
            recorder: Recorder::start(store.clone(), recorder_config(config.max_in_flight)),
            store,
            sender,
            schedule: config.retry_schedule.clone(),
            limits,
            health: config.endpoint_health,
            actor: config.scheduler_id.clone(),
            // A claimed attempt may wait for its send time before it starts.
            lease: limits.ahead + config.attempt_timeout + LEASE_MARGIN,
            poll_interval: config.poll_interval,
            slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            wake,
        }
    }

    /// Runs until `shutdown`, then waits for the attempts in flight (each bounded by the
    /// attempt timeout) so that every attempt sent is also recorded.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        // After a failed claim, the wait before the next (never longer than a poll).
        let mut failing = Backoff::new(Duration::from_millis(200), self.poll_interval).retries();
        let mut pause = self.poll_interval;
        loop {
            while tasks.try_join_next().is_some() {}
            let mut more = false;
            let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
            if free > 0 {
                let limit = free.min(CLAIM_BATCH);
                match self
                    .store
                    .claim_due_deliveries(limit, self.lease, &self.limits)
                    .await
                {
                    Ok(claims) => {
                        failing.reset();
                        pause = self.poll_interval;
                        more = claims.len() == limit as usize;
                        for claim in claims {
                            self.start(&mut tasks, claim, &shutdown).await;
                        }
                    }
                    Err(e) => {
                        pause = failing.next_delay();
                        tracing::warn!(error = %error_chain(&e), "cannot claim due webhook deliveries");
                    }
                }
            }
            if more && self.slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        tracing::debug!("webhook dispatcher stopped");
    }

    async fn start(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        claim: ClaimedDelivery,
        shutdown: &CancellationToken,
    ) {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tasks.spawn(self.clone().attempt(claim, permit, shutdown.clone()));
            }
            Err(_) => {
                // Only this loop takes slots and it claimed no more than were free.
                if let Err(e) = self.store.release_delivery(&claim).await {
                    tracing::warn!(error = %error_chain(&e), delivery_id = %claim.delivery.id, "cannot release a delivery claim");
                }
            }
        }
    }

    /// Sends one attempt and records it with the delivery's next state.
    async fn attempt(
        self: Arc<Self>,
        claim: ClaimedDelivery,
        _slot: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        let attempt = claim.attempt();
        // The attempt's spans join the job's trace: `webhook` (whose log lines carry the
        // job's trace id) with the CLIENT span of the request inside it.
        let delivery = &claim.delivery;
        // The endpoint's rate gave this attempt a send time; shutting down before it
        // gives the claim back unsent.
        if !claim.send_after.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Err(e) = self.store.release_delivery(&claim).await {
                        tracing::warn!(error = %error_chain(&e), delivery_id = %delivery.id, "cannot release a delivery claim");
                    }
                    return;
                }
                _ = tokio::time::sleep(claim.send_after) => {}
            }
        }
        let log = tracing::info_span!(
            "webhook",
            job_id = %delivery.job_id,
            webhook_id = %delivery.webhook_id,
            attempt,
            webhook.endpoint = %delivery.endpoint,
            webhook.probe = claim.probe,
        );
        if let Some(parent) = &delivery.traceparent {
            trace::set_parent(&log, parent);
        }
        let span = log.in_scope(|| spans::http_client("POST", &delivery.url));
        span.record("job.id", delivery.job_id.to_string().as_str());
        if attempt > 1 {
            span.record("http.request.resend_count", attempt - 1);
        }
        let traceparent = trace::traceparent_of(&span).or_else(|| delivery.traceparent.clone());
        async {
            let started_at = Utc::now();
            let clock = Instant::now();
            let body = body::encode(&JobDocument::from(&claim.job));
            let out = Outgoing {
                url: &delivery.url,
                webhook_id: &delivery.webhook_id,
                timestamp: started_at.timestamp(),
                body: &body,
                traceparent: traceparent.as_deref(),
            };
            let answer = self.sender.send(&out).instrument(span.clone()).await;
            let latency = clock.elapsed();
            match &answer {
                Answer::Status { code, .. } => spans::record_http_status(&span, *code),
                Answer::Transport(_) => spans::record_error(&span, "transport"),
                Answer::Refused(_) => spans::record_error(&span, "refused"),
            }
            let attempt_no = u32::try_from(attempt).unwrap_or(u32::MAX);
            let decision = decide(
                &answer,
                attempt_no,
                &self.schedule,
                delivery.created_at,
                Utc::now(),
                rand::random::<f64>(),
            );
            let record = AttemptRecord {
                started_at,
                latency,
                status_code: match answer {
                    Answer::Status { code, .. } => Some(code),
                    _ => None,
                },
                error: decision.error.clone(),
                outcome: decision.outcome,
                next_attempt_at: decision.next_attempt_at,
            };
            let Some(recorded) = self.record(&claim, &record, &answer).await else {
                return;
            };
            endpoint_changed(&recorded);
            metrics::attempt(decision.outcome, latency);
            match decision.outcome {
                AttemptOutcome::Delivered => {
                    tracing::info!(latency_ms = latency.as_millis() as u64, "webhook delivered");
                }
                AttemptOutcome::Retry => {
                    tracing::info!(error = decision.error.as_deref().unwrap_or(""), next_attempt_at = ?decision.next_attempt_at, "webhook attempt failed; will retry");
                    if let Some(at) = decision.next_attempt_at {
                        self.wake_at(at, shutdown);
                    }
                }
                AttemptOutcome::Gone | AttemptOutcome::Failed => {
                    metrics::delivery_failed();
                    tracing::warn!(error = decision.error.as_deref().unwrap_or(""), "webhook delivery failed for good");
                }
            }
        }
        .instrument(log)
        .await;
        self.wake.notify_one();
    }

    /// Records an attempt, retrying briefly while Postgres hiccups. `false` when it could
    /// not be recorded: the claim then expires and the attempt is sent again (the
    /// receiver sees the same `webhook-id`).
    async fn record(
        &self,
        claim: &ClaimedDelivery,
        record: &AttemptRecord,
        answer: &Answer,
    ) -> Option<Recorded> {
        let mut retries =
            Backoff::new(Duration::from_millis(200), Duration::from_secs(1)).retries();
        let health = health(answer);
        for try_no in 1..=RECORD_TRIES {
            match self
                .recorder
                .record(claim, record, &health, &self.health, &self.actor)
                .await
            {
                Ok(Some(recorded)) => return Some(recorded),
                Ok(None) => {
                    tracing::warn!(
                        "delivery claim expired before the attempt was recorded; another scheduler took over"
                    );
                    return None;
                }
                Err(e) if try_no < RECORD_TRIES => {
                    tracing::warn!(error = %error_chain(&e), "cannot record a webhook attempt; retrying");
                    tokio::time::sleep(retries.next_delay()).await;
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "cannot record a webhook attempt; it will be sent again when its claim expires");
                }
            }
        }
        None
    }

    /// Wakes the loop when a scheduled retry falls due (sooner than the next poll).
    fn wake_at(&self, at: DateTime<Utc>, shutdown: CancellationToken) {
        let Ok(wait) = (at - Utc::now()).to_std() else {
            self.wake.notify_one();
            return;
        };
        if wait >= self.poll_interval {
            return;
        }
        let wake = self.wake.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => wake.notify_one(),
            }
        });
    }
}

/// Tuning of the attempts' group commit: a few writers (each holds one of the pool's
/// connections while it writes), batches up to every attempt in flight.
fn recorder_config(max_in_flight: usize) -> GroupConfig {
    GroupConfig {
        writers: 4,
        max_batch: max_in_flight.max(1),
        queue: max_in_flight.max(1).saturating_mul(2),
    }
}

/// Logs (as an event of the attempt's span) a pause or resume this attempt caused.
fn endpoint_changed(recorded: &Recorded) {
    let Some(change) = &recorded.endpoint else {
        return;
    };
    match change.action {
        EndpointAction::Paused => {
            metrics::endpoint_paused();
            tracing::warn!(endpoint = %change.endpoint, reason = %change.reason, "webhook endpoint paused");
        }
        EndpointAction::Resumed => {
            metrics::endpoint_resumed();
            tracing::info!(endpoint = %change.endpoint, reason = %change.reason, "webhook endpoint resumed");
        }
    }
}
