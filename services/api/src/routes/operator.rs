//! Operator endpoints: a job's event log, its webhook deliveries with every attempt, and
//! redelivery of its webhook.

use chrono::{DateTime, Utc};
use foodseg_engine::document::format_time;
use foodseg_engine::store::{DeliveryAttemptRow, DeliveryView, JobEventRow, Redelivery};
use foodseg_engine::{Job, JobId};
use salvo::oapi::extract::PathParam;
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;
use serde::Serialize;

use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::request::{ready_state, with_deadline};
use crate::state::AppState;

pub fn router() -> Router {
    Router::with_path("jobs/{job_id}")
        .push(Router::with_path("events").get(job_events))
        .push(Router::with_path("deliveries").get(job_deliveries))
        .push(Router::with_path("redeliver").post(redeliver))
}

/// A job's event log.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEvents {
    pub job_id: String,
    /// `MFR.Job.*` status now.
    pub status: String,
    /// The job's trace (W3C trace id), when it was traced.
    pub trace_id: Option<String>,
    /// Link to the trace in Jaeger (`FOODSEG_JAEGER_URL_TEMPLATE`).
    pub trace_url: Option<String>,
    /// Every transition, oldest first.
    pub events: Vec<JobEvent>,
}

/// One transition of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEvent {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// Internal status before (`queued`, `running`, `succeeded`, `failed`); null for the
    /// enqueue.
    pub from_status: Option<String>,
    pub to_status: String,
    /// The attempt number at that time.
    pub attempt: i32,
    /// Who made the change (`api`, a worker id, a scheduler id, `operator`).
    pub actor: String,
    pub detail: Option<String>,
}

/// A job's webhook deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDeliveries {
    pub job_id: String,
    pub deliveries: Vec<Delivery>,
}

/// One webhook delivery (one `webhook-id`) and its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    /// Standard Webhooks `webhook-id`, the same for every attempt of this delivery.
    pub webhook_id: String,
    /// The webhook URL, redacted as everywhere operators see one: no userinfo, every
    /// query value `REDACTED`.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    pub started_at: String,
    pub latency_ms: f64,
    /// HTTP status of the answer; null when none came (timeout, connection error).
    pub status_code: Option<i32>,
    pub error: Option<String>,
    /// `delivered`, `retry`, `gone` (410: no more attempts) or `failed`.
    pub outcome: String,
}

/// Why an operator request failed: an [`ApiError`], or a job in the wrong state.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("job {job_id} has not finished (status {status}); its webhook goes out when it does")]
    NotFinished { job_id: JobId, status: &'static str },
    #[error("job {0} has no webhook_url")]
    NoWebhook(JobId),
    #[error("a delivery of job {0} is still pending; ask again once it has ended")]
    DeliveryPending(JobId),
}

impl OperatorError {
    fn conflict_body(&self, code: &str) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
                field: None,
                known_ids: None,
                items: None,
            },
        }
    }
}

#[async_trait]
impl Writer for OperatorError {
    async fn write(self, req: &mut Request, depot: &mut Depot, res: &mut Response) {
        let code = match &self {
            OperatorError::Api(_) => "",
            OperatorError::NotFinished { .. } => "job_not_finished",
            OperatorError::NoWebhook(_) => "no_webhook",
            OperatorError::DeliveryPending(_) => "delivery_pending",
        };
        match self {
            OperatorError::Api(e) => e.write(req, depot, res).await,
            conflict => {
                res.status_code(StatusCode::CONFLICT);
                res.render(Json(conflict.conflict_body(code)));
            }
        }
    }
}

impl EndpointOutRegister for OperatorError {
    fn register(components: &mut Components, operation: &mut Operation) {
        ApiError::register(components, operation);
        crate::error::register_key_answers(components, operation);
        crate::error::register_rate_limit(components, operation);
        let schema = ErrorBody::to_schema(components);
        operation.responses.insert(
            "409",
            oapi::Response::new(
                "The job has not finished, has no webhook_url, or a delivery is still pending",
            )
            .add_content("application/json", oapi::Content::new(schema)),
        );
    }
}

/// A job's event log: every state change with time, attempt and actor.
#[endpoint(tags("operator"), security(("bearer" = [])))]
async fn job_events(
    job_id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<JobEvents>, OperatorError> {
    let state = ready_state(depot)?;
    let job = find_job(&state, &job_id.into_inner()).await?;
    let events = with_deadline(state.store.events(job.id)).await?;
    let trace_id = job.trace_id.clone();
    let trace_url = trace_id
        .as_deref()
        .and_then(|id| foodseg_telemetry::JaegerLinks::from_env().link(id));
    Ok(Json(JobEvents {
        job_id: job.id.to_string(),
        status: job.status.mfr_status().to_string(),
        trace_id,
        trace_url,
        events: events.into_iter().map(JobEvent::from).collect(),
    }))
}

/// A job's webhook deliveries, each with all its attempts (time, HTTP status, latency,
/// error, outcome).
#[endpoint(tags("operator"), security(("bearer" = [])))]
async fn job_deliveries(
    job_id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<JobDeliveries>, OperatorError> {
    let state = ready_state(depot)?;
    let job = find_job(&state, &job_id.into_inner()).await?;
    let deliveries = with_deadline(state.store.deliveries(job.id)).await?;
    Ok(Json(JobDeliveries {
        job_id: job.id.to_string(),
        deliveries: deliveries.into_iter().map(Delivery::from).collect(),
    }))
}

/// Send a finished job's webhook again, as a new delivery with a new `webhook-id`.
///
/// Answers 201 with the pending delivery; 409 when the job has not finished, has no
/// webhook_url, or a delivery of it is still pending. Needs an API key with scope
/// `operator`.
#[endpoint(
    tags("operator"),
    security(("bearer" = [])),
    status_codes(201, 401, 403, 404, 409, 429, 503)
)]
async fn redeliver(
    job_id: PathParam<String>,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<Json<Delivery>, OperatorError> {
    let state = ready_state(depot)?;
    let job = find_job(&state, &job_id.into_inner()).await?;
    let caller = crate::auth::caller(depot);
    state
        .limits
        .check(crate::limits::Route::Redeliver, caller)?;
    let actor = caller.map_or_else(|| "operator".into(), |c| c.actor());
    match with_deadline(state.store.redeliver(job.id, &actor)).await? {
        Redelivery::Created(delivery) => {
            tracing::info!(job_id = %job.id, webhook_id = %delivery.delivery.webhook_id, "webhook redelivery queued");
            res.status_code(StatusCode::CREATED);
            Ok(Json(Delivery::from(*delivery)))
        }
        Redelivery::NotFound => Err(ApiError::JobNotFound(job.id.to_string()).into()),
        Redelivery::NotFinished(status) => Err(OperatorError::NotFinished {
            job_id: job.id,
            status: status.mfr_status(),
        }),
        Redelivery::NoWebhook => Err(OperatorError::NoWebhook(job.id)),
        Redelivery::Pending => Err(OperatorError::DeliveryPending(job.id)),
    }
}

async fn find_job(state: &AppState, raw: &str) -> Result<Job, ApiError> {
    let not_found = || ApiError::JobNotFound(raw.to_string());
    let id: JobId = raw.parse().map_err(|_| not_found())?;
    with_deadline(state.store.get(id))
        .await?
        .ok_or_else(not_found)
}

fn time(t: DateTime<Utc>) -> String {
    format_time(t)
}

impl From<JobEventRow> for JobEvent {
    fn from(e: JobEventRow) -> Self {
        JobEvent {
            id: e.id,
            at: time(e.at),
            from_status: e.from_status.map(|s| s.as_str().to_string()),
            to_status: e.to_status.as_str().to_string(),
            attempt: e.attempt.get(),
            actor: e.actor,
            detail: e.detail.as_deref().map(foodseg_http::redact::urls_in),
        }
    }
}

impl From<DeliveryView> for Delivery {
    fn from(view: DeliveryView) -> Self {
        let next_attempt_at = view.next_attempt_at().map(time);
        let d = view.delivery;
        Delivery {
            id: d.id.to_string(),
            webhook_id: d.webhook_id,
            url: foodseg_http::redact::url(&d.url),
            status: d.status.as_str().to_string(),
            attempts: d.attempts,
            next_attempt_at,
            last_error: d.last_error.as_deref().map(foodseg_http::redact::urls_in),
            created_at: time(d.created_at),
            finished_at: d.finished_at.map(time),
            attempt_log: view
                .attempt_log
                .into_iter()
                .map(DeliveryAttempt::from)
                .collect(),
        }
    }
}

impl From<DeliveryAttemptRow> for DeliveryAttempt {
    fn from(a: DeliveryAttemptRow) -> Self {
        DeliveryAttempt {
            attempt: a.attempt,
            started_at: time(a.started_at),
            latency_ms: a.latency_ms,
            status_code: a.status_code,
            error: a.error.as_deref().map(foodseg_http::redact::urls_in),
            outcome: a.outcome.as_str().to_string(),
        }
    }
}
