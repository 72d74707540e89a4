//! The v1 job document: the exact shape MFR reads from `/enqueue`, `/status` and webhooks.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::JobStatus;
use crate::store::Job;

/// Contract version written into every document.
pub const API_VERSION: &str = "v1.0";

/// The request as the client sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(salvo::oapi::ToSchema))]
#[cfg_attr(feature = "openapi", salvo(schema(name = "JobRequest")))]
pub struct JobRequest {
    pub image_url: String,
    pub webhook_url: Option<String>,
}

/// The v1 job document that `/enqueue`, `/status` and webhooks answer. Field names and
/// status strings are the contract.
// With the `openapi` feature this one type is also the document's schema in the api's
// OpenAPI document: the contract is defined once on the server side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(salvo::oapi::ToSchema))]
#[cfg_attr(feature = "openapi", salvo(schema(name = "JobDocument")))]
pub struct JobDocument {
    /// Opaque job id.
    pub job_id: String,
    /// RFC 3339 with microseconds, UTC.
    pub created_at: String,
    /// RFC 3339 with microseconds, UTC.
    pub updated_at: String,
    /// Seconds; null until the job finished.
    pub processing_time: Option<f64>,
    /// `MFR.Job.QUEUED` | `MFR.Job.IN_PROGRESS` | `MFR.Job.SUCCESS` | `MFR.Job.ERROR`.
    pub status: String,
    /// Human readable; on ERROR it says why.
    pub message: String,
    pub request: JobRequest,
    /// SUCCESS: list of COCO-style items; ERROR: `{}`; otherwise null.
    pub response: serde_json::Value,
    /// The model_id the job runs with.
    pub model_identifier: String,
    /// Contract version, `v1.0`.
    pub api_version: String,
}

/// A job as the v2 routes answer it: the v1 document, unchanged, and the version of the
/// model that wrote its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(salvo::oapi::ToSchema))]
#[cfg_attr(feature = "openapi", salvo(schema(name = "V2JobDocument")))]
pub struct V2JobDocument {
    #[serde(flatten)]
    pub document: JobDocument,
    /// SHA-256 (hex) of the ONNX file of the model that wrote the result; null until then.
    pub model_version: Option<String>,
}

impl From<&Job> for V2JobDocument {
    fn from(job: &Job) -> Self {
        V2JobDocument {
            document: JobDocument::from(job),
            model_version: job.model_version.clone(),
        }
    }
}

/// Timestamps as the contract shows them: RFC 3339, microseconds, `Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl From<&Job> for JobDocument {
    fn from(job: &Job) -> Self {
        let response = match job.status {
            JobStatus::Succeeded => job
                .response
                .clone()
                .unwrap_or_else(|| serde_json::Value::Array(Vec::new())),
            JobStatus::Failed => serde_json::Value::Object(Default::default()),
            JobStatus::Queued | JobStatus::Running => serde_json::Value::Null,
        };
        JobDocument {
            job_id: job.id.to_string(),
            created_at: format_time(job.created_at),
            updated_at: format_time(job.updated_at),
            processing_time: if job.status.is_terminal() {
                job.processing_time
            } else {
                None
            },
            status: job.status.mfr_status().to_string(),
            message: job.message.clone(),
            request: JobRequest {
                image_url: job.image_url.clone(),
                webhook_url: job.webhook_url.clone(),
            },
            response,
            model_identifier: job.model_id.clone(),
            api_version: API_VERSION.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    use crate::domain::{Attempt, JobId};

    fn job(status: JobStatus) -> Job {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        Job {
            id: JobId::from(uuid::Uuid::nil()),
            status,
            model_id: "124096".into(),
            model_name: "m".into(),
            image_url: "https://x/a.jpg".into(),
            webhook_url: None,
            message: "m".into(),
            response: Some(serde_json::json!([{"id": 0}])),
            attempt: Attempt::new(1),
            max_attempts: Attempt::new(4),
            lease_owner: None,
            lease_expires_at: None,
            not_before: None,
            last_error: None,
            trace_id: None,
            traceparent: None,
            created_at: t,
            updated_at: t,
            started_at: None,
            finished_at: None,
            processing_time: Some(1.5),
            redispatched_at: None,
            redispatches: 0,
            owner_key_id: None,
            priority: Default::default(),
            batch_id: None,
            model_version: None,
        }
    }

    #[test]
    fn document_follows_the_contract() {
        let doc = serde_json::to_value(JobDocument::from(&job(JobStatus::Queued))).unwrap();
        assert_eq!(doc["created_at"], "2026-11-28T10:00:00.123456Z");
        assert_eq!(doc["status"], "MFR.Job.QUEUED");
        assert_eq!(doc["response"], serde_json::Value::Null);
        assert_eq!(doc["processing_time"], serde_json::Value::Null);
        assert_eq!(doc["model_identifier"], "124096");
        assert_eq!(doc["api_version"], "v1.0");
        assert_eq!(doc["request"]["webhook_url"], serde_json::Value::Null);
        let keys: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 10, "{keys:?}");
    }

    #[test]
    fn finished_documents_carry_response() {
        let ok = JobDocument::from(&job(JobStatus::Succeeded));
        assert_eq!(ok.response, serde_json::json!([{"id": 0}]));
        assert_eq!(ok.processing_time, Some(1.5));
        let err = JobDocument::from(&job(JobStatus::Failed));
        assert_eq!(err.response, serde_json::json!({}));
        assert_eq!(err.status, "MFR.Job.ERROR");
    }
}
