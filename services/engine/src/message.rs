//! What travels on NATS: ids and trace context only. Postgres holds everything else.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Header carrying the W3C trace context of the job.
pub const TRACEPARENT: &str = "traceparent";

/// A dispatch message: "job `job_id` may be ready to run".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: Uuid,
}

/// A lifecycle event: "job `job_id` reached `status`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: Uuid,
    /// `succeeded` or `failed`.
    pub status: String,
    pub attempt: i32,
}

/// The `Nats-Msg-Id` of a job's first dispatch: the job id itself.
pub fn dispatch_msg_id(job_id: Uuid) -> String {
    job_id.to_string()
}

/// The `Nats-Msg-Id` of a later dispatch (retry, re-drive, release), unique per attempt.
pub fn redispatch_msg_id(job_id: Uuid, attempt: i32) -> String {
    format!("{job_id}.{attempt}")
}
