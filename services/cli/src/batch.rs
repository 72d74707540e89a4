//! Batches (`POST /v2/jobs`) for images already served over HTTP: each file's URL under a
//! base URL, a stable idempotency key per job (so sending a directory again replays its
//! jobs instead of doubling them), the request body, and the answers read back.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::document::JobDocument;
use crate::error::CliError;

/// Most jobs the API takes in one batch.
pub const MAX_JOBS: usize = 1000;

/// The lane the jobs wait in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// A person waits for the results.
    Interactive,
    /// A backfill: runs behind the interactive jobs.
    Bulk,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Bulk => "bulk",
        }
    }
}

/// Checks `--base-url`: an http(s) URL that can take a path.
pub fn base_url(raw: &str) -> Result<Url, CliError> {
    let bad = |reason: &str| CliError::BadBaseUrl {
        url: raw.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad("it must be an http(s) URL"));
    }
    if url.fragment().is_some() {
        return Err(bad("it must not have a #fragment"));
    }
    Ok(url)
}

/// The URL of the file `name` under `base`, which is taken as a directory whether or not
/// it ends in `/`; the name is one percent-encoded path segment, and the base's query (a
/// signed URL's) is kept.
pub fn file_url(base: &Url, name: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(name);
    }
    url
}

/// A key that names one job (its image URL, model and webhook) and nothing else, the same
/// on every run: `cli-` and the first 128 bits of the SHA-256 of the three, in hex.
pub fn idempotency_key(
    image_url: &str,
    model_id: Option<&str>,
    webhook_url: Option<&str>,
) -> String {
    let mut hash = Sha256::new();
    for part in [Some(image_url), model_id, webhook_url] {
        match part {
            // Each part with its length, so that no two triples hash the same bytes.
            Some(text) => {
                hash.update([1]);
                hash.update((text.len() as u64).to_le_bytes());
                hash.update(text.as_bytes());
            }
            None => hash.update([0]),
        }
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("cli-{hex}")
}

/// One job of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchJob {
    pub image_url: String,
    pub model_id: Option<String>,
    pub webhook_url: Option<String>,
    pub idempotency_key: String,
}

impl BatchJob {
    pub fn new(image_url: Url, model_id: Option<&str>, webhook_url: Option<&str>) -> Self {
        let image_url = String::from(image_url);
        BatchJob {
            idempotency_key: idempotency_key(&image_url, model_id, webhook_url),
            image_url,
            model_id: model_id.map(str::to_string),
            webhook_url: webhook_url.map(str::to_string),
        }
    }
}

/// The body of `POST /v2/jobs`.
pub fn request_body(jobs: &[BatchJob], priority: Priority) -> serde_json::Value {
    serde_json::json!({ "priority": priority.as_str(), "jobs": jobs })
}

/// The answer to `POST /v2/jobs`: the batch and its jobs' documents, in the order sent.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchAnswer {
    pub batch_id: String,
    pub jobs: Vec<JobDocument>,
}

/// `GET /v2/batches/{batch_id}`: where a batch's jobs stand.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchProgress {
    pub batch_id: String,
    pub size: u64,
    pub counts: BatchCounts,
    #[serde(default)]
    pub eta_seconds: Option<f64>,
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// A batch's jobs per state.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchCounts {
    #[serde(rename = "MFR.Job.QUEUED", default)]
    pub queued: u64,
    #[serde(rename = "MFR.Job.IN_PROGRESS", default)]
    pub in_progress: u64,
    #[serde(rename = "MFR.Job.SUCCESS", default)]
    pub success: u64,
    #[serde(rename = "MFR.Job.ERROR", default)]
    pub error: u64,
}

impl BatchProgress {
    /// Jobs finished, either way.
    pub fn done(&self) -> u64 {
        self.counts.success + self.counts.error
    }

    /// Whether no job of the batch is queued or running any more.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some() || self.counts.queued + self.counts.in_progress == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(raw: &str) -> Url {
        base_url(raw).unwrap()
    }

    #[test]
    fn file_names_are_joined_as_one_encoded_segment() {
        for b in [
            "https://img.example.org/meals",
            "https://img.example.org/meals/",
        ] {
            assert_eq!(
                file_url(&base(b), "1001.jpg").as_str(),
                "https://img.example.org/meals/1001.jpg"
            );
        }
        assert_eq!(
            file_url(&base("http://127.0.0.1:8080"), "a.png").as_str(),
            "http://127.0.0.1:8080/a.png"
        );
        assert_eq!(
            file_url(&base("https://h.example/p/"), "my lunch #2 50%?.jpg").as_str(),
            "https://h.example/p/my%20lunch%20%232%2050%25%3F.jpg"
        );
        assert_eq!(
            file_url(&base("https://h.example/p/"), "a/b.jpg").as_str(),
            "https://h.example/p/a%2Fb.jpg"
        );
        assert_eq!(
            file_url(&base("https://h.example/p/"), "café.jpg").as_str(),
            "https://h.example/p/caf%C3%A9.jpg"
        );
        // A signed base keeps its query.
        assert_eq!(
            file_url(&base("https://h.example/c?sig=abc"), "a.jpg").as_str(),
            "https://h.example/c/a.jpg?sig=abc"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for raw in [
            "img.example.org/meals",
            "ftp://img.example.org/",
            "mailto:x@y",
            "https://h/p#x",
        ] {
            assert!(
                matches!(base_url(raw), Err(CliError::BadBaseUrl { .. })),
                "{raw}"
            );
        }
    }

    #[test]
    fn keys_are_stable_and_name_the_whole_job() {
        let key = idempotency_key("https://h/a.jpg", Some("124096"), None);
        assert_eq!(
            key,
            idempotency_key("https://h/a.jpg", Some("124096"), None)
        );
        assert_eq!(key.len(), 4 + 32);
        assert!(key.starts_with("cli-"));
        let others = [
            idempotency_key("https://h/b.jpg", Some("124096"), None),
            idempotency_key("https://h/a.jpg", None, None),
            idempotency_key("https://h/a.jpg", Some("124096"), Some("https://w/")),
            idempotency_key("https://h/a.jpg", None, Some("124096")),
        ];
        for other in &others {
            assert_ne!(&key, other);
        }
        // The hash is fixed (not std's, which may change): a rerun by another build of
        // the CLI replays too.
        assert_eq!(
            idempotency_key("https://h/a.jpg", None, None),
            "cli-02c607ca10eb5dd2d1428288ce47607a"
        );
    }

    #[test]
    fn the_body_holds_every_job_and_the_priority() {
        let jobs = [
            BatchJob::new(
                file_url(&base("https://h.example/p"), "a b.jpg"),
                Some("124096"),
                Some("https://hooks.example/x"),
            ),
            BatchJob::new(file_url(&base("https://h.example/p"), "c.png"), None, None),
        ];
        let body = request_body(&jobs, Priority::Bulk);
        assert_eq!(body["priority"], "bulk");
        assert_eq!(body["jobs"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            body["jobs"][0]["image_url"],
            "https://h.example/p/a%20b.jpg"
        );
        assert_eq!(body["jobs"][0]["model_id"], "124096");
        assert_eq!(body["jobs"][0]["webhook_url"], "https://hooks.example/x");
        assert_eq!(
            body["jobs"][0]["idempotency_key"],
            idempotency_key(
                "https://h.example/p/a%20b.jpg",
                Some("124096"),
                Some("https://hooks.example/x")
            )
        );
        assert!(body["jobs"][1]["model_id"].is_null() && body["jobs"][1]["webhook_url"].is_null());
        assert_eq!(
            request_body(&jobs[1..], Priority::Interactive)["priority"],
            "interactive"
        );
    }

    #[test]
    fn progress_is_read_from_the_v2_answer() {
        let p: BatchProgress = serde_json::from_value(serde_json::json!({
            "batch_id": "b", "priority": "bulk", "size": 10,
            "created_at": "2026-12-06T10:00:00Z",
            "counts": {"MFR.Job.QUEUED": 4, "MFR.Job.IN_PROGRESS": 1,
                       "MFR.Job.SUCCESS": 3, "MFR.Job.ERROR": 2},
            "eta_seconds": 12.5, "finished_at": null, "cancelled_at": null
        }))
        .unwrap();
        assert_eq!((p.done(), p.size), (5, 10));
        assert!(!p.is_finished());
        assert_eq!(p.eta_seconds, Some(12.5));
        let done = BatchProgress {
            counts: BatchCounts {
                success: 10,
                ..BatchCounts::default()
            },
            ..p
        };
        assert!(done.is_finished());
    }
}
