//! How one model's inference runs are scheduled. Jobs hand their preprocessed input to
//! the model's [`Batcher`] and get their own outputs back (each job keeps its own fence,
//! result and failure). This is inference micro-batching, not the batches of jobs clients
//! send to `POST /v2/jobs`. Two ways, chosen by configuration:
//!
//! - **Batches** (`FOODSEG_BATCH_MAX` > 1, the CUDA default): one run at a time over up
//!   to `max` inputs — the first waiting one, every other already waiting, and those
//!   arriving within `wait` of it.
//! - **Lanes** (`FOODSEG_PARALLEL_RUNS` > 1, the CPU default): a job alone runs on the
//!   session with every intra-op thread (lowest latency); while several jobs of the model
//!   are in flight, they run at once on single-threaded sessions, one per lane (more jobs
//!   per second than runs that share threads). The wide run and the lanes never overlap,
//!   so the cores are never oversubscribed.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foodseg_pipeline::session::RawOutputs;
use foodseg_pipeline::{ModelSession, Preprocessed, SegmentError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::failure::Failure;

/// The sessions of one model: the one every job may use, and the single-threaded lane
/// sessions (none unless parallel runs are configured).
pub struct Sessions {
    pub wide: Arc<ModelSession>,
    pub lanes: Vec<Arc<ModelSession>>,
}

struct Request {
    input: Arc<Preprocessed>,
    /// The job's span: parent of the run's span (of the first job, for a batch).
    span: tracing::Span,
    reply: oneshot::Sender<Result<RawOutputs, Failure>>,
}

/// The door to a model's inference runs; the run loop ends when this is dropped.
pub struct Batcher {
    requests: mpsc::UnboundedSender<Request>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts a job of the model as in flight until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Batcher {
    /// Starts the run loop on the current Tokio runtime.
    pub fn start(sessions: Sessions, config: BatchConfig) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        if sessions.lanes.is_empty() {
            tokio::spawn(batch_loop(sessions.wide, config, rx));
        } else {
            tokio::spawn(lane_loop(sessions, in_flight.clone(), rx));
        }
        Batcher {
            requests,
            in_flight,
        }
    }

    /// Marks a job of this model in flight (from claim to finish) while the guard lives.
    pub fn job(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Runs `input` and returns its outputs.
    pub async fn infer(&self, input: Arc<Preprocessed>) -> Result<RawOutputs, Failure> {
        let gone = || Failure::Transient("model session is shutting down".into());
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request {
                input,
                span: tracing::Span::current(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn batch_loop(
    session: Arc<ModelSession>,
    config: BatchConfig,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + config.wait;
        let mut batch = vec![first];
        while batch.len() < config.max {
            let next = match rx.try_recv() {
                Ok(request) => Some(request),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if config.wait.is_zero() => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
            };
            match next {
                Some(request) => batch.push(request),
                None => break,
            }
        }
        let session = session.clone();
        let _ = tokio::task::spawn_blocking(move || run(&session, batch, None)).await;
    }
}

/// Which session a run used.
#[derive(Debug, Clone, Copy)]
enum Lane {
    Wide,
    Single(usize),
}

async fn lane_loop(
    sessions: Sessions,
    in_flight: Arc<AtomicUsize>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut queue = VecDeque::new();
    let mut running: JoinSet<Lane> = JoinSet::new();
    let mut wide_busy = false;
    let mut free: Vec<usize> = (0..sessions.lanes.len()).rev().collect();
    let mut open = true;
    loop {
        while let Ok(request) = rx.try_recv() {
            queue.push_back(request);
        }
        if !wide_busy {
            let alone =
                running.is_empty() && queue.len() == 1 && in_flight.load(Ordering::Relaxed) <= 1;
            if alone {
                if let Some(request) = queue.pop_front() {
                    wide_busy = true;
                    let session = sessions.wide.clone();
                    running.spawn_blocking(move || {
                        run(&session, vec![request], None);
                        Lane::Wide
                    });
                }
            } else {
                while !queue.is_empty() && !free.is_empty() {
                    let (Some(lane), Some(request)) = (free.pop(), queue.pop_front()) else {
                        break;
                    };
                    let session = sessions.lanes[lane].clone();
                    running.spawn_blocking(move || {
                        run(&session, vec![request], Some(1));
                        Lane::Single(lane)
                    });
                }
            }
        }
        if !open && queue.is_empty() && running.is_empty() {
            return;
        }
        tokio::select! {
            request = rx.recv(), if open => match request {
                Some(request) => queue.push_back(request),
                None => open = false,
            },
            Some(done) = running.join_next(), if !running.is_empty() => match done {
                Ok(Lane::Wide) => wide_busy = false,
                Ok(Lane::Single(lane)) => free.push(lane),
                // Runs catch their panics, so this is the runtime shutting down.
                Err(_) => return,
            },
        }
    }
}

/// One run over `batch` (blocking); every job gets its answer, a panic included.
fn run(session: &ModelSession, batch: Vec<Request>, threads: Option<usize>) {
    let span = tracing::info_span!(
        parent: &batch[0].span,
        "inference",
        model = session.model().name(),
        device = %session.device(),
        batch = batch.len(),
        threads,
        input_width = batch[0].input.letterbox.input_width,
        input_height = batch[0].input.letterbox.input_height,
    );
    let outputs = span.in_scope(|| {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let inputs: Vec<&Preprocessed> = batch.iter().map(|r| r.input.as_ref()).collect();
            session.infer_batch(&inputs)
        }))
    });
    let failure = match outputs {
        Ok(Ok(outputs)) => {
            for (request, outputs) in batch.into_iter().zip(outputs) {
                let _ = request.reply.send(Ok(outputs));
            }
            return;
        }
        Ok(Err(e)) => Failure::from(SegmentError::Inference(e)),
        Err(panic) => Failure::from_panic("inference", panic),
    };
    for request in batch {
        let _ = request.reply.send(Err(failure.clone()));
    }
}
