//! Group commit for results ([`crate::group`]): the results a worker's jobs finish with
//! while earlier ones are being written share one statement and one commit
//! ([`Store::succeed_many`]) — each job's SUCCESS, event, finished-job message and
//! webhook delivery, fenced job by job as [`Store::succeed`] fences one.
//!
//! A caller's [`Finisher::succeed`] returns once its own result is committed, or with
//! [`StoreError::FenceLost`] when its attempt is no longer current (the batch's other
//! results are written all the same).

use std::collections::HashMap;

use crate::domain::{Fence, JobId};
use crate::group::{GroupCommit, GroupConfig, GroupWrite};
use crate::store::{Job, Store, StoreError, Success};

/// Hands results to the batch writers. Cheap to clone; the writers stop once every clone
/// is dropped (after writing what they were given).
#[derive(Debug, Clone)]
pub struct Finisher {
    group: GroupCommit<Success, Job>,
}

impl Finisher {
    /// Starts `config.writers` batch writers on `store` (on the current tokio runtime).
    pub fn start(store: Store, config: GroupConfig) -> Self {
        let group = GroupCommit::start(config, Writer { store });
        Finisher { group }
    }

    /// Stores the result of the fenced attempt, like [`Store::succeed`]; returns once it
    /// is committed, possibly together with other jobs' results.
    pub async fn succeed(
        &self,
        fence: &Fence,
        response: &serde_json::Value,
        model_version: &str,
    ) -> Result<Job, StoreError> {
        let success = Success {
            fence: fence.clone(),
            response: response.clone(),
            model_version: model_version.to_string(),
        };
        self.group.submit(success).await
    }
}

/// Writes batches of results.
struct Writer {
    store: Store,
}

impl GroupWrite for Writer {
    type Req = Success;
    type Out = Job;
    const WHAT: &'static str = "result";

    async fn write_batch(
        &self,
        results: &[Success],
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        let rows = self.store.succeed_many(results).await?;
        let mut rows: HashMap<JobId, Job> = rows.into_iter().map(|j| (j.id, j)).collect();
        Ok(results
            .iter()
            .map(|r| {
                rows.remove(&r.fence.job_id)
                    .ok_or_else(|| StoreError::FenceLost((&r.fence).into()))
            })
            .collect())
    }

    async fn write_one(&self, r: &Success) -> Result<Job, StoreError> {
        self.store
            .succeed(&r.fence, &r.response, &r.model_version)
            .await
    }
}
