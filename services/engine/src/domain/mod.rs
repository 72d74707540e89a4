//! The job domain: ids, states, legal transitions, the attempt budget and retry policy,
//! the states of webhook deliveries and the health of their endpoints, the priority lanes, and the scopes of API keys. No I/O here; the enums map one to one onto the
//! Postgres enum types of the same names (`job_status`, `delivery_status`,
//! `attempt_outcome`), and the ids onto their columns.

mod delivery;
mod endpoint;
mod ids;
mod job;
mod keys;
mod priority;

pub use delivery::{AttemptOutcome, DeliveryStatus};
pub use endpoint::{
    AfterFailure, DueEndpoint, EndpointAction, EndpointHealth, EndpointLimits, EndpointState,
    Health, HealthPolicy, MAX_RETRY_AFTER_PAUSE, Rate, RateError, Take, after_failure, take,
};
pub use ids::{Attempt, BatchId, DeliveryId, Fence, JobId};
pub use job::{IllegalTransition, JobStatus, RetryPolicy, Transition, next_status};
pub use keys::{ApiKeyId, Scope};
pub use priority::{LaneTurns, Priority, UnknownPriority};
