//! What travels on NATS: ids and trace context only. Postgres holds everything else.
//!
//! Every `Nats-Msg-Id` the engine writes to the outbox is built here and bound into the
//! statement that writes it. JetStream drops a second message with an id it has seen
//! within its duplicate window, so an id names one message: the relay publishing the
//! same outbox row twice is deduplicated, and a message that must go out again (a new
//! attempt, a republish, a resubmit) gets a new id.

use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::domain::{Attempt, JobId, JobStatus, Transition};

/// Header carrying the W3C trace context of the job.
pub const TRACEPARENT: &str = "traceparent";

/// A dispatch message: "job `job_id` may be ready to run".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: JobId,
}

/// A lifecycle event: "job `job_id` reached `status`" (`succeeded` or `failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    pub status: JobStatus,
    pub attempt: Attempt,
}

/// The `Nats-Msg-Id` of a job's first dispatch: the job id itself.
pub fn dispatch_msg_id(job_id: JobId) -> String {
    job_id.to_string()
}

/// The `Nats-Msg-Id` of a later dispatch (retry, re-drive, release), unique per attempt.
pub fn redispatch_msg_id(job_id: JobId, attempt: Attempt) -> String {
    format!("{job_id}.{attempt}")
}

/// The `Nats-Msg-Id` of a republished dispatch (the sweeper found the job's message lost):
/// new each time.
pub fn republish_msg_id(job_id: JobId) -> String {
    format!("{job_id}.republish.{}", Uuid::new_v4().simple())
}

/// The `Nats-Msg-Id` of the dispatch of a job an operator resubmitted: new each time.
pub fn resubmit_msg_id(job_id: JobId) -> String {
    format!("{job_id}.resubmit.{}", Uuid::new_v4().simple())
}

/// The `Nats-Msg-Id` of the finished-job message of a running attempt.
pub fn finished_msg_id(job_id: JobId, status: JobStatus, attempt: Attempt) -> String {
    format!("{job_id}.{status}.{attempt}")
}

/// The `Nats-Msg-Id` of the finished-job message of a job that ended while queued
/// (`transition` is cancel or expire). A resubmitted job can end this way again with the
/// same attempt number, so the id is new each time.
pub fn ended_msg_id(job_id: JobId, transition: Transition) -> String {
    format!(
        "{job_id}.{}.{}",
        transition.as_str(),
        Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_a_job_sends_has_its_own_id() {
        let job = JobId::new();
        let first = Attempt::FIRST;
        let ids = [
            dispatch_msg_id(job),
            redispatch_msg_id(job, first),
            republish_msg_id(job),
            republish_msg_id(job),
            resubmit_msg_id(job),
            resubmit_msg_id(job),
            finished_msg_id(job, JobStatus::Succeeded, first),
            finished_msg_id(job, JobStatus::Failed, first),
            ended_msg_id(job, Transition::Cancel),
            ended_msg_id(job, Transition::Cancel),
        ];
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        assert!(ids.iter().all(|id| id.starts_with(&job.to_string())));
    }
}
