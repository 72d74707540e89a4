//! The v1 job document as a client reads it, kept lenient about extra fields.

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Where a job is in its life, from its `status` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Queued,
    InProgress,
    Success,
    Error,
    /// A status string this client does not know; treated as still running.
    Other(String),
}

impl Status {
    pub fn parse(s: &str) -> Self {
        match s {
            "MFR.Job.QUEUED" => Status::Queued,
            "MFR.Job.IN_PROGRESS" => Status::InProgress,
            "MFR.Job.SUCCESS" => Status::Success,
            "MFR.Job.ERROR" => Status::Error,
            other => Status::Other(other.to_string()),
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Status::Success | Status::Error)
    }

    /// Short word for tables and spinners.
    pub fn label(&self) -> &str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in progress",
            Status::Success => "success",
            Status::Error => "error",
            Status::Other(s) => s,
        }
    }
}

/// The request part of the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub image_url: String,
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// One job document as served by `/enqueue` and `/status/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDocument {
    pub job_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub processing_time: Option<f64>,
    pub status: String,
    pub message: String,
    pub request: JobRequest,
    pub response: serde_json::Value,
    pub model_identifier: String,
    pub api_version: String,
}

impl JobDocument {
    pub fn status(&self) -> Status {
        Status::parse(&self.status)
    }

    /// The detected items; empty unless the job succeeded.
    pub fn items(&self) -> Result<Vec<Item>, CliError> {
        if self.status() != Status::Success || self.response.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(self.response.clone()).map_err(|source| CliError::BadItems {
            job_id: self.job_id.clone(),
            source,
        })
    }
}

/// One detected item (COCO-style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    #[serde(default)]
    pub image_id: String,
    pub category_id: i64,
    pub category_name: String,
    pub score: f64,
    /// `[x, y, width, height]` in original-image pixels.
    pub bbox: [f64; 4],
    pub area: f64,
    #[serde(default)]
    pub iscrowd: u8,
    /// One list of `[x, y]` points per connected part.
    pub polygons: Vec<Vec<[f64; 2]>>,
    /// `[width, height]` of the image the coordinates refer to.
    pub size: [u32; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> serde_json::Value {
        serde_json::json!({
            "job_id": "0193f6c2-0000-7000-8000-000000000001",
            "created_at": "2026-11-28T10:00:00.123456Z",
            "updated_at": "2026-11-28T10:00:01.523456Z",
            "processing_time": 1.4,
            "status": "MFR.Job.SUCCESS",
            "message": "Job finished",
            "request": { "image_url": "http://x/fruits.jpg", "webhook_url": null },
            "response": [{
                "id": 0, "image_id": "fruits.jpg", "category_id": 55, "category_name": "orange",
                "score": 0.91, "bbox": [10.0, 20.0, 30.0, 40.0], "area": 900, "iscrowd": 0,
                "polygons": [[[10.0, 20.0], [40.0, 20.0], [40.0, 60.0]]], "size": [100, 80]
            }],
            "model_identifier": "124096",
            "api_version": "v1.0"
        })
    }

    #[test]
    fn parses_a_successful_document() {
        let doc: JobDocument = serde_json::from_value(sample()).unwrap();
        assert_eq!(doc.status(), Status::Success);
        let items = doc.items().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].category_name, "orange");
        assert_eq!(items[0].size, [100, 80]);
    }

    #[test]
    fn error_documents_have_no_items() {
        let mut v = sample();
        v["status"] = "MFR.Job.ERROR".into();
        v["response"] = serde_json::json!({});
        let doc: JobDocument = serde_json::from_value(v).unwrap();
        assert!(doc.status().is_terminal());
        assert!(doc.items().unwrap().is_empty());
    }

    #[test]
    fn malformed_items_are_an_error_not_a_panic() {
        let mut v = sample();
        v["response"] = serde_json::json!([{ "id": "zero" }]);
        let doc: JobDocument = serde_json::from_value(v).unwrap();
        assert!(matches!(doc.items(), Err(CliError::BadItems { .. })));
    }

    #[test]
    fn unknown_status_is_not_terminal() {
        let s = Status::parse("MFR.Job.PAUSED");
        assert!(!s.is_terminal());
        assert_eq!(s.label(), "MFR.Job.PAUSED");
    }
}
