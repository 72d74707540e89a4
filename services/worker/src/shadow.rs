//! Shadow runs of a candidate model (`FOODSEG_SHADOW=CANDIDATE:SHARE`): after a job's real
//! result is written and its message acked, a share of the jobs runs again on the
//! candidate, on the same image bytes. The job hands its image to a queue of
//! [`QUEUE`] places and is done: its slot of the worker's concurrency goes to the next
//! job at once, and one shadow run at a time is made from the queue. When the queue is
//! full (the worker is busier than its shadow runs can follow) the job is not shadowed
//! and the skip is counted. The candidate's items, its time and version,
//! and the per-class comparison with the served model's items ([`crate::compare`]) are
//! stored beside the job (`shadow_results`); nothing of it reaches the job's document or
//! webhook, which were written before. A shadow run never fails or retries its job: its
//! errors are logged at warn and counted.
//!
//! Which jobs are shadowed is decided by their ids ([`selected`]), so every delivery of a
//! job agrees, and a test can tell which jobs will be.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use foodseg_engine::store::{Job, NewShadowResult};
use foodseg_engine::{JobId, Store};
use foodseg_models::Registry;
use foodseg_pipeline::{Item, SegmentError};
use foodseg_runtime::ConfigError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::error::WorkerError;
use crate::failure::Failure;
use crate::metrics::Outcome;
use crate::segment::ModelRuntime;
use foodseg_engine::error_chain as chain;

/// Shadow runs, by candidate and outcome (`recorded`, `duplicate`: the job already had
/// one, `failed`, `skipped`: the queue was full).
pub const SHADOW_RUNS_TOTAL: &str = "foodseg_worker_shadow_runs_total";

/// Shadow runs waiting at most (each holds its image's bytes).
pub const QUEUE: usize = 64;

/// Where a job's id falls in [0, 1): the first 8 bytes of the SHA-256 of the id's 16
/// bytes, the top 53 bits as a fraction. Stable across versions and processes.
pub fn share_point(id: JobId) -> f64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_uuid().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a job with this id is among the `share` of jobs shadowed.
pub fn selected(id: JobId, share: f64) -> bool {
    share_point(id) < share
}

/// What a job's segmentation gives: its items, and what a shadow run of it needs.
pub struct Segmented {
    /// The v1 items, as written.
    pub items: Arc<serde_json::Value>,
    /// The image's bytes and the `image_id` its items carry.
    pub bytes: Bytes,
    pub image_id: String,
    /// Seconds from decode to items.
    pub seconds: f64,
}

/// The candidate, loaded and warm, the share of jobs it runs, and its queue.
pub struct Shadow {
    thread: LowPriorityThread,
    runtime: Arc<ModelRuntime>,
    share: f64,
    queue: mpsc::Sender<Pending>,
    /// Taken by [`Shadow::run_queue`].
    waiting: std::sync::Mutex<Option<mpsc::Receiver<Pending>>>,
}

/// A job waiting for its shadow run.
struct Pending {
    job_id: JobId,
    /// The runtime that served it (kept until the run, across a swap).
    served: Arc<ModelRuntime>,
    segmented: Segmented,
    span: tracing::Span,
}

impl Shadow {
    /// The candidate of `FOODSEG_SHADOW`, resolved in the registry and loaded like a served
    /// model; none when unset. An unknown candidate is a configuration error.
    pub async fn load(config: &Config) -> Result<Option<Arc<Shadow>>, WorkerError> {
        let Some(shadow) = &config.shadow else {
            return Ok(None);
        };
        let registry = Registry::load(&config.common.models_dir)?;
        let model = registry.get(&shadow.candidate).cloned().ok_or_else(|| {
            WorkerError::Config(ConfigError {
                var: "FOODSEG_SHADOW",
                value: Some(format!("{}:{}", shadow.candidate, shadow.share)),
                reason: format!(
                    "the candidate {:?} is not in the registry at {}; known ids: {}",
                    shadow.candidate,
                    config.common.models_dir.display(),
                    registry.known_ids().join(", ")
                ),
            })
        })?;
        // One session with one intra-op thread, run on the low-priority thread.
        let mut single = config.clone();
        single.intra_threads = Some(1);
        single.batch.parallel_runs = 1;
        let runtime = crate::segment::load_runtimes(&single, vec![model])
            .await?
            .pop()
            .ok_or_else(|| WorkerError::NoModel("the shadow candidate did not load".into()))?;
        metrics::describe_counter!(
            SHADOW_RUNS_TOTAL,
            "Shadow runs on the candidate model (FOODSEG_SHADOW), by candidate and outcome"
        );
        for outcome in ["recorded", "duplicate", "failed", "skipped"] {
            counter(runtime.name(), outcome).increment(0);
        }
        tracing::info!(
            candidate = runtime.name(),
            version = runtime.model().short_version(),
            share = shadow.share,
            "shadow runs on a candidate model"
        );
        let (queue, waiting) = mpsc::channel(QUEUE);
        let thread = LowPriorityThread::start(runtime.name())
            .map_err(|e| WorkerError::NoModel(format!("cannot start the shadow thread: {e}")))?;
        Ok(Some(Arc::new(Shadow {
            thread,
            runtime,
            share: shadow.share,
            queue,
            waiting: std::sync::Mutex::new(Some(waiting)),
        })))
    }

    /// The candidate's registry name.
    pub fn name(&self) -> &str {
        self.runtime.name()
    }

    /// Whether `job` is shadowed: among the share, and not a job of the candidate itself.
    pub fn selects(&self, job: &Job) -> bool {
        job.model_name != self.name() && selected(job.id, self.share)
    }

    /// Queues the shadow run of a job that `served` just finished (`outcome`), when it is
    /// shadowed; never waits. A full queue skips the job (counted).
    pub(crate) fn offer(
        &self,
        job: &Job,
        served: &Arc<ModelRuntime>,
        outcome: Outcome,
        segmented: Option<Segmented>,
    ) {
        let Some(segmented) = segmented else { return };
        if outcome != Outcome::Succeeded || !self.selects(job) {
            return;
        }
        let pending = Pending {
            job_id: job.id,
            served: served.clone(),
            segmented,
            span: tracing::info_span!("shadow", candidate = self.name(), job_id = %job.id),
        };
        if self.queue.try_send(pending).is_err() {
            tracing::debug!(job_id = %job.id, "shadow queue full; the job is not shadowed");
            counter(self.name(), "skipped").increment(1);
        }
    }

    /// Makes the queued shadow runs one at a time until `stop`; the runs still waiting
    /// then are dropped. Never fails: errors are logged and counted.
    pub async fn run_queue(self: Arc<Self>, store: Store, stop: CancellationToken) {
        let taken = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut waiting) = taken else { return };
        loop {
            let pending = tokio::select! {
                p = waiting.recv() => p,
                () = stop.cancelled() => None,
            };
            let Some(Pending {
                job_id,
                served,
                segmented,
                span,
            }) = pending
            else {
                break;
            };
            let run = self
                .run(&store, job_id, &served, segmented)
                .instrument(span.clone());
            let result = tokio::select! {
                r = run => r,
                () = stop.cancelled() => break,
            };
            let outcome = match result {
                Ok(true) => "recorded",
                Ok(false) => "duplicate",
                Err(reason) => {
                    span.in_scope(
                        || tracing::warn!(%reason, "shadow run failed; the job is not affected"),
                    );
                    "failed"
                }
            };
            counter(self.name(), outcome).increment(1);
        }
        let dropped = waiting.len();
        if dropped > 0 {
            tracing::info!(
                dropped,
                "shutting down; the shadow runs still waiting are dropped"
            );
        }
    }

    async fn run(
        &self,
        store: &Store,
        job_id: JobId,
        served: &ModelRuntime,
        segmented: Segmented,
    ) -> Result<bool, String> {
        let rt = self.runtime.clone();
        let (bytes, image_id, ours) = (segmented.bytes, segmented.image_id, segmented.items);
        let span = tracing::Span::current();
        let made = self
            .thread
            .run(move || {
                span.in_scope(|| {
                    let started = Instant::now();
                    let input = rt.preprocess(rt.decode(&bytes)?)?;
                    let outputs = rt
                        .session()
                        .infer(&input)
                        .map_err(|e| Failure::from(SegmentError::from(e)))?;
                    let items = rt.postprocess(outputs, &input, &image_id)?;
                    let seconds = started.elapsed().as_secs_f64();
                    let parse = |v: &serde_json::Value| {
                        serde_json::from_value::<Vec<Item>>(v.clone())
                            .map_err(|e| Failure::Permanent(format!("items are not v1 items: {e}")))
                    };
                    let classes = crate::compare::compare(&parse(&ours)?, &parse(&items)?);
                    Ok((items, seconds, classes))
                })
            })
            .await?;
        let (items, seconds, classes) = made.map_err(|f: Failure| f.reason().to_string())?;
        let row = NewShadowResult {
            job_id,
            model_name: served.name().to_string(),
            model_version: served.model().version().to_string(),
            candidate: self.name().to_string(),
            candidate_version: self.runtime.model().version().to_string(),
            items,
            model_seconds: segmented.seconds,
            candidate_seconds: seconds,
            classes,
        };
        store
            .insert_shadow_result(&row)
            .await
            .map_err(|e| format!("cannot record the shadow run: {}", chain(&e)))
    }
}

/// The OS thread shadow runs are made on, at the idle CPU priority (`SCHED_IDLE`, set on
/// the thread alone). Its inference is single-threaded (the candidate's session has one
/// intra-op thread, which ONNX Runtime runs on the calling thread), so the kernel gives
/// the shadow run only the CPU time the jobs leave idle: on a busy CPU worker a shadow
/// run waits, a job does not.
struct LowPriorityThread {
    work: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl LowPriorityThread {
    fn start(name: &str) -> std::io::Result<Self> {
        let (work, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name(format!("shadow-{name}"))
            .spawn(move || {
                lower_priority();
                for job in queue {
                    job();
                }
            })?;
        Ok(LowPriorityThread { work })
    }

    /// Runs `f` on the thread and gives back what it returns; a panic is an error.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = move || {
            let _ = answer.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        };
        self.work
            .send(Box::new(job))
            .map_err(|_| "the shadow thread has stopped".to_string())?;
        match answered.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err("the shadow run panicked".into()),
            Err(_) => Err("the shadow thread has stopped".into()),
        }
    }
}

/// `SCHED_IDLE` for the calling thread (a warning where the system refuses it): the
/// kernel runs it only when no other thread wants the CPU, and preempts it at once when
/// one wakes.
fn lower_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        idle,
    ) {
        tracing::warn!(error = ?e,
            "cannot give the shadow thread the idle CPU priority; shadow runs compete with jobs");
    }
}

fn counter(candidate: &str, outcome: &'static str) -> metrics::Counter {
    metrics::counter!(SHADOW_RUNS_TOTAL, "candidate" => candidate.to_string(), "outcome" => outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_decided_by_the_id() {
        let ids: Vec<JobId> = (0..10_000).map(|_| JobId::new()).collect();
        for id in &ids {
            let p = share_point(*id);
            assert!((0.0..1.0).contains(&p));
            assert_eq!(p, share_point(*id), "the same id, the same point");
            assert!(selected(*id, 1.0));
        }
        // Time-ordered ids (UUIDv7) still spread evenly.
        let tenth = ids.iter().filter(|id| selected(**id, 0.1)).count();
        assert!((800..1200).contains(&tenth), "{tenth} of 10000 at 0.1");
        let half = ids.iter().filter(|id| selected(**id, 0.5)).count();
        assert!((4700..5300).contains(&half), "{half} of 10000 at 0.5");
        // A fixed id has a fixed point, whatever the build.
        let id = JobId::from_uuid(uuid::Uuid::from_u128(
            0x0192_0000_0000_7000_8000_0000_0000_0001,
        ));
        assert_eq!(share_point(id), 0.288_831_392_962_135_1);
    }
}
