//! Ids that cannot be mixed up, and the fence a worker's writes carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job's id: its `Nats-Msg-Id`, its fencing key and the base of its `webhook-id`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct JobId(Uuid);

impl JobId {
    /// A new, time-ordered id (UUIDv7): jobs sort by creation in the primary key.
    pub fn new() -> Self {
        JobId(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        JobId(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The id without dashes (as in `webhook-id`s).
    pub fn simple(&self) -> uuid::fmt::Simple {
        self.0.simple()
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(JobId)
    }
}

impl From<Uuid> for JobId {
    fn from(id: Uuid) -> Self {
        JobId(id)
    }
}

/// A webhook delivery's id (one per `webhook-id`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct DeliveryId(Uuid);

impl DeliveryId {
    pub fn new() -> Self {
        DeliveryId(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for DeliveryId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Uuid> for DeliveryId {
    fn from(id: Uuid) -> Self {
        DeliveryId(id)
    }
}

/// A batch's id (`POST /v2/jobs`): time-ordered, like job ids.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct BatchId(Uuid);

impl BatchId {
    pub fn new() -> Self {
        BatchId(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for BatchId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for BatchId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(BatchId)
    }
}

/// An attempt number (1-based once claimed; 0 before the first claim). Also used for a
/// job's attempt budget, `max_attempts`: attempt `n` may run while `n <= max_attempts`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Attempt(i32);

impl Attempt {
    /// No attempt made yet.
    pub const NONE: Attempt = Attempt(0);
    pub const FIRST: Attempt = Attempt(1);

    pub const fn new(n: i32) -> Self {
        Attempt(n)
    }

    pub const fn get(self) -> i32 {
        self.0
    }

    /// The attempt after this one.
    pub const fn next(self) -> Self {
        Attempt(self.0.saturating_add(1))
    }

    /// Whether the job that has just run this attempt may run another within the budget
    /// `max_attempts`. The one place the attempt limit is decided.
    pub fn has_next_within(self, max_attempts: Attempt) -> bool {
        self.0 < max_attempts.0
    }

    /// As an unsigned count (negative values, which the schema forbids, count as 0).
    pub fn as_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(0)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a worker's writes to a running job are fenced on: the job, the attempt it
/// claimed, and its own name as lease owner. A write whose fence no longer matches the
/// row (the lease lapsed and the job was re-driven, or it finished) changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub job_id: JobId,
    pub attempt: Attempt,
    pub owner: String,
}

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} attempt {} ({})",
            self.job_id, self.attempt, self.owner
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_print_and_serialize_as_plain_uuids() {
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert_eq!(format!(" {id} ").parse::<JobId>().unwrap(), id);
        assert!("not-a-uuid".parse::<JobId>().is_err());
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::json!(id.to_string())
        );
    }

    #[test]
    fn the_attempt_budget_allows_exactly_max_attempts() {
        let max = Attempt::new(3);
        assert!(Attempt::FIRST.has_next_within(max));
        assert!(Attempt::new(2).has_next_within(max));
        assert!(!Attempt::new(3).has_next_within(max));
        assert!(!Attempt::new(4).has_next_within(max));
        assert_eq!(Attempt::NONE.next(), Attempt::FIRST);
        assert_eq!(Attempt::new(-1).as_u32(), 0);
    }
}
