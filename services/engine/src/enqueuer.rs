//! Group commit for enqueues ([`crate::group`]): jobs that arrive while earlier ones are
//! being written share one statement and one commit ([`Store::enqueue_many`]).
//!
//! A caller's [`Enqueuer::enqueue`] returns once its own job is committed, as
//! [`Store::enqueue`] does: an answer still means the job, its first event and its
//! dispatch message are durable. When a batch fails, each of its jobs is written on its
//! own, so one bad job cannot fail the others.

use std::collections::HashMap;

use futures::future::join_all;

use crate::domain::JobId;
use crate::group::{GroupCommit, GroupConfig};
use crate::store::{Job, NewJob, Store, StoreError};

/// Hands jobs to the batch writers. Cheap to clone; the writers stop once every clone is
/// dropped (after writing what they were given).
#[derive(Debug, Clone)]
pub struct Enqueuer {
    group: GroupCommit<(NewJob, String), Job>,
}

impl Enqueuer {
    /// Starts `config.writers` batch writers on `store` (on the current tokio runtime).
    pub fn start(store: Store, config: GroupConfig) -> Self {
        let group = GroupCommit::start(config, move |batch| {
            let store = store.clone();
            async move { write(&store, batch).await }
        });
        Enqueuer { group }
    }

    /// Writes a new job, its first event (naming `actor`) and its dispatch message, like
    /// [`Store::enqueue`]; returns once they are committed, possibly together with other
    /// callers' jobs.
    pub async fn enqueue(&self, job: NewJob, actor: &str) -> Result<Job, StoreError> {
        self.group.submit((job, actor.to_string())).await
    }
}

/// Writes one batch: each job's row, or its error.
async fn write(store: &Store, batch: Vec<(NewJob, String)>) -> Vec<Result<Job, StoreError>> {
    let (jobs, actors): (Vec<NewJob>, Vec<String>) = batch.into_iter().unzip();
    let actor_refs: Vec<&str> = actors.iter().map(String::as_str).collect();
    match store.enqueue_many(&jobs, &actor_refs).await {
        Ok(rows) => {
            let mut rows: HashMap<JobId, Job> = rows.into_iter().map(|j| (j.id, j)).collect();
            jobs.iter()
                .map(|job| {
                    rows.remove(&job.id)
                        .ok_or(StoreError::Query(sqlx::Error::RowNotFound))
                })
                .collect()
        }
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::debug!(
                jobs = jobs.len(),
                error = %crate::error_chain(&e),
                "enqueue batch failed; writing its jobs one by one"
            );
            join_all(
                jobs.iter()
                    .zip(&actor_refs)
                    .map(|(job, actor)| store.enqueue(job, actor)),
            )
            .await
        }
    }
}
