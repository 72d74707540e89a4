//! Errors: [`ApiError`] is what a request can fail with (one status code and one JSON body
//! `{"error": {"code", "message"}}`); [`Error`] is what stops the service.

use foodseg_engine::{BusError, StoreError};
use salvo::http::StatusCode;
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;
use serde::Serialize;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] foodseg_runtime::ConfigError),
    #[error("cannot load the model registry")]
    Models(#[from] foodseg_models::RegistryError),
    #[error("cannot set up the job store")]
    Store(#[from] StoreError),
    #[error("cannot set up NATS")]
    Bus(#[from] BusError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the http server failed")]
    Serve(#[source] std::io::Error),
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a human-readable `message`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable identifier, e.g. `invalid_json`, `invalid_url`, `unknown_model`.
    pub code: String,
    pub message: String,
    /// The request field the error is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `unknown_model`: every accepted `model_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_ids: Option<Vec<String>>,
    /// For `invalid_items` (`POST /v2/jobs`): what is wrong with each invalid job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemError>>,
}

/// What is wrong with one job of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ItemError {
    /// The job's position in `jobs`, from 0.
    pub index: usize,
    /// The error code a single `/enqueue` of this job would get (or
    /// `duplicate_idempotency_key`).
    pub code: String,
    /// The job's field the error is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ItemError {
    /// The error `e` as the error of the job at `index`.
    pub fn of(index: usize, e: &ApiError) -> Self {
        ItemError {
            index,
            code: e.code().to_string(),
            field: e.field().map(str::to_string),
            message: e.to_string(),
        }
    }
}

/// A request that failed. Client errors (4xx) say what to fix; server errors (5xx) are
/// logged with their cause chain and answered without internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is {size} bytes or more, over the {limit}-byte limit")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("cannot read the request body: {0}")]
    BodyUnreadable(String),
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    BodyTimeout(std::time::Duration),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("field {field} is required")]
    MissingField { field: &'static str },
    #[error("field {field} must not be empty")]
    EmptyField { field: &'static str },
    #[error("field {field} must be {expected}, got {got}")]
    InvalidType {
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("field {field} {reason}")]
    InvalidUrl { field: &'static str, reason: String },
    #[error("unknown model_id {requested:?}; known ids: {}", known.join(", "))]
    UnknownModel {
        requested: String,
        known: Vec<String>,
    },
    #[error("no job with id {0:?}")]
    JobNotFound(String),
    #[error("no webhook endpoint {0:?}; GET /endpoints lists them")]
    EndpointNotFound(String),
    #[error("no batch with id {0:?}")]
    BatchNotFound(String),
    #[error("field {field} {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{} of the jobs {}; nothing was written", .0.len(), if .0.len() == 1 { "is invalid" } else { "are invalid" })]
    InvalidItems(Vec<ItemError>),
    #[error("Idempotency-Key header {0}")]
    InvalidIdempotencyKey(&'static str),
    #[error(
        "this Idempotency-Key was used for a different request (job {0}); a new request needs a new key"
    )]
    IdempotencyKeyReused(foodseg_engine::JobId),
    #[error("query parameter {param} {reason}")]
    InvalidParameter { param: &'static str, reason: String },
    #[error("{reason}")]
    Unauthorized {
        reason: &'static str,
        /// A token was presented (and refused), as opposed to none at all.
        token_given: bool,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("too many {what}; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        what: &'static str,
        retry_after: std::time::Duration,
    },
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable(#[source] Option<StoreError>),
    #[error("the database did not answer in time; retry later")]
    DatabaseTimeout,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyUnreadable(_)
            | InvalidJson(_)
            | NotAnObject(_)
            | InvalidIdempotencyKey(_)
            | InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            IdempotencyKeyReused(_)
            | MissingField { .. }
            | EmptyField { .. }
            | InvalidType { .. }
            | InvalidUrl { .. }
            | InvalidField { .. }
            | InvalidItems(_)
            | UnknownModel { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            JobNotFound(_) | EndpointNotFound(_) | BatchNotFound(_) => StatusCode::NOT_FOUND,
            Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            DatabaseUnavailable(_) | DatabaseTimeout => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            PayloadTooLarge { .. } => "payload_too_large",
            BodyUnreadable(_) => "unreadable_body",
            BodyTimeout(_) => "request_timeout",
            InvalidJson(_) => "invalid_json",
            NotAnObject(_) => "invalid_json",
            MissingField { .. } => "missing_field",
            EmptyField { .. } => "empty_field",
            InvalidType { .. } => "invalid_type",
            InvalidUrl { .. } => "invalid_url",
            UnknownModel { .. } => "unknown_model",
            JobNotFound(_) => "job_not_found",
            EndpointNotFound(_) => "endpoint_not_found",
            BatchNotFound(_) => "batch_not_found",
            InvalidField { .. } => "invalid_field",
            InvalidItems(_) => "invalid_items",
            InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            IdempotencyKeyReused(_) => "idempotency_key_reused",
            InvalidParameter { .. } => "invalid_parameter",
            Unauthorized { .. } => "unauthorized",
            Forbidden(_) => "forbidden",
            RateLimited { .. } => "rate_limited",
            DatabaseUnavailable(_) | DatabaseTimeout => "database_unavailable",
            Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<&'static str> {
        use ApiError::*;
        match self {
            MissingField { field }
            | EmptyField { field }
            | InvalidType { field, .. }
            | InvalidUrl { field, .. }
            | InvalidField { field, .. } => Some(field),
            InvalidItems(_) => Some("jobs"),
            InvalidParameter { param, .. } => Some(param),
            UnknownModel { .. } => Some("model_id"),
            _ => None,
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
                field: self.field().map(str::to_string),
                known_ids: match self {
                    ApiError::UnknownModel { known, .. } => Some(known.clone()),
                    _ => None,
                },
                items: match self {
                    ApiError::InvalidItems(items) => Some(items.clone()),
                    _ => None,
                },
            },
        }
    }

    pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::DatabaseUnavailable(Some(e))
        } else if matches!(e, StoreError::TimedOut(_)) {
            ApiError::DatabaseTimeout
        } else {
            ApiError::internal(e)
        }
    }
}

/// A plain JSON error answer for statuses raised outside the handlers (404 route, 405).
pub fn status_body(status: StatusCode) -> ErrorBody {
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_string(),
            field: None,
            known_ids: None,
            items: None,
        },
    }
}

#[async_trait]
impl Writer for ApiError {
    async fn write(self, _req: &mut Request, _depot: &mut Depot, res: &mut Response) {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(
                code = self.code(),
                error = %foodseg_engine::error_chain(&self),
                "request failed"
            );
        } else {
            tracing::debug!(code = self.code(), error = %self, "request rejected");
        }
        if let ApiError::Unauthorized { token_given, .. } = &self {
            let challenge = if *token_given {
                r#"Bearer realm="foodseg", error="invalid_token""#
            } else {
                r#"Bearer realm="foodseg""#
            };
            let _ = res.add_header("www-authenticate", challenge, true);
        }
        if let ApiError::BodyTimeout(_) = &self {
            // The rest of the body is never read: close the connection after the answer
            // instead of keeping it for a client that trickles.
            let _ = res.add_header("connection", "close", true);
        }
        if let ApiError::RateLimited { retry_after, .. } = &self {
            let _ = res.add_header(
                "retry-after",
                retry_after_secs(*retry_after).to_string(),
                true,
            );
        }
        res.status_code(status);
        res.render(Json(self.body()));
    }
}

/// Whole seconds to wait (at least one), as `Retry-After` says them.
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Documents the 429 of a route with a rate limit.
pub fn register_rate_limit(components: &mut Components, operation: &mut Operation) {
    let schema = ErrorBody::to_schema(components);
    operation.responses.insert(
        "429",
        oapi::Response::new(
            "Too many requests from this caller; retry after `Retry-After` seconds",
        )
        .add_content("application/json", oapi::Content::new(schema)),
    );
}

/// Documents the answers of a route that needs an API key (401, 403) in the OpenAPI
/// document, and the key itself as the operation's security requirement.
pub fn register_key_answers(components: &mut Components, operation: &mut Operation) {
    let schema = ErrorBody::to_schema(components);
    for (status, brief) in [
        ("401", "No API key, or a key that is unknown or revoked"),
        (
            "403",
            "The key lacks the scope this route needs, or the client address is not allowed",
        ),
    ] {
        operation.responses.insert(
            status,
            oapi::Response::new(brief)
                .add_content("application/json", oapi::Content::new(schema.clone())),
        );
    }
}

impl EndpointOutRegister for ApiError {
    fn register(components: &mut Components, operation: &mut Operation) {
        let schema = ErrorBody::to_schema(components);
        for (status, brief) in [
            (
                "400",
                "Malformed request body, Idempotency-Key header or query parameter",
            ),
            ("404", "Unknown job id"),
            ("408", "The request body did not arrive in time"),
            ("413", "Request body over 64 KiB"),
            (
                "422",
                "Invalid field, URL or unknown model_id, or an Idempotency-Key used for another request",
            ),
            (
                "403",
                "The client address may not use this route (FOODSEG_V1_ALLOW_CIDRS)",
            ),
            (
                "429",
                "Too many requests from this caller; retry after Retry-After seconds",
            ),
            ("503", "Database unavailable"),
        ] {
            operation.responses.insert(
                status,
                oapi::Response::new(brief)
                    .add_content("application/json", oapi::Content::new(schema.clone())),
            );
        }
    }
}
