//! Everything that can go wrong in the CLI, worded for the person at the terminal.

use std::path::PathBuf;

/// What is wrong with one job of a refused batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ItemProblem {
    /// The job's place in the batch, from 0.
    pub index: usize,
    pub code: String,
    #[serde(default)]
    pub field: Option<String>,
    pub message: String,
}

/// A CLI failure. Each variant's message says what happened and, where it can, what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path} is not an image (expected JPEG, PNG or WebP)")]
    NotAnImage { path: PathBuf },

    #[error("cannot decode image {what}: {source}")]
    Decode {
        what: String,
        source: image::ImageError,
    },

    #[error("cannot write PNG {path}: {source}")]
    EncodePng {
        path: PathBuf,
        source: image::ImageError,
    },

    #[error("{0} is neither an http(s) URL nor a readable file")]
    BadTarget(String),

    #[error("invalid API URL {url}: {source}")]
    BadApiUrl {
        url: String,
        source: url::ParseError,
    },

    #[error("cannot set up HTTP: {source}")]
    HttpClient { source: foodseg_http::Error },

    #[error("cannot reach the API at {url}")]
    Unreachable { url: String, source: reqwest::Error },

    #[error("API answered {status} ({code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },

    /// A batch refused because of some of its jobs (`422 invalid_items`): nothing of it
    /// was written.
    #[error("API answered 422 (invalid_items): {message}")]
    InvalidItems {
        message: String,
        items: Vec<ItemProblem>,
    },

    #[error("invalid --base-url {url}: {reason}")]
    BadBaseUrl { url: String, reason: String },

    #[error("{0} webhook(s) not delivered")]
    Undelivered(usize),

    #[error("unexpected answer from {url}: {reason}")]
    BadResponse { url: String, reason: String },

    #[error(
        "the API refused the local file URL {url}: {message}\n\
         hint: the API's FOODSEG_URL_ALLOW_CIDRS must include 127.0.0.0/8 (and the API must run \
         on this machine) for `submit <file>` when the API has no upload endpoint"
    )]
    LocalUrlRefused { url: String, message: String },

    #[error("cannot fetch image {url}: {reason} (pass --image to use a local copy)")]
    FetchImage { url: String, reason: String },

    #[error("cannot start the local file server: {0}")]
    LocalServer(std::io::Error),

    #[error("job {job_id} did not finish within {seconds}s (last status {status})")]
    Timeout {
        job_id: String,
        seconds: u64,
        status: String,
    },

    #[error("job {job_id} failed: {message}")]
    JobFailed { job_id: String, message: String },

    #[error("job {job_id} is {status}, it has no result to draw yet")]
    NotFinished { job_id: String, status: String },

    #[error("job {job_id} has a malformed result: {source}")]
    BadItems {
        job_id: String,
        source: serde_json::Error,
    },

    #[error("cannot list {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path} holds no images (.jpg, .jpeg, .png, .webp)")]
    EmptyDir { path: PathBuf },

    #[error("{failed} of {total} images failed")]
    SomeFailed { failed: usize, total: usize },

    #[error("{path}: {source}")]
    Evaluation {
        path: PathBuf,
        source: crate::eval::EvalError,
    },

    #[error("{path} is not a metrics file written by `foodseg eval`: {source}")]
    BadMetrics {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("the bundled font is unreadable: {0}")]
    Font(ab_glyph::InvalidFont),
}
