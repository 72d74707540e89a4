//! What travels on NATS: ids and trace context only. Postgres holds everything else.

use serde::{Deserialize, Serialize};

use crate::domain::{Attempt, JobId, JobStatus};

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
