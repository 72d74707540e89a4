//! The job domain: ids, states, legal transitions, the attempt budget and retry policy,
//! and the states of webhook deliveries. No I/O here; the enums map one to one onto the
//! Postgres enum types of the same names (`job_status`, `delivery_status`,
//! `attempt_outcome`), and the ids onto their columns.

mod delivery;
mod ids;
mod job;

pub use delivery::{AttemptOutcome, DeliveryStatus};
pub use ids::{Attempt, DeliveryId, Fence, JobId};
pub use job::{IllegalTransition, JobStatus, RetryPolicy, Transition, next_status};
