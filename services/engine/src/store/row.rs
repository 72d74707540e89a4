use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::JobStatus;

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub status: JobStatus,
    pub model_id: String,
    pub model_name: String,
    pub image_url: String,
    pub webhook_url: Option<String>,
    pub message: String,
    pub response: Option<serde_json::Value>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub processing_time: Option<f64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct JobRecord {
    id: Uuid,
    status: String,
    model_id: String,
    model_name: String,
    image_url: String,
    webhook_url: Option<String>,
    message: String,
    response: Option<serde_json::Value>,
    attempt: i32,
    max_attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    not_before: Option<DateTime<Utc>>,
    last_error: Option<String>,
    trace_id: Option<String>,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    processing_time: Option<f64>,
}

impl TryFrom<JobRecord> for Job {
    type Error = StoreError;

    fn try_from(r: JobRecord) -> Result<Self, StoreError> {
        let status = JobStatus::parse(&r.status).ok_or(StoreError::CorruptStatus(r.status))?;
        Ok(Job {
            id: r.id,
            status,
            model_id: r.model_id,
            model_name: r.model_name,
            image_url: r.image_url,
            webhook_url: r.webhook_url,
            message: r.message,
            response: r.response,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
            not_before: r.not_before,
            last_error: r.last_error,
            trace_id: r.trace_id,
            traceparent: r.traceparent,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            processing_time: r.processing_time,
        })
    }
}

/// One line of a job's event log.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct JobEventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub attempt: i32,
    pub actor: String,
    pub detail: Option<String>,
}
