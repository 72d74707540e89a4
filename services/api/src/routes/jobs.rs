//! The MFR v1 contract: `POST /enqueue` and `GET /status/{job_id}`.

use std::future::Future;

use foodseg_engine::JobId;
use foodseg_engine::document::JobDocument;
use foodseg_engine::store::NewJob;
use salvo::oapi::ToSchema;
use salvo::oapi::extract::PathParam;
use salvo::prelude::*;

use super::middleware::state;
use crate::enqueue::{self, EnqueueRequest, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::state::{AppState, DB_DEADLINE};

/// Actor recorded in the job's event log for enqueues.
const ACTOR: &str = "api";

pub fn router() -> Router {
    Router::new()
        .push(Router::with_path("enqueue").post(enqueue_job))
        .push(Router::with_path("status/{job_id}").get(job_status))
}

/// The v1 job document (documentation schema of [`JobDocument`]).
#[derive(Debug, serde::Serialize, ToSchema)]
#[salvo(schema(name = "JobDocument"))]
pub struct JobDocumentSchema {
    /// Opaque job id.
    pub job_id: String,
    /// RFC 3339 with microseconds, UTC.
    pub created_at: String,
    pub updated_at: String,
    /// Seconds; null until the job finished.
    pub processing_time: Option<f64>,
    /// `MFR.Job.QUEUED` | `MFR.Job.IN_PROGRESS` | `MFR.Job.SUCCESS` | `MFR.Job.ERROR`.
    pub status: String,
    /// Human readable; on ERROR it says why.
    pub message: String,
    pub request: JobRequestSchema,
    /// SUCCESS: list of COCO-style items; ERROR: `{}`; otherwise null.
    pub response: serde_json::Value,
    /// The model_id the job runs with.
    pub model_identifier: String,
    /// Contract version, `v1.0`.
    pub api_version: String,
}

/// The request as the client sent it.
#[derive(Debug, serde::Serialize, ToSchema)]
#[salvo(schema(name = "JobRequest"))]
pub struct JobRequestSchema {
    pub image_url: String,
    pub webhook_url: Option<String>,
}

/// A job document answer.
pub struct DocumentReply(pub JobDocument);

#[async_trait]
impl Writer for DocumentReply {
    async fn write(self, _req: &mut Request, _depot: &mut Depot, res: &mut Response) {
        res.render(Json(self.0));
    }
}

impl salvo::oapi::EndpointOutRegister for DocumentReply {
    fn register(components: &mut salvo::oapi::Components, operation: &mut salvo::oapi::Operation) {
        let schema = JobDocumentSchema::to_schema(components);
        operation.responses.insert(
            "200",
            salvo::oapi::Response::new("The job document")
                .add_content("application/json", salvo::oapi::Content::new(schema)),
        );
    }
}

/// Queue a segmentation job.
///
/// The body is parsed as JSON whatever the declared Content-Type. Answers the job
/// document with status `MFR.Job.QUEUED`; the result is posted to `webhook_url` and can
/// be read from `/status/{job_id}`.
#[endpoint(tags("v1"), request_body = EnqueueRequest)]
async fn enqueue_job(req: &mut Request, depot: &mut Depot) -> Result<DocumentReply, ApiError> {
    let state = state(depot).ok_or_else(missing_state)?.clone();
    state
        .limits
        .check(crate::limits::Route::Enqueue, crate::auth::caller(depot))?;
    let body = match req.payload_with_max_size(MAX_BODY_BYTES).await {
        Ok(body) => body.clone(),
        Err(salvo::http::ParseError::PayloadTooLarge) => {
            return Err(ApiError::PayloadTooLarge {
                size: MAX_BODY_BYTES + 1,
                limit: MAX_BODY_BYTES,
            });
        }
        Err(e) => return Err(ApiError::BodyUnreadable(e.to_string())),
    };
    let request = enqueue::parse(&body, &state.net_policy)?;
    let model = state
        .registry
        .resolve(request.model_id.as_deref())
        .map_err(|e| ApiError::UnknownModel {
            requested: e.requested,
            known: e.known,
        })?;
    let model_id = request
        .model_id
        .clone()
        .unwrap_or_else(|| model.primary_id().to_string());
    ensure_schema(&state)?;
    let traceparent = foodseg_telemetry::trace::current_traceparent();
    let trace_id = foodseg_telemetry::trace::current_trace_id().or_else(|| {
        traceparent
            .as_deref()
            .and_then(foodseg_telemetry::trace::trace_id_of)
            .map(str::to_string)
    });
    let job = NewJob {
        id: JobId::new(),
        model_id,
        model_name: model.name().to_string(),
        image_url: request.image_url,
        webhook_url: request.webhook_url,
        max_attempts: state.max_attempts,
        trace_id,
        traceparent,
    };
    let job = with_deadline(state.store.enqueue(&job, ACTOR)).await?;
    state.waker.wake();
    metrics::counter!("foodseg_jobs_enqueued_total", "model" => job.model_name.clone())
        .increment(1);
    tracing::info!(job_id = %job.id, model = %job.model_name, trace_id = job.trace_id.as_deref().unwrap_or(""), "job queued");
    Ok(DocumentReply(JobDocument::from(&job)))
}

/// The job document of a job.
///
/// Unknown (or malformed) ids answer 404.
#[endpoint(tags("v1"))]
async fn job_status(
    job_id: PathParam<String>,
    depot: &mut Depot,
) -> Result<DocumentReply, ApiError> {
    let state = state(depot).ok_or_else(missing_state)?.clone();
    let raw = job_id.into_inner();
    let not_found = || ApiError::JobNotFound(raw.clone());
    let id: JobId = raw.parse().map_err(|_| not_found())?;
    ensure_schema(&state)?;
    let job = with_deadline(state.store.get(id))
        .await?
        .ok_or_else(not_found)?;
    Ok(DocumentReply(JobDocument::from(&job)))
}

fn ensure_schema(state: &AppState) -> Result<(), ApiError> {
    if state.schema_ready() {
        Ok(())
    } else {
        Err(ApiError::DatabaseUnavailable(None))
    }
}

/// Bounds a store call: a database that stopped answering gets a 503, not a hang.
pub(crate) async fn with_deadline<T>(
    f: impl Future<Output = Result<T, foodseg_engine::StoreError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(DB_DEADLINE, f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::DatabaseTimeout),
    }
}

fn missing_state() -> ApiError {
    ApiError::Internal("application state missing from the request".into())
}
