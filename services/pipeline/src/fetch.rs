//! Downloading an image over HTTP(S) with a size cap enforced while streaming, and a
//! permanent/transient classification of every failure.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tracing::Instrument;
use url::Url;

/// Limits for one image download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Largest accepted body, in bytes.
    pub max_bytes: u64,
    /// Deadline for the whole request, body included.
    pub total_timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            total_timeout: Duration::from_secs(30),
        }
    }
}

/// A downloaded image body.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    /// The `Content-Type` header, if any (informational; decoding sniffs the bytes).
    pub content_type: Option<String>,
    /// The URL after redirects.
    pub final_url: Url,
}

/// Why an image could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("image_url returned HTTP {status}")]
    Status { status: u16 },
    #[error("image is larger than {} MB", max_bytes.div_ceil(1024 * 1024))]
    TooLarge { max_bytes: u64 },
    #[error("image download timed out")]
    Timeout,
    #[error("too many redirects fetching image_url")]
    Redirects(#[source] reqwest::Error),
    #[error("image_url was refused: {0}")]
    Refused(String),
    #[error("cannot fetch image_url: {0}")]
    Request(#[source] reqwest::Error),
}

impl FetchError {
    /// Permanent failures end the job at once; transient ones are worth a retry.
    pub fn is_permanent(&self) -> bool {
        match self {
            // 408 Request Timeout and 429 Too Many Requests are the host being busy.
            Self::Status { status } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            Self::TooLarge { .. } | Self::Redirects(_) | Self::Refused(_) => true,
            Self::Timeout => false,
            Self::Request(e) => e.is_builder() || e.is_redirect(),
        }
    }

    /// A short class for a span's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::TooLarge { .. } => "too_large",
            Self::Timeout => "timeout",
            Self::Redirects(_) => "redirects",
            Self::Refused(_) => "refused",
            Self::Request(_) => "transport",
        }
    }
}

/// A client suitable for image downloads: connect timeout, total timeout, at most three
/// redirects. Callers that need an address guard add a resolver to the builder from
/// [`client_builder`] instead.
pub fn client(
    connect_timeout: Duration,
    total_timeout: Duration,
) -> Result<reqwest::Client, foodseg_http::Error> {
    Ok(client_builder(connect_timeout, total_timeout)?.build()?)
}

/// The builder behind [`client`], for callers that add a DNS resolver or other settings.
pub fn client_builder(
    connect_timeout: Duration,
    total_timeout: Duration,
) -> Result<reqwest::ClientBuilder, foodseg_http::Error> {
    Ok(foodseg_http::client_builder()?
        .connect_timeout(connect_timeout)
        .timeout(total_timeout)
        .redirect(reqwest::redirect::Policy::limited(3)))
}

/// Downloads `url` with `client`, stopping as soon as the body exceeds the cap.
pub async fn fetch(
    client: &reqwest::Client,
    url: &Url,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError> {
    let span = tracing::info_span!(
        "fetch",
        url = %foodseg_http::redact::url(url.as_str()),
        bytes = tracing::field::Empty,
        status = tracing::field::Empty
    );
    // The request itself is a CLIENT span (url.full redacted, server.address, status)
    // inside the `fetch` stage span.
    let request = span.in_scope(|| foodseg_telemetry::spans::http_client("GET", url.as_str()));
    let work = async {
        let response = client
            .get(url.clone())
            .send()
            .instrument(request.clone())
            .await
            .map_err(|e| {
                let e = classify(e);
                foodseg_telemetry::spans::record_error(&request, e.error_type());
                e
            })?;
        let status = response.status();
        foodseg_telemetry::spans::record_http_status(&request, status.as_u16());
        tracing::Span::current().record("status", status.as_u16());
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
            });
        }
        if response
            .content_length()
            .is_some_and(|len| len > limits.max_bytes)
        {
            return Err(FetchError::TooLarge {
                max_bytes: limits.max_bytes,
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let final_url = response.url().clone();
        let bytes = read_capped(response, limits.max_bytes).await?;
        tracing::Span::current().record("bytes", bytes.len());
        Ok(Fetched {
            bytes,
            content_type,
            final_url,
        })
    };
    let work = work.instrument(span);
    match tokio::time::timeout(limits.total_timeout, work).await {
        Ok(result) => result,
        Err(_) => {
            foodseg_telemetry::spans::record_error(&request, "timeout");
            Err(FetchError::Timeout)
        }
    }
}

async fn read_capped(mut response: reqwest::Response, max_bytes: u64) -> Result<Bytes, FetchError> {
    let capacity = response
        .content_length()
        .unwrap_or(64 * 1024)
        .min(max_bytes);
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(FetchError::TooLarge { max_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn classify(error: reqwest::Error) -> FetchError {
    // The URL may carry credentials; the error's text is stored with the job and logged.
    let error = error.without_url();
    if error.is_timeout() {
        return FetchError::Timeout;
    }
    if error.is_redirect() {
        return FetchError::Redirects(error);
    }
    if let Some(refusal) = refusal_message(&error) {
        return FetchError::Refused(refusal);
    }
    FetchError::Request(error)
}

/// A resolver or URL guard that refuses an address reports it through the error chain;
/// such refusals are marked with [`AddressRefused`].
fn refusal_message(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused.0.clone());
        }
        source = e.source();
    }
    None
}

/// The error a caller's DNS resolver returns to refuse an address (for example a private
/// one); [`fetch`] reports it as a permanent [`FetchError::Refused`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AddressRefused(pub String);
