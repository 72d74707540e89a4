//! Group commit for enqueues ([`crate::group`]): jobs that arrive while earlier ones are
//! being written share one statement and one commit ([`Store::enqueue_many`]).
//!
//! A caller's [`Enqueuer::enqueue`] returns once its own job is committed, as
//! [`Store::enqueue`] does: an answer still means the job, its first event and its
//! dispatch message are durable.

use std::collections::HashMap;

use crate::domain::JobId;
use crate::group::{GroupCommit, GroupConfig, GroupWrite};
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
        let group = GroupCommit::start(config, Writer { store });
        Enqueuer { group }
    }

    /// Writes a new job, its first event (naming `actor`) and its dispatch message, like
    /// [`Store::enqueue`]; returns once they are committed, possibly together with other
    /// callers' jobs.
    pub async fn enqueue(&self, job: NewJob, actor: &str) -> Result<Job, StoreError> {
        self.group.submit((job, actor.to_string())).await
    }
}

/// Writes batches of new jobs.
struct Writer {
    store: Store,
}

impl GroupWrite for Writer {
    type Req = (NewJob, String);
    type Out = Job;
    const WHAT: &'static str = "enqueue";

    async fn write_batch(
        &self,
        batch: &[(NewJob, String)],
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        let jobs: Vec<&NewJob> = batch.iter().map(|(job, _)| job).collect();
        let actors: Vec<&str> = batch.iter().map(|(_, actor)| actor.as_str()).collect();
        let rows = self.store.enqueue_many(&jobs, &actors).await?;
        let mut rows: HashMap<JobId, Job> = rows.into_iter().map(|j| (j.id, j)).collect();
        Ok(jobs
            .iter()
            .map(|job| {
                rows.remove(&job.id)
                    .ok_or(StoreError::Query(sqlx::Error::RowNotFound))
            })
            .collect())
    }

    async fn write_one(&self, (job, actor): &(NewJob, String)) -> Result<Job, StoreError> {
        self.store.enqueue(job, actor).await
    }
}
