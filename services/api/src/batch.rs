//! Parsing and validating the `POST /v2/jobs` body: a batch of up to 1,000 jobs. Pure:
//! no I/O. Every job is checked, and all the invalid ones are named (by index and field)
//! in one answer, so a client fixes its batch in one round; nothing is written unless
//! every job is valid.

use std::collections::HashMap;

use foodseg_engine::Priority;
use foodseg_engine::netguard::NetPolicy;
use salvo::oapi::ToSchema;
use serde_json::Value;

use crate::enqueue::{EnqueueRequest, kind, optional_string, parse_fields};
use crate::error::{ApiError, ItemError};
use crate::idempotency::check_key;

/// Most jobs in one batch.
pub const MAX_JOBS: usize = 1000;
/// Largest accepted batch body: a thousand jobs with long URLs and keys.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// One job of a batch: the `/enqueue` body's fields and its own idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ToSchema)]
#[salvo(schema(name = "BatchJobRequest"))]
pub struct BatchJob {
    /// http(s) URL of the image, at most 2,048 characters.
    pub image_url: String,
    /// A model name or alias; null or absent for the default model.
    pub model_id: Option<String>,
    /// http(s) URL that receives the finished job document; null or absent for none.
    pub webhook_url: Option<String>,
    /// Works as the `Idempotency-Key` header does for `/enqueue`, for this job (1–255
    /// printable ASCII characters, unique within the batch).
    pub idempotency_key: Option<String>,
}

/// The body of `POST /v2/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ToSchema)]
#[salvo(schema(name = "BatchRequest"))]
pub struct BatchRequest {
    /// 1 to 1,000 jobs.
    pub jobs: Vec<BatchJob>,
    /// `interactive` (default: a person waits for these results) or `bulk` (a backfill:
    /// runs behind interactive jobs, the keys that send bulk jobs taking turns).
    pub priority: Option<String>,
}

/// A checked batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub priority: Priority,
    /// Each job with its idempotency key, in the order sent.
    pub jobs: Vec<(EnqueueRequest, Option<String>)>,
}

/// Parses and checks a raw body; `policy` refuses IP-literal hosts that are not public.
pub fn parse(body: &[u8], policy: &NetPolicy) -> Result<Batch, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(ApiError::NotAnObject(kind(&value)));
    };
    let priority = match optional_string("priority", map.get("priority"))? {
        None => Priority::Interactive,
        Some(p) => p.parse().map_err(|e| ApiError::InvalidField {
            field: "priority",
            reason: format!("{e}, got {p:?}"),
        })?,
    };
    let items = match map.get("jobs") {
        None | Some(Value::Null) => return Err(ApiError::MissingField { field: "jobs" }),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ApiError::InvalidType {
                field: "jobs",
                expected: "an array of jobs",
                got: kind(other),
            });
        }
    };
    if items.is_empty() || items.len() > MAX_JOBS {
        return Err(ApiError::InvalidField {
            field: "jobs",
            reason: format!("must hold 1 to {MAX_JOBS} jobs, got {}", items.len()),
        });
    }
    let mut jobs = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        match job(item, policy) {
            Ok((request, key)) => {
                if let Some(key) = &key
                    && let Some(first) = keys.insert(key.clone(), index)
                {
                    errors.push(ItemError {
                        index,
                        code: "duplicate_idempotency_key".into(),
                        field: Some("idempotency_key".into()),
                        message: format!("idempotency_key repeats the key of job {first}"),
                    });
                }
                jobs.push((request, key));
            }
            Err(e) => errors.push(ItemError::of(index, &e)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidItems(errors));
    }
    Ok(Batch { priority, jobs })
}

/// One job of the batch.
fn job(item: &Value, policy: &NetPolicy) -> Result<(EnqueueRequest, Option<String>), ApiError> {
    let Value::Object(map) = item else {
        return Err(ApiError::InvalidType {
            field: "jobs",
            expected: "an object",
            got: kind(item),
        });
    };
    let request = parse_fields(map, policy)?;
    let key = match map.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => {
            check_key(key).map_err(|e| ApiError::InvalidField {
                field: "idempotency_key",
                reason: e.to_string().replacen("Idempotency-Key header ", "", 1),
            })?;
            Some(key.clone())
        }
        Some(other) => {
            return Err(ApiError::InvalidType {
                field: "idempotency_key",
                expected: "a string or null",
                got: kind(other),
            });
        }
    };
    Ok((request, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(body: &str) -> Result<Batch, ApiError> {
        parse(body.as_bytes(), &NetPolicy::default())
    }

    fn job_json(n: usize) -> String {
        format!(r#"{{"image_url":"https://img.example.org/{n}.jpg","idempotency_key":"k{n}"}}"#)
    }

    #[test]
    fn accepts_a_batch_in_order() {
        let jobs: Vec<String> = (0..3).map(job_json).collect();
        let b = p(&format!(
            r#"{{"jobs":[{}],"priority":"bulk"}}"#,
            jobs.join(",")
        ))
        .unwrap();
        assert_eq!(b.priority, Priority::Bulk);
        assert_eq!(b.jobs.len(), 3);
        assert_eq!(b.jobs[2].0.image_url, "https://img.example.org/2.jpg");
        assert_eq!(b.jobs[2].1.as_deref(), Some("k2"));
        let b = p(r#"{"jobs":[{"image_url":"https://x.org/a.jpg"}]}"#).unwrap();
        assert_eq!(b.priority, Priority::Interactive);
        assert_eq!(b.jobs[0].1, None);
    }

    #[test]
    fn names_every_bad_job_by_index_and_field() {
        let body = r#"{"jobs":[
            {"image_url":"https://x.org/a.jpg"},
            {"image_url":"ftp://x.org/a.jpg"},
            {"image_url":"https://x.org/b.jpg","webhook_url":""},
            7,
            {"image_url":"https://x.org/c.jpg","idempotency_key":" k"},
            {"image_url":"https://x.org/d.jpg","idempotency_key":"same"},
            {"image_url":"https://x.org/e.jpg","idempotency_key":"same"},
            {}
        ]}"#;
        let Err(ApiError::InvalidItems(items)) = p(body) else {
            panic!("expected invalid items")
        };
        let got: Vec<(usize, &str, Option<&str>)> = items
            .iter()
            .map(|i| (i.index, i.code.as_str(), i.field.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "invalid_url", Some("image_url")),
                (2, "empty_field", Some("webhook_url")),
                (3, "invalid_type", Some("jobs")),
                (4, "invalid_field", Some("idempotency_key")),
                (6, "duplicate_idempotency_key", Some("idempotency_key")),
                (7, "missing_field", Some("image_url")),
            ]
        );
        assert!(items[4].message.contains("job 5"), "{}", items[4].message);
        let e = ApiError::InvalidItems(items);
        assert_eq!(e.status(), salvo::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body().error.items.map(|i| i.len()), Some(6));
    }

    #[test]
    fn refuses_bad_envelopes() {
        let code = |body: &str| {
            let e = p(body).unwrap_err();
            (e.code(), e.body().error.field)
        };
        assert_eq!(code("[]"), ("invalid_json", None));
        assert_eq!(code("{}"), ("missing_field", Some("jobs".into())));
        assert_eq!(
            code(r#"{"jobs":{}}"#),
            ("invalid_type", Some("jobs".into()))
        );
        assert_eq!(
            code(r#"{"jobs":[]}"#),
            ("invalid_field", Some("jobs".into()))
        );
        let many: Vec<String> = (0..=MAX_JOBS).map(job_json).collect();
        assert_eq!(
            code(&format!(r#"{{"jobs":[{}]}}"#, many.join(","))),
            ("invalid_field", Some("jobs".into()))
        );
        assert_eq!(
            code(r#"{"jobs":[{"image_url":"https://x.org/a.jpg"}],"priority":"urgent"}"#),
            ("invalid_field", Some("priority".into()))
        );
        assert_eq!(
            code(r#"{"jobs":[{"image_url":"https://x.org/a.jpg"}],"priority":1}"#),
            ("invalid_type", Some("priority".into()))
        );
    }
}
