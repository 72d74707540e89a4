//! Group commit for results ([`crate::group`]): the results a worker's jobs finish with
//! while earlier ones are being written share one statement and one commit
//! ([`Store::succeed_many`]) — each job's SUCCESS, event, finished-job message and
//! webhook delivery, fenced job by job as [`Store::succeed`] fences one.
//!
//! A caller's [`Finisher::succeed`] returns once its own result is committed, or with
//! [`StoreError::FenceLost`] when its attempt is no longer current (the batch's other
//! results are written all the same). When a batch fails, each of its results is written
//! on its own, so one bad result cannot fail the others.

use std::collections::HashMap;

use futures::future::join_all;

use crate::domain::{Fence, JobId};
use crate::group::{GroupCommit, GroupConfig};
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
        let group = GroupCommit::start(config, move |batch| {
            let store = store.clone();
            async move { write(&store, batch).await }
        });
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

/// Writes one batch: each result's job row, or its error.
async fn write(store: &Store, results: Vec<Success>) -> Vec<Result<Job, StoreError>> {
    match store.succeed_many(&results).await {
        Ok(rows) => {
            let mut rows: HashMap<JobId, Job> = rows.into_iter().map(|j| (j.id, j)).collect();
            results
                .iter()
                .map(|r| {
                    rows.remove(&r.fence.job_id)
                        .ok_or_else(|| StoreError::FenceLost((&r.fence).into()))
                })
                .collect()
        }
        Err(e) if results.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::debug!(
                results = results.len(),
                error = %crate::error_chain(&e),
                "result batch failed; writing its results one by one"
            );
            join_all(
                results
                    .iter()
                    .map(|r| store.succeed(&r.fence, &r.response, &r.model_version)),
            )
            .await
        }
    }
}
