//! The row types of `jobs` and `job_events`, and [`query_job!`], the checked query that
//! reads whole `jobs` rows.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{ApiKeyId, Attempt, BatchId, Fence, JobId, JobStatus, Priority};

/// A row of `jobs`: a job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub status: JobStatus,
    /// The model identifier the job runs with (shown as `model_identifier`).
    pub model_id: String,
    /// Registry name of that model (the dispatch subject's last token).
    pub model_name: String,
    pub image_url: String,
    pub webhook_url: Option<String>,
    pub message: String,
    pub response: Option<serde_json::Value>,
    /// The current (or last) attempt; the fencing token of its lease.
    pub attempt: Attempt,
    /// The attempt budget: attempt `n` may run while `n <= max_attempts`.
    pub max_attempts: Attempt,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Earliest time a queued job may be claimed (retry backoff).
    pub not_before: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from the last claim to the finish.
    pub processing_time: Option<f64>,
    /// When the sweeper last wrote another dispatch message for this queued job.
    pub redispatched_at: Option<DateTime<Utc>>,
    pub redispatches: i32,
    /// The API key the job belongs to (`None`: no one's, a keyless v1 call).
    pub owner_key_id: Option<ApiKeyId>,
    /// The lane the job waits in.
    pub priority: Priority,
    /// The batch it came in, if any.
    pub batch_id: Option<BatchId>,
    /// The version (SHA-256 of the ONNX file, hex) of the model that wrote the result.
    pub model_version: Option<String>,
}

impl Job {
    /// The fence of the lease this job runs under, while it is running.
    pub fn fence(&self) -> Option<Fence> {
        match (&self.status, &self.lease_owner) {
            (JobStatus::Running, Some(owner)) => Some(Fence {
                job_id: self.id,
                attempt: self.attempt,
                owner: owner.clone(),
            }),
            _ => None,
        }
    }
}

/// A row of `job_events`: one transition of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobEventRow {
    pub id: i64,
    pub job_id: JobId,
    pub at: DateTime<Utc>,
    /// `None` for the enqueue.
    pub from_status: Option<JobStatus>,
    pub to_status: JobStatus,
    pub attempt: Attempt,
    /// Who made the change: `api`, a worker id, a scheduler id, `operator`.
    pub actor: String,
    pub detail: Option<String>,
}

/// `sqlx::query_as!(Job, …)` whose select list is every column of `jobs`, typed:
/// `query_job!("WITH … SELECT ", " FROM j", args…)` puts the column list between the two
/// literals. The `!`/`?` overrides keep nullability right when the rows come out of a
/// data-modifying CTE, which Postgres does not describe as precisely as a table.
macro_rules! query_job {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::store::Job,
            $before
                + r#"id AS "id!: crate::domain::JobId",
                   status AS "status!: crate::domain::JobStatus",
                   model_id AS "model_id!", model_name AS "model_name!",
                   image_url AS "image_url!", webhook_url AS "webhook_url?",
                   message AS "message!", response AS "response?",
                   attempt AS "attempt!: crate::domain::Attempt",
                   max_attempts AS "max_attempts!: crate::domain::Attempt",
                   lease_owner AS "lease_owner?", lease_expires_at AS "lease_expires_at?",
                   not_before AS "not_before?", last_error AS "last_error?",
                   trace_id AS "trace_id?", traceparent AS "traceparent?",
                   created_at AS "created_at!", updated_at AS "updated_at!",
                   started_at AS "started_at?", finished_at AS "finished_at?",
                   processing_time AS "processing_time?",
                   redispatched_at AS "redispatched_at?", redispatches AS "redispatches!",
                   owner_key_id AS "owner_key_id?: crate::domain::ApiKeyId",
                   priority AS "priority!: crate::domain::Priority",
                   batch_id AS "batch_id?: crate::domain::BatchId",
                   model_version AS "model_version?""#
                + $after
            $(, $arg)*
        )
    };
}
