//! Running one claimed job: keep its lease, fetch → decode/preprocess → inference →
//! postprocess, then write the result through the fenced store calls and ack the message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::Acker;
use foodseg_engine::store::{Job, RetryOutcome};
use foodseg_engine::{Backoff, Fence, Finisher, JobStatus, RetryPolicy, Store, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::failure::{Failure, blocking};
use crate::lease::{Lease, Renewer};
use crate::metrics::{self, Outcome};
use crate::segment::{ImageFetcher, ModelRuntime};
use crate::shadow::{Segmented, Shadow};
use foodseg_engine::error_chain as chain;

/// What every job on this worker shares.
pub struct JobContext {
    pub store: Store,
    /// Writes the results of jobs finishing together in one commit.
    pub finisher: Finisher,
    pub worker_id: String,
    pub lease: Duration,
    pub renew_every: Duration,
    pub retry: RetryPolicy,
    pub fetcher: ImageFetcher,
    /// The candidate a share of the jobs also runs on (`FOODSEG_SHADOW`).
    pub shadow: Option<Arc<Shadow>>,
}

/// Runs a job this worker has just claimed. `release` fires when shutdown's drain time
/// is over: the job is then handed back to the queue unfinished.
pub async fn run_claimed(
    ctx: Arc<JobContext>,
    runtime: Arc<ModelRuntime>,
    job: Job,
    fence: Fence,
    acker: Arc<Acker>,
    release: CancellationToken,
) -> Outcome {
    let _in_flight = runtime.job();
    let lost = CancellationToken::new();
    let _renewer = Renewer::start(
        ctx.store.clone(),
        Lease {
            fence: fence.clone(),
            duration: ctx.lease,
            renew_every: ctx.renew_every,
        },
        acker.clone(),
        lost.clone(),
    );
    metrics::in_flight(1.0);
    let result = tokio::select! {
        r = segment(&ctx, &runtime, &job) => Some(r),
        () = lost.cancelled() => None,
        () = release.cancelled() => None,
    };
    let mut segmented = None;
    let outcome = match result {
        None if lost.is_cancelled() => Outcome::Abandoned,
        None => write(&ctx, &lost, &release, &fence, async |store, fence| {
            store.release(&fence).await.map(|_| Outcome::Released)
        })
        .await
        .unwrap_or(Outcome::Abandoned),
        Some(Ok(done)) => {
            let items = done.items.clone();
            segmented = ctx
                .shadow
                .as_ref()
                .filter(|s| s.selects(&job))
                .map(|_| done);
            let version: Arc<str> = runtime.model().version().into();
            let finisher = ctx.finisher.clone();
            write(&ctx, &lost, &release, &fence, move |_, fence| {
                let (items, version) = (items.clone(), version.clone());
                let finisher = finisher.clone();
                async move {
                    finisher
                        .succeed(&fence, &items, &version)
                        .await
                        .map(|_| Outcome::Succeeded)
                }
            })
            .await
            .unwrap_or(Outcome::Abandoned)
        }
        Some(Err(failure)) => {
            metrics::failure(&job.model_name, failure.is_permanent());
            record_failure(&ctx, &fence, &lost, &release, failure).await
        }
    };
    metrics::in_flight(-1.0);
    metrics::job_finished(&job.model_name, outcome);
    if let Some(to) = outcome.status() {
        metrics::transition(JobStatus::Running, to);
    }
    tracing::info!(outcome = outcome.as_str(), "job done on this worker");
    // The state is written (or belongs to another attempt): the message has served.
    if let Err(e) = acker.ack().await {
        tracing::warn!(error = %e, "cannot ack the dispatch message; it will be redelivered");
    }
    if let Some(shadow) = &ctx.shadow {
        shadow.offer(&job, &runtime, outcome, segmented);
    }
    outcome
}

async fn record_failure(
    ctx: &JobContext,
    fence: &Fence,
    lost: &CancellationToken,
    release: &CancellationToken,
    failure: Failure,
) -> Outcome {
    let reason: Arc<str> = failure.reason().into();
    if failure.is_permanent() {
        tracing::info!(%reason, "job failed permanently");
        return write(ctx, lost, release, fence, move |store, fence| {
            let reason = reason.clone();
            async move { store.fail(&fence, &reason).await.map(|_| Outcome::Failed) }
        })
        .await
        .unwrap_or(Outcome::Abandoned);
    }
    tracing::warn!(%reason, "attempt failed; the job may be retried");
    let policy = ctx.retry;
    write(ctx, lost, release, fence, move |store, fence| {
        let reason = reason.clone();
        async move {
            let jitter = rand::random::<f64>();
            match store.retry(&fence, &reason, &policy, jitter).await? {
                RetryOutcome::Requeued { not_before } => {
                    tracing::info!(%not_before, "job requeued");
                    Ok(Outcome::Retried)
                }
                RetryOutcome::Failed(_) => Ok(Outcome::Failed),
            }
        }
    })
    .await
    .unwrap_or(Outcome::Abandoned)
}

/// Performs a fenced write. While Postgres is unreachable the write is kept and retried
/// until it answers (the lease renewer keeps the message in progress meanwhile), so an
/// outage costs the job nothing; only shutdown (`release`) gives it up, and the job is
/// then re-driven. `None` when the attempt is no longer current or the write could not be
/// made.
async fn write<F, Fut>(
    ctx: &JobContext,
    lost: &CancellationToken,
    release: &CancellationToken,
    fence: &Fence,
    op: F,
) -> Option<Outcome>
where
    F: Fn(Store, Fence) -> Fut,
    Fut: Future<Output = Result<Outcome, StoreError>>,
{
    let span = tracing::info_span!("write");
    let started = Instant::now();
    let written = write_tries(ctx, lost, release, fence, op)
        .instrument(span)
        .await;
    metrics::stage("write", started.elapsed());
    written
}

async fn write_tries<F, Fut>(
    ctx: &JobContext,
    lost: &CancellationToken,
    release: &CancellationToken,
    fence: &Fence,
    op: F,
) -> Option<Outcome>
where
    F: Fn(Store, Fence) -> Fut,
    Fut: Future<Output = Result<Outcome, StoreError>>,
{
    let mut retries = Backoff::new(Duration::from_millis(200), ctx.renew_every).retries();
    let mut waiting = false;
    loop {
        match op(ctx.store.clone(), fence.clone()).await {
            Ok(outcome) => {
                if waiting {
                    tracing::info!("Postgres answers again; the job's state is written");
                }
                return Some(outcome);
            }
            Err(StoreError::FenceLost(_)) => {
                tracing::warn!("attempt no longer current; its result is dropped");
                return None;
            }
            Err(e) if e.is_unavailable() && !lost.is_cancelled() => {
                if !waiting {
                    tracing::warn!(error = %chain(&e),
                        "cannot reach Postgres to write the job's state; keeping it until it answers");
                    waiting = true;
                }
                if !retries.wait(release).await {
                    tracing::warn!(
                        "shutting down before Postgres answered; the job will be re-driven"
                    );
                    return None;
                }
            }
            Err(e) => {
                tracing::error!(error = %chain(&e),
                    "cannot write the job's state; the lease will lapse and the job be re-driven");
                return None;
            }
        }
    }
}

/// The segmentation itself, stage by stage, each in its own span and histogram.
async fn segment(
    ctx: &JobContext,
    runtime: &Arc<ModelRuntime>,
    job: &Job,
) -> Result<Segmented, Failure> {
    let source = timed(
        "fetch",
        crate::image_source::load(&ctx.store, &ctx.fetcher, job),
    )
    .await?;
    let (bytes, started) = (source.bytes.clone(), Instant::now());
    let rt = runtime.clone();
    let image = timed("decode", blocking("decode", move || rt.decode(&bytes))).await?;
    let rt = runtime.clone();
    let input = timed(
        "preprocess",
        blocking("preprocess", move || rt.preprocess(image)),
    )
    .await?;
    // One inference at a time per session; other jobs fetch and decode meanwhile.
    let input = Arc::new(input);
    let outputs = timed("inference", runtime.infer(input.clone())).await?;
    let rt = runtime.clone();
    let image_id = source.image_id.clone();
    let items = timed(
        "postprocess",
        blocking("postprocess", move || {
            rt.postprocess(outputs, &input, &image_id)
        }),
    )
    .await?;
    Ok(Segmented {
        items: Arc::new(items),
        bytes: source.bytes,
        image_id: source.image_id,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Records a stage's duration (the pipeline library opens the stage's span).
async fn timed<T>(
    stage: &'static str,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let start = Instant::now();
    let result = fut.await;
    metrics::stage(stage, start.elapsed());
    result
}
