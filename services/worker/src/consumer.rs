//! Pulling dispatch messages for one model, interactive lane first, and turning each
//! into a claimed job.
//!
//! Each model has two durable consumers: `worker-<model>` (interactive jobs) and
//! `worker-bulk-<model>` (bulk jobs). For every free slot the loop asks the lanes without
//! waiting, in the order [`LaneTurns`] gives: interactive first, except that one claim in
//! `FOODSEG_BULK_SHARE` goes to a bulk job while both have work. Only when neither has a
//! message does it wait, on the interactive lane, for at most [`IDLE_WAIT`]; a person's
//! job is then taken the moment it arrives, and a bulk job within that time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind, message::Acker};
use chrono::Utc;
use foodseg_engine::domain::LaneTurns;
use foodseg_engine::message::JobMessage;
use foodseg_engine::store::ClaimOutcome;
use foodseg_engine::{Attempt, Backoff, JobId, JobStatus, Priority, StoreError};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::job::{JobContext, run_claimed};
use crate::metrics;
use crate::slot::ModelSlot;
use foodseg_engine::error_chain as chain;

/// How long the loop waits for an interactive job when neither lane has one, before it
/// looks at the bulk lane again.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// One model's pull loop over its two lanes. Holds a permit of `permits` per job in
/// flight; stops pulling when `stop` fires. Jobs run on `tracker` and are released when
/// `release` fires.
pub struct ModelConsumer {
    pub ctx: Arc<JobContext>,
    /// The model's runtime, read after each claim (a reload may replace it).
    pub slot: Arc<ModelSlot>,
    pub interactive: PullConsumer,
    pub bulk: PullConsumer,
    /// `FOODSEG_BULK_SHARE`.
    pub bulk_share: u32,
    pub permits: Arc<Semaphore>,
    pub tracker: TaskTracker,
    pub stop: CancellationToken,
    pub release: CancellationToken,
}

impl ModelConsumer {
    pub async fn run(self) {
        let model = self.slot.current().name().to_string();
        tracing::info!(%model, bulk_share = self.bulk_share, "pulling jobs");
        let mut retries =
            Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).retries();
        let mut turns = LaneTurns::new(self.bulk_share);
        loop {
            let first = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // semaphore closed
                },
                () = self.stop.cancelled() => break,
            };
            let mut permits = vec![first];
            while let Ok(p) = self.permits.clone().try_acquire_owned() {
                permits.push(p);
            }
            // Each lane in turn, without waiting.
            let mut failed = false;
            let mut taken = 0;
            for (i, lane) in turns.order().into_iter().enumerate() {
                if permits.is_empty() {
                    break;
                }
                // Bulk asked first for its share gets one slot; the rest go by priority.
                let want = if i == 0 && lane == Priority::Bulk {
                    1
                } else {
                    permits.len()
                };
                let fetched = tokio::select! {
                    f = self.lane(lane).fetch().max_messages(want).messages() => f,
                    () = self.stop.cancelled() => return self.stopped(&model),
                };
                match fetched {
                    Ok(batch) => {
                        let n = self.take(batch, lane, &mut permits, &mut turns).await;
                        taken += n;
                    }
                    Err(e) => {
                        tracing::warn!(%model, lane = %lane, error = %chain(&e), "cannot pull jobs; retrying");
                        failed = true;
                    }
                }
            }
            if taken > 0 {
                retries.reset();
                continue;
            }
            if failed {
                drop(permits);
                if retries.wait(&self.stop).await {
                    continue;
                }
                break;
            }
            // Neither lane has a job: wait for a person's.
            let waited = tokio::select! {
                b = self.interactive.batch().max_messages(permits.len()).expires(IDLE_WAIT).messages() => b,
                () = self.stop.cancelled() => break,
            };
            match waited {
                Ok(batch) => {
                    retries.reset();
                    self.take(batch, Priority::Interactive, &mut permits, &mut turns)
                        .await;
                }
                Err(e) => {
                    tracing::warn!(%model, error = %chain(&e), "cannot pull jobs; retrying");
                    drop(permits);
                    if !retries.wait(&self.stop).await {
                        break;
                    }
                }
            }
        }
        self.stopped(&model)
    }

    fn stopped(&self, model: &str) {
        tracing::info!(%model, "stopped pulling jobs");
    }

    fn lane(&self, lane: Priority) -> &PullConsumer {
        match lane {
            Priority::Interactive => &self.interactive,
            Priority::Bulk => &self.bulk,
        }
    }

    /// Dispatches the messages of one pull as they arrive, one permit each; returns how
    /// many. Stops early when the worker stops.
    async fn take(
        &self,
        mut batch: async_nats::jetstream::consumer::pull::Batch,
        lane: Priority,
        permits: &mut Vec<OwnedSemaphorePermit>,
        turns: &mut LaneTurns,
    ) -> usize {
        let model = self.slot.current().name().to_owned();
        let mut taken = 0;
        loop {
            let next = tokio::select! {
                m = batch.next() => m,
                () = self.stop.cancelled() => break,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(%model, lane = %lane, error = %e, "pull request ended");
                    break;
                }
                Some(Ok(msg)) => match permits.pop() {
                    Some(permit) => {
                        turns.took(lane);
                        taken += 1;
                        self.dispatch(msg, permit);
                    }
                    None => {
                        // More messages than asked for: let another pull take it.
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                    }
                },
            }
        }
        taken
    }

    fn dispatch(&self, msg: jetstream::Message, permit: OwnedSemaphorePermit) {
        let ctx = self.ctx.clone();
        let slot = self.slot.clone();
        let release = self.release.clone();
        self.tracker.spawn(async move {
            handle(ctx, slot, msg, release).await;
            drop(permit);
        });
    }
}

async fn handle(
    ctx: Arc<JobContext>,
    slot: Arc<ModelSlot>,
    msg: jetstream::Message,
    release: CancellationToken,
) {
    let (msg, acker) = msg.split();
    // Only a well-formed `traceparent` is carried on (into logs and the job's spans).
    let traceparent = msg
        .headers
        .as_ref()
        .and_then(foodseg_telemetry::trace::traceparent_from_nats);
    let job_msg: JobMessage = match serde_json::from_slice(&msg.payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(subject = %msg.subject, error = %e,
                "dropping a dispatch message that is not a job message");
            metrics::message_skipped("malformed");
            ack(&acker, AckKind::Ack).await;
            return;
        }
    };
    let job_id = job_msg.job_id;
    let claim_started = Instant::now();
    let Some(claim) = claim(&ctx, job_id, &acker, &release).await else {
        // Shutting down while Postgres is away: another worker takes the message.
        return ack(&acker, AckKind::Nak(None)).await;
    };
    let claim_time = claim_started.elapsed();
    let (job, fence) = match claim {
        Ok(ClaimOutcome::Claimed { job, fence }) => (job, fence),
        Ok(ClaimOutcome::NotFound) => {
            tracing::warn!(%job_id, "dispatch message for a job that does not exist");
            metrics::message_skipped("not_found");
            return ack(&acker, AckKind::Ack).await;
        }
        Ok(ClaimOutcome::Finished(status)) => {
            tracing::info!(%job_id, %status, "dispatch message for a finished job");
            metrics::message_skipped("finished");
            return ack(&acker, AckKind::Ack).await;
        }
        Ok(ClaimOutcome::NotYet(at)) => {
            // A copy that came early: the retry's own message waits in the outbox until
            // its backoff is over, so this one is not needed.
            tracing::debug!(%job_id, not_before = %at, "job waits for its retry backoff");
            metrics::message_skipped("not_yet");
            return ack(&acker, AckKind::Ack).await;
        }
        Ok(ClaimOutcome::Running(lease_until)) => {
            // A copy of a job another worker runs: if that worker dies, the sweeper
            // re-drives the job with a new message once the lease lapses.
            tracing::debug!(%job_id, %lease_until, "job is leased by another worker");
            metrics::message_skipped("running");
            return ack(&acker, AckKind::Ack).await;
        }
        Err(e) => {
            tracing::warn!(%job_id, error = %chain(&e), "cannot claim the job; will retry");
            return ack(&acker, AckKind::Nak(Some(Duration::from_secs(2)))).await;
        }
    };
    metrics::stage("claim", claim_time);
    metrics::transition(JobStatus::Queued, JobStatus::Running);
    if job.attempt == Attempt::FIRST {
        let waited = (Utc::now() - job.created_at).to_std().unwrap_or_default();
        foodseg_telemetry::metrics::queue_wait(&job.model_name, job.priority.as_str(), waited);
    }
    // The message's context first (it is the latest hop), else the one stored at enqueue.
    let parent = traceparent.as_deref().or(job.traceparent.as_deref());
    let span = tracing::info_span!("job",
        otel.name = %format_args!("process {}", msg.subject),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %msg.subject,
        job.id = %job.id,
        job_id = %job.id,
        model = %job.model_name,
        attempt = job.attempt.get(),
        trace_id = tracing::field::Empty,
        worker = %ctx.worker_id,
        claim_ms = claim_time.as_secs_f64() * 1000.0,
    );
    if let Some(tp) = parent {
        foodseg_telemetry::trace::set_parent(&span, tp);
    }
    let trace_id = foodseg_telemetry::trace::trace_id_of_span(&span)
        .or_else(|| job.trace_id.clone())
        .or_else(|| {
            parent
                .and_then(foodseg_telemetry::trace::trace_id_of)
                .map(str::to_string)
        });
    if let Some(id) = trace_id {
        span.record("trace_id", id);
    }
    // The runtime current at the claim runs the whole job, whatever a reload does meanwhile.
    let runtime = slot.current();
    run_claimed(ctx, runtime, job, fence, Arc::new(acker), release)
        .instrument(span)
        .await;
}

async fn ack(acker: &Acker, kind: AckKind) {
    if let Err(e) = acker.ack_with(kind).await {
        tracing::warn!(error = %e, "cannot answer a dispatch message; it will be redelivered");
    }
}

/// Claims the job, waiting while Postgres is unreachable: the message is kept (JetStream
/// is told it is in progress) rather than handed back, so an outage neither cycles the
/// queue through redeliveries nor lets more messages in than this worker has permits
/// for. `None` when `release` fires first.
async fn claim(
    ctx: &JobContext,
    job_id: JobId,
    acker: &Acker,
    release: &CancellationToken,
) -> Option<Result<ClaimOutcome, StoreError>> {
    let mut retries = Backoff::new(Duration::from_millis(200), ctx.renew_every).retries();
    loop {
        match ctx.store.claim(job_id, &ctx.worker_id, ctx.lease).await {
            Err(e) if e.is_unavailable() => {
                tracing::warn!(%job_id, error = %chain(&e), "cannot reach Postgres to claim the job; waiting");
                ack(acker, AckKind::Progress).await;
                if !retries.wait(release).await {
                    return None;
                }
            }
            other => return Some(other),
        }
    }
}
