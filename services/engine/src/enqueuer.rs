//! Group commit for enqueues: jobs that arrive while earlier ones are being written share
//! one statement and one commit ([`Store::enqueue_many`]), so the rate of enqueues is no
//! longer one WAL flush per job per connection.
//!
//! A caller's [`Enqueuer::enqueue`] returns once its own job is committed, as
//! [`Store::enqueue`] does: an answer still means the job, its first event and its
//! dispatch message are durable. A few writers take turns: while one waits for its commit,
//! the next gathers whatever arrived meanwhile, so the batches grow with the load and a
//! lone enqueue is written at once, on its own. When a batch fails, each of its jobs is
//! written on its own, so one bad job cannot fail the others.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::domain::JobId;
use crate::store::{Job, NewJob, Store, StoreError};

/// Tuning of an [`Enqueuer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnqueueConfig {
    /// Batches written at once (each holds one database connection while it is written,
    /// so keep it well under the pool size).
    pub writers: usize,
    /// Most jobs per batch.
    pub max_batch: usize,
    /// Enqueues waiting for a writer before callers wait to hand theirs over.
    pub queue: usize,
}

impl Default for EnqueueConfig {
    fn default() -> Self {
        EnqueueConfig {
            // Enough batches in flight to keep a WAL flush always under way at 64
            // concurrent callers on two cores (`just bench-enqueue`), few enough to keep
            // the batches large.
            writers: 8,
            max_batch: 256,
            queue: 4096,
        }
    }
}

/// One caller's job and where its outcome goes.
struct Pending {
    job: NewJob,
    actor: String,
    reply: oneshot::Sender<Result<Job, StoreError>>,
}

/// Hands jobs to the batch writers. Cheap to clone; the writers stop once every clone is
/// dropped (after writing what they were given).
#[derive(Debug, Clone)]
pub struct Enqueuer {
    tx: mpsc::Sender<Pending>,
}

impl Enqueuer {
    /// Starts `config.writers` batch writers on `store` (on the current tokio runtime).
    pub fn start(store: Store, config: EnqueueConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.writers.max(1) {
            tokio::spawn(write_batches(
                store.clone(),
                rx.clone(),
                config.max_batch.max(1),
            ));
        }
        Enqueuer { tx }
    }

    /// Writes a new job, its first event (naming `actor`) and its dispatch message, like
    /// [`Store::enqueue`]; returns once they are committed, possibly together with other
    /// callers' jobs.
    pub async fn enqueue(&self, job: NewJob, actor: &str) -> Result<Job, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            job,
            actor: actor.to_string(),
            reply,
        };
        if self.tx.send(pending).await.is_err() {
            return Err(writer_gone());
        }
        outcome.await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

/// The error of an enqueue whose writer went away without an answer (it panicked, or the
/// runtime is shutting down): the job may not be written.
fn writer_gone() -> StoreError {
    StoreError::Unavailable(sqlx::Error::WorkerCrashed)
}

/// One writer: takes whatever waits (at least one job, at most `max_batch`), writes it,
/// answers each caller, and again, until the channel closes.
async fn write_batches(store: Store, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let received = rx.lock().await.recv_many(&mut batch, max_batch).await;
        if received == 0 {
            return;
        }
        write(&store, std::mem::take(&mut batch)).await;
    }
}

/// Writes one batch and answers its callers.
async fn write(store: &Store, batch: Vec<Pending>) {
    let (jobs, rest): (Vec<NewJob>, Vec<(String, oneshot::Sender<_>)>) = batch
        .into_iter()
        .map(|p| (p.job, (p.actor, p.reply)))
        .unzip();
    let actors: Vec<&str> = rest.iter().map(|(actor, _)| actor.as_str()).collect();
    match store.enqueue_many(&jobs, &actors).await {
        Ok(rows) => {
            let mut rows: HashMap<JobId, Job> = rows.into_iter().map(|j| (j.id, j)).collect();
            for (job, (_, reply)) in jobs.iter().zip(rest) {
                let row = rows
                    .remove(&job.id)
                    .ok_or(StoreError::Query(sqlx::Error::RowNotFound));
                // A caller that gave up (deadline, client gone) no longer listens.
                let _ = reply.send(row);
            }
        }
        Err(e) if jobs.len() == 1 => {
            if let Some((_, reply)) = rest.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!(
                jobs = jobs.len(),
                error = %crate::error_chain(&e),
                "enqueue batch failed; writing its jobs one by one"
            );
            let outcomes = join_all(
                jobs.iter()
                    .zip(&rest)
                    .map(|(job, (actor, _))| store.enqueue(job, actor)),
            )
            .await;
            for (outcome, (_, reply)) in outcomes.into_iter().zip(rest) {
                let _ = reply.send(outcome);
            }
        }
    }
}
