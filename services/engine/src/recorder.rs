//! Group commit for webhook attempts ([`crate::group`]): the attempts a scheduler's
//! deliveries end while earlier ones are being recorded share one statement and one
//! commit ([`Store::record_attempt`]'s statement over many rows), each fenced on its own
//! claim.
//!
//! Only answers that do not show their endpoint down go through the batch. A failure is
//! counted under its endpoint's row lock and may pause the endpoint, so it is recorded
//! on its own, as before. An answer that shows a paused endpoint up resumes it after its
//! batch is committed.

use crate::domain::{Health, HealthPolicy};
use crate::group::{GroupCommit, GroupConfig, GroupWrite};
use crate::store::{AttemptRecord, AttemptRow, ClaimedDelivery, Recorded, Store, StoreError};

/// Hands attempts to the batch writers. Cheap to clone; the writers stop once every clone
/// is dropped (after writing what they were given).
#[derive(Debug, Clone)]
pub struct Recorder {
    store: Store,
    group: GroupCommit<AttemptRow, Option<bool>>,
}

impl Recorder {
    /// Starts `config.writers` batch writers on `store` (on the current tokio runtime).
    pub fn start(store: Store, config: GroupConfig) -> Self {
        let group = GroupCommit::start(
            config,
            Writer {
                store: store.clone(),
            },
        );
        Recorder { store, group }
    }

    /// Records the attempt like [`Store::record_attempt`], and returns the same: `None`
    /// (nothing written) when the claim is no longer current. Returns once it is
    /// committed, possibly together with other attempts.
    pub async fn record(
        &self,
        claim: &ClaimedDelivery,
        record: &AttemptRecord,
        health: &Health,
        policy: &HealthPolicy,
        actor: &str,
    ) -> Result<Option<Recorded>, StoreError> {
        if let Health::Down { .. } = health {
            return self
                .store
                .record_attempt(claim, record, health, policy, actor)
                .await;
        }
        let row = AttemptRow::new(claim, record, *health == Health::Up);
        let Some(paused) = self.group.submit(row.clone()).await? else {
            return Ok(None);
        };
        self.store.after_answer(&row, paused, actor).await.map(Some)
    }
}

/// Writes batches of attempts.
struct Writer {
    store: Store,
}

impl GroupWrite for Writer {
    type Req = AttemptRow;
    type Out = Option<bool>;
    const WHAT: &'static str = "webhook attempt";

    async fn write_batch(
        &self,
        rows: &[AttemptRow],
    ) -> Result<Vec<Result<Option<bool>, StoreError>>, StoreError> {
        let outcomes = self.store.record_attempts(rows).await?;
        Ok(outcomes.into_iter().map(Ok).collect())
    }

    async fn write_one(&self, row: &AttemptRow) -> Result<Option<bool>, StoreError> {
        let mut outcomes = self
            .store
            .record_attempts(std::slice::from_ref(row))
            .await?;
        Ok(outcomes.pop().flatten())
    }
}
