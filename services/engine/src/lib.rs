//! The job engine of foodseg: the job domain (states, legal transitions, retry policy —
//! no I/O), the Postgres store that is the source of truth for jobs, and the names and
//! messages of the NATS JetStream dispatch. The api, worker and scheduler are built on it.

pub mod backoff;
pub mod bus;
mod chain;
pub mod document;
pub mod domain;
pub mod enqueuer;
pub mod finisher;
mod group;
pub mod message;
pub mod netguard;
pub mod recorder;
pub mod relay;
pub mod store;
pub mod subjects;

pub use backoff::{Backoff, Retries};
pub use bus::{Bus, BusError, JobsStream, Published};
pub use chain::error_chain;
pub use document::JobDocument;
pub use domain::{
    ApiKeyId, Attempt, AttemptOutcome, BatchId, DeliveryId, DeliveryStatus, Fence, JobId,
    JobStatus, Priority, RetryPolicy, Scope, Transition,
};
pub use enqueuer::Enqueuer;
pub use finisher::Finisher;
pub use group::GroupConfig;
pub use recorder::Recorder;
pub use relay::{Relay, RelayConfig, RelayWaker};
pub use store::{Job, Store, StoreConfig, StoreError};
pub use subjects::Subjects;
