//! Micro-batching of one model's inference. Jobs hand their preprocessed input to the
//! model's batcher; it runs one `session.run` at a time, over up to `max` inputs: the
//! first waiting one, every other that is already waiting, and those that arrive within
//! `wait` of it. Each job gets its own outputs back (and its own fence, result and
//! failure: a batch only shares the run).

use std::sync::Arc;

use foodseg_pipeline::session::RawOutputs;
use foodseg_pipeline::{ModelSession, Preprocessed, SegmentError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::failure::Failure;

struct Request {
    input: Arc<Preprocessed>,
    /// The job's span, parent of the run's span for the first job of a batch.
    span: tracing::Span,
    reply: oneshot::Sender<Result<RawOutputs, Failure>>,
}

/// The door to a model's inference runs; the run loop ends when this is dropped.
pub struct Batcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl Batcher {
    /// Starts the run loop of `session` on the current Tokio runtime.
    pub fn start(session: Arc<ModelSession>, config: BatchConfig) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_loop(session, config, rx));
        Batcher { requests }
    }

    /// Runs `input` in the next batch and returns its outputs.
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

async fn run_loop(
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
        run_batch(&session, batch).await;
    }
}

/// One run for the batch, off the async threads; every job gets its answer.
async fn run_batch(session: &Arc<ModelSession>, batch: Vec<Request>) {
    let span = tracing::info_span!(
        parent: &batch[0].span,
        "inference",
        model = session.model().name(),
        device = %session.device(),
        batch = batch.len(),
        input_width = batch[0].input.letterbox.input_width,
        input_height = batch[0].input.letterbox.input_height,
    );
    let inputs: Vec<Arc<Preprocessed>> = batch.iter().map(|r| r.input.clone()).collect();
    let runner = session.clone();
    let result = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let refs: Vec<&Preprocessed> = inputs.iter().map(Arc::as_ref).collect();
            runner.infer_batch(&refs)
        })
    })
    .await;
    match result {
        Ok(Ok(outputs)) => {
            for (request, outputs) in batch.into_iter().zip(outputs) {
                let _ = request.reply.send(Ok(outputs));
            }
        }
        Ok(Err(e)) => {
            let failure = crate::segment::classify(SegmentError::Inference(e));
            for request in batch {
                let _ = request.reply.send(Err(failure.clone()));
            }
        }
        Err(join) => {
            let failure = Failure::from_join("inference", join);
            for request in batch {
                let _ = request.reply.send(Err(failure.clone()));
            }
        }
    }
}
