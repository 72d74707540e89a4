//! What every handler shares: the store, the bus, the model registry and the relay waker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use foodseg_engine::netguard::NetPolicy;

use crate::auth::{AccessConfig, KeyRing, V1Owner};
use crate::limits::Limits;
use foodseg_engine::{Bus, Enqueuer, RelayWaker, Store};
use foodseg_models::SharedRegistry;

/// Longest a request waits on the database in all before answering 503.
pub const DB_DEADLINE: Duration = Duration::from_secs(5);

/// Shared state of the api. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// Writes plain enqueues in shared batches (group commit).
    pub enqueuer: Enqueuer,
    pub bus: Bus,
    /// The models the api accepts; replaced when the models directory changes.
    pub registry: Arc<SharedRegistry>,
    pub waker: RelayWaker,
    pub net_policy: NetPolicy,
    pub max_attempts: foodseg_engine::Attempt,
    /// Size cap and hard maximum age of `POST /v2/uploads` images.
    pub uploads: crate::upload::UploadLimits,
    /// The API keys the api accepts.
    pub keys: Arc<KeyRing>,
    /// The owner of jobs created through the keyless v1 routes (`FOODSEG_V1_OWNER`).
    pub v1_owner: Arc<V1Owner>,
    /// Who may reach what: required keys, v1 client addresses, trusted proxies.
    pub access: AccessConfig,
    /// Rate limits per caller and the cap on uploads in flight.
    pub limits: Arc<Limits>,
    /// How long idempotency keys are kept.
    pub idempotency_keep: Duration,
    /// Set once the migrations have been applied; until then requests get 503.
    pub schema_ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn schema_ready(&self) -> bool {
        self.schema_ready.load(Ordering::Acquire)
    }
}
