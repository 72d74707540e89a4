//! HTTP client for the foodseg API: the v1 contract, the v2 upload endpoint when the
//! server has one, and v2 batches.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::batch::{BatchAnswer, BatchJob, BatchProgress, Priority, request_body};
use crate::document::JobDocument;
use crate::error::{CliError, ItemProblem};

/// Path of the upload endpoint (raw image bytes in the body, `model_id` in the query).
pub const UPLOAD_PATH: &str = "v2/uploads";

/// Talks to one API base URL.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    /// An API key, sent as `Authorization: Bearer` (needed for `/v2` when the server
    /// requires keys).
    key: Option<String>,
}

/// Tries of a request the server answered 429 before giving up.
const TRIES_WHEN_LIMITED: u32 = 6;

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    message: String,
    /// The jobs of a refused batch that are wrong (`invalid_items`).
    #[serde(default)]
    items: Vec<ItemProblem>,
}

impl ApiClient {
    pub fn new(base: &str) -> Result<Self, CliError> {
        // A base without a trailing slash would lose its last path segment on join.
        let with_slash = if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        let base = Url::parse(&with_slash).map_err(|source| CliError::BadApiUrl {
            url: base.to_string(),
            source,
        })?;
        let http = foodseg_http::client_builder()
            .and_then(|builder| {
                Ok(builder
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(60))
                    .build()?)
            })
            .map_err(|source| CliError::HttpClient { source })?;
        Ok(Self {
            base,
            http,
            key: None,
        })
    }

    /// The same client, sending `key` with every request.
    pub fn with_key(mut self, key: Option<String>) -> Self {
        self.key = key.filter(|k| !k.trim().is_empty());
        self
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The shared HTTP client (also used to fetch images for overlays).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> Result<Url, CliError> {
        self.base.join(path).map_err(|source| CliError::BadApiUrl {
            url: format!("{}{path}", self.base),
            source,
        })
    }

    /// `POST /enqueue` with an image URL.
    pub async fn enqueue(
        &self,
        image_url: &str,
        model_id: Option<&str>,
        webhook_url: Option<&str>,
    ) -> Result<JobDocument, CliError> {
        let url = self.url("enqueue")?;
        let body = serde_json::json!({
            "image_url": image_url,
            "model_id": model_id,
            "webhook_url": webhook_url,
        });
        let res = self
            .send(self.http.post(url.clone()).json(&body), &url)
            .await?;
        document(res, &url).await
    }

    /// `path` followed by `id` as one (percent-encoded) path segment.
    fn url_with_id(&self, path: &str, id: &str) -> Result<Url, CliError> {
        let mut url = self.url(path)?;
        url.path_segments_mut()
            .map_err(|()| CliError::BadResponse {
                url: self.base.to_string(),
                reason: "API URL cannot take a path".into(),
            })?
            .push(id);
        Ok(url)
    }

    /// `GET /status/{job_id}`.
    pub async fn status(&self, job_id: &str) -> Result<JobDocument, CliError> {
        let url = self.url_with_id("status", job_id)?;
        let res = self.send(self.http.get(url.clone()), &url).await?;
        document(res, &url).await
    }

    /// `POST /v2/jobs`: up to 1,000 jobs in one batch. A batch refused because of some
    /// of its jobs is [`CliError::InvalidItems`], naming them.
    pub async fn submit_batch(
        &self,
        jobs: &[BatchJob],
        priority: Priority,
    ) -> Result<BatchAnswer, CliError> {
        let url = self.url("v2/jobs")?;
        let req = self
            .http
            .post(url.clone())
            .json(&request_body(jobs, priority));
        let res = self.send(req, &url).await?;
        json_answer(res, &url, "a batch answer").await
    }

    /// `GET /v2/batches/{batch_id}`: where a batch's jobs stand (always needs a key).
    pub async fn batch(&self, batch_id: &str) -> Result<BatchProgress, CliError> {
        let url = self.url_with_id("v2/batches", batch_id)?;
        let res = self.send(self.http.get(url.clone()), &url).await?;
        json_answer(res, &url, "a batch's progress").await
    }

    /// Whether the API documents the upload endpoint in its OpenAPI (asked before sending
    /// any image bytes, so a server without it never sees a body it will not read).
    pub async fn supports_uploads(&self) -> Result<bool, CliError> {
        let url = self.url("openapi.json")?;
        let res = self.send(self.http.get(url.clone()), &url).await?;
        if !res.status().is_success() {
            return Ok(false);
        }
        let spec: serde_json::Value = match res.json().await {
            Ok(v) => v,
            Err(_) => return Ok(false),
        };
        Ok(documents_upload(&spec))
    }

    /// Uploads image bytes. `Ok(None)` when the server has no upload endpoint.
    pub async fn upload(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        file_name: &str,
        model_id: Option<&str>,
        webhook_url: Option<&str>,
    ) -> Result<Option<JobDocument>, CliError> {
        let mut url = self.url(UPLOAD_PATH)?;
        url.query_pairs_mut().append_pair("filename", file_name);
        if let Some(model) = model_id {
            url.query_pairs_mut().append_pair("model_id", model);
        }
        if let Some(webhook) = webhook_url {
            url.query_pairs_mut().append_pair("webhook_url", webhook);
        }
        let req = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        let res = self.send(req, &url).await?;
        if matches!(
            res.status(),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        ) {
            return Ok(None);
        }
        document(res, &url).await.map(Some)
    }

    /// `GET /undelivered`: one page of finished jobs whose webhook is not delivered,
    /// delivery created at or after `since` (RFC 3339), after `cursor`. Needs a key with
    /// scope `operator`.
    pub async fn undelivered(
        &self,
        since: &str,
        cursor: Option<&str>,
    ) -> Result<UndeliveredPage, CliError> {
        let mut url = self.url("undelivered")?;
        url.query_pairs_mut()
            .append_pair("since", since)
            .append_pair("limit", "1000");
        if let Some(cursor) = cursor {
            url.query_pairs_mut().append_pair("after", cursor);
        }
        let res = self.send(self.http.get(url.clone()), &url).await?;
        json_answer(res, &url, "a page of undelivered webhooks").await
    }

    /// Sends `req` (with the key, if any). A 429 is retried after the server's
    /// `Retry-After` (at most a minute each time), a few times.
    async fn send(&self, req: reqwest::RequestBuilder, url: &Url) -> Result<Response, CliError> {
        let req = match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        };
        let unreachable = |source| CliError::Unreachable {
            url: url.to_string(),
            source,
        };
        for _ in 1..TRIES_WHEN_LIMITED {
            let Some(attempt) = req.try_clone() else {
                break;
            };
            let res = attempt.send().await.map_err(unreachable)?;
            if res.status() != StatusCode::TOO_MANY_REQUESTS {
                return Ok(res);
            }
            let wait = res
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 60);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        req.send().await.map_err(unreachable)
    }
}

/// A page of `GET /undelivered`.
#[derive(Debug, Clone, Deserialize)]
pub struct UndeliveredPage {
    pub webhooks: Vec<UndeliveredWebhook>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// A finished job's latest webhook delivery, pending or failed.
#[derive(Debug, Clone, Deserialize)]
pub struct UndeliveredWebhook {
    pub job_id: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
}

/// Whether an OpenAPI document has `POST /v2/uploads`.
pub fn documents_upload(spec: &serde_json::Value) -> bool {
    spec["paths"][format!("/{UPLOAD_PATH}")]
        .get("post")
        .is_some()
}

/// Reads a job document, or turns an error body into its message.
async fn document(res: Response, url: &Url) -> Result<JobDocument, CliError> {
    json_answer(res, url, "a job document").await
}

/// Reads a JSON answer (`what` names it in the error when it is something else), or turns
/// an error body into its message.
async fn json_answer<T: DeserializeOwned>(
    res: Response,
    url: &Url,
    what: &str,
) -> Result<T, CliError> {
    let status = res.status();
    let bytes = res.bytes().await.map_err(|source| CliError::Unreachable {
        url: url.to_string(),
        source,
    })?;
    if !status.is_success() {
        return Err(api_error(status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| CliError::BadResponse {
        url: url.to_string(),
        reason: format!("not {what}: {e}"),
    })
}

/// The API's `{"error": {"code", "message"}}` body, or the raw text when it is something else.
pub fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.error.items.is_empty() => CliError::InvalidItems {
            message: b.error.message,
            items: b.error.items,
        },
        Ok(b) => CliError::Api {
            status: status.as_u16(),
            code: if b.error.code.is_empty() {
                "error".into()
            } else {
                b.error.code
            },
            message: if status == StatusCode::UNAUTHORIZED {
                format!(
                    "{} (give an API key with --api-key or FOODSEG_API_KEY)",
                    b.error.message
                )
            } else {
                b.error.message
            },
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            CliError::Api {
                status: status.as_u16(),
                code: status.canonical_reason().unwrap_or("error").to_string(),
                message: if text.is_empty() {
                    "(empty body)".into()
                } else {
                    text.chars().take(300).collect()
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_their_message() {
        let e = api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"error":{"code":"unknown_model","message":"unknown model_id 'x'"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "API answered 422 (unknown_model): unknown model_id 'x'"
        );
    }

    #[test]
    fn non_json_errors_show_their_text() {
        let e = api_error(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(
            e.to_string(),
            "API answered 502 (Bad Gateway): upstream down"
        );
    }

    #[test]
    fn refused_batches_name_their_bad_jobs() {
        let e = api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"error":{"code":"invalid_items","field":"jobs","message":"1 of the jobs is invalid; nothing was written",
                "items":[{"index":3,"code":"invalid_url","field":"image_url","message":"bad"}]}}"#,
        );
        let CliError::InvalidItems { items, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(items[0].index, 3);
        assert_eq!(items[0].field.as_deref(), Some("image_url"));
        assert!(e.to_string().contains("nothing was written"), "{e}");
    }

    #[test]
    fn batch_routes_take_the_id_as_one_segment() {
        let c = ApiClient::new("http://h:1/api/").unwrap();
        assert_eq!(
            c.url_with_id("v2/batches", "0193f7a0-5c1e")
                .unwrap()
                .as_str(),
            "http://h:1/api/v2/batches/0193f7a0-5c1e"
        );
        assert_eq!(
            c.url_with_id("status", "a/b").unwrap().as_str(),
            "http://h:1/api/status/a%2Fb"
        );
    }

    #[test]
    fn upload_support_comes_from_the_openapi_paths() {
        let with =
            serde_json::json!({"paths": {"/enqueue": {"post": {}}, "/v2/uploads": {"post": {}}}});
        let without = serde_json::json!({"paths": {"/enqueue": {"post": {}}}});
        assert!(documents_upload(&with));
        assert!(!documents_upload(&without));
        assert!(!documents_upload(&serde_json::json!("not a spec")));
    }

    #[test]
    fn base_url_keeps_its_path() {
        let c = ApiClient::new("http://h:1/prefix").unwrap();
        assert_eq!(
            c.url("enqueue").unwrap().as_str(),
            "http://h:1/prefix/enqueue"
        );
    }

    #[test]
    fn bad_base_url_is_an_error() {
        assert!(matches!(
            ApiClient::new("not a url"),
            Err(CliError::BadApiUrl { .. })
        ));
    }
}
