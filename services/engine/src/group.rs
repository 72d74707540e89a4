//! Group commit: writes that arrive while earlier ones are being written share one
//! statement and one commit, so the rate of writes is no longer one WAL flush each per
//! connection. The [`Enqueuer`](crate::Enqueuer) writes new jobs this way, the
//! [`Finisher`](crate::Finisher) the workers' results and the
//! [`Recorder`](crate::Recorder) the schedulers' webhook attempts.
//!
//! A caller's [`GroupCommit::submit`] returns once its own write is committed, as a
//! single statement's would: an answer still means what was written is durable. A few
//! writers take turns: while one waits for its commit, the next gathers whatever arrived
//! meanwhile, so the batches grow with the load and a lone write goes out at once, on
//! its own. When a batch fails as a whole, each of its writes is made again on its own,
//! so one bad write cannot fail the others.

use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::StoreError;

/// Tuning of a group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// Batches written at once (each holds one database connection while it is written,
    /// so keep it well under the pool size).
    pub writers: usize,
    /// Most writes per batch.
    pub max_batch: usize,
    /// Writes waiting for a writer before callers wait to hand theirs over.
    pub queue: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            // Enough batches in flight to keep a WAL flush always under way at 64
            // concurrent callers on two cores (`just bench-enqueue`), few enough to keep
            // the batches large.
            writers: 8,
            max_batch: 256,
            queue: 4096,
        }
    }
}

/// How one kind of write is made: a batch in one statement and one commit, or one on
/// its own (after its batch failed as a whole).
pub(crate) trait GroupWrite: Send + Sync + 'static {
    type Req: Send + Sync + 'static;
    type Out: Send + 'static;
    /// What is written, for the log line of a failed batch.
    const WHAT: &'static str;

    /// Writes `batch` all or nothing; `Ok` holds each write's outcome at its position.
    fn write_batch(
        &self,
        batch: &[Self::Req],
    ) -> impl Future<Output = Result<Vec<Result<Self::Out, StoreError>>, StoreError>> + Send;

    /// Writes one request on its own.
    fn write_one(
        &self,
        request: &Self::Req,
    ) -> impl Future<Output = Result<Self::Out, StoreError>> + Send;
}

/// One caller's write and where its outcome goes.
struct Pending<Req, Out> {
    request: Req,
    reply: oneshot::Sender<Result<Out, StoreError>>,
}

/// The queue the writers take turns at.
type Queue<Req, Out> = Arc<Mutex<mpsc::Receiver<Pending<Req, Out>>>>;

/// Hands writes to the batch writers. Cheap to clone; the writers stop once every clone
/// is dropped (after writing what they were given).
pub(crate) struct GroupCommit<Req, Out> {
    tx: mpsc::Sender<Pending<Req, Out>>,
}

impl<Req, Out> Clone for GroupCommit<Req, Out> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
        }
    }
}

impl<Req, Out> std::fmt::Debug for GroupCommit<Req, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<Req: Send + Sync + 'static, Out: Send + 'static> GroupCommit<Req, Out> {
    /// Starts `config.writers` batch writers (on the current tokio runtime), each writing
    /// batches through `write` and answering each caller with its own outcome.
    pub(crate) fn start<W>(config: GroupConfig, write: W) -> Self
    where
        W: GroupWrite<Req = Req, Out = Out>,
    {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..config.writers.max(1) {
            tokio::spawn(write_batches(
                rx.clone(),
                write.clone(),
                config.max_batch.max(1),
            ));
        }
        GroupCommit { tx }
    }

    /// Hands `request` to the writers; returns its outcome once its batch is written.
    pub(crate) async fn submit(&self, request: Req) -> Result<Out, StoreError> {
        let (reply, outcome) = oneshot::channel();
        if self.tx.send(Pending { request, reply }).await.is_err() {
            return Err(writer_gone());
        }
        outcome.await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

/// The error of a write whose writer went away without an answer (it panicked, or the
/// runtime is shutting down): the write may not be made.
fn writer_gone() -> StoreError {
    StoreError::Unavailable(sqlx::Error::WorkerCrashed)
}

/// One writer: takes whatever waits (at least one write, at most `max_batch`), writes it,
/// answers each caller, and again, until the channel closes.
async fn write_batches<W: GroupWrite>(rx: Queue<W::Req, W::Out>, write: Arc<W>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let received = rx.lock().await.recv_many(&mut batch, max_batch).await;
        if received == 0 {
            return;
        }
        let (requests, replies): (Vec<W::Req>, Vec<_>) = std::mem::take(&mut batch)
            .into_iter()
            .map(|p| (p.request, p.reply))
            .unzip();
        let outcomes = write_all(write.as_ref(), &requests).await;
        for (outcome, reply) in outcomes.into_iter().zip(replies) {
            // A caller that gave up (deadline, client gone) no longer listens.
            let _ = reply.send(outcome);
        }
    }
}

/// Each request's outcome: from the batch, or, when the batch failed as a whole, from
/// writing the request on its own.
async fn write_all<W: GroupWrite>(
    write: &W,
    requests: &[W::Req],
) -> Vec<Result<W::Out, StoreError>> {
    match write.write_batch(requests).await {
        Ok(outcomes) => outcomes,
        Err(e) if requests.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::debug!(
                writes = requests.len(),
                error = %crate::error_chain(&e),
                "{} batch failed; writing them one by one",
                W::WHAT
            );
            join_all(requests.iter().map(|r| write.write_one(r))).await
        }
    }
}
