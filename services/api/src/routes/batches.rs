//! `POST /v2/jobs` (a batch of up to 1,000 jobs, interactive or bulk), and batches' progress
//! and cancel: `GET /v2/batches`, `GET /v2/batches/{batch_id}`,
//! `POST /v2/batches/{batch_id}/cancel`.

use chrono::{DateTime, Utc};
use foodseg_engine::document::V2JobDocument;
use foodseg_engine::store::{BatchCancel, BatchProgress, BatchWrite, NewBatch};
use foodseg_engine::{ApiKeyId, BatchId, JobId, Priority, Scope};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::{self, ToSchema};
use salvo::prelude::*;
use serde::Serialize;

use super::jobs::{idempotency_scope, new_job};
use crate::auth::Caller;
use crate::batch::{self, BatchRequest, MAX_BODY_BYTES};
use crate::error::{ApiError, ItemError};
use crate::idempotency::Fingerprint;
use crate::request::{ready_state, small_body, with_deadline};

/// How long a batch body (at most 6 MiB) may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `POST /v2/jobs`: submitting, under the `submit` guard.
pub fn submit_router() -> Router {
    Router::with_path("v2/jobs").post(submit_batch)
}

/// Batches, a batch's progress and cancel: a key, always (its own batches; operator:
/// all).
pub fn batch_router() -> Router {
    Router::with_path("v2/batches").get(list_batches).push(
        Router::with_path("{batch_id}")
            .get(batch_progress)
            .push(Router::with_path("cancel").post(cancel_batch)),
    )
}

/// Most batches one `GET /v2/batches` lists.
const MAX_LISTED: i64 = 200;

/// A list of batches, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(name = "BatchList"))]
pub struct BatchList {
    pub batches: Vec<BatchView>,
}

#[async_trait]
impl Writer for BatchList {
    async fn write(self, _req: &mut Request, _depot: &mut Depot, res: &mut Response) {
        res.render(Json(self));
    }
}

impl salvo::oapi::EndpointOutRegister for BatchList {
    fn register(components: &mut salvo::oapi::Components, operation: &mut salvo::oapi::Operation) {
        let schema = BatchList::to_schema(components);
        operation.responses.insert(
            "200",
            oapi::Response::new("The newest batches, with their progress")
                .add_content("application/json", oapi::Content::new(schema)),
        );
        crate::error::register_key_answers(components, operation);
    }
}

/// The newest batches.
///
/// At most `limit` (default 50, at most 200), newest first, each with its progress as
/// `GET /v2/batches/{batch_id}` answers it. A key with scope `submit` lists the batches
/// it sent; an operator key lists every batch.
#[endpoint(tags("v2"), security(("bearer" = [])))]
async fn list_batches(
    limit: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<BatchList, ApiError> {
    let limit = match limit.into_inner() {
        None => 50,
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LISTED).contains(n))
            .ok_or_else(|| ApiError::InvalidParameter {
                param: "limit",
                reason: format!("must be a whole number from 1 to {MAX_LISTED}"),
            })?,
    };
    let state = ready_state(depot)?;
    let owner = viewer(depot)?;
    let batches = with_deadline(state.store.batches(owner, limit)).await?;
    Ok(BatchList {
        batches: batches.iter().map(BatchView::from).collect(),
    })
}

/// The answer to a batch.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(name = "BatchAccepted"))]
pub struct BatchAccepted {
    /// The batch's id, for `GET /v2/batches/{batch_id}`.
    pub batch_id: String,
    /// `interactive` or `bulk`.
    pub priority: Priority,
    /// The job documents, in the order the jobs were sent (a job whose
    /// `idempotency_key` was seen before is the job it created then).
    pub jobs: Vec<V2JobDocument>,
}

#[async_trait]
impl Writer for BatchAccepted {
    async fn write(self, _req: &mut Request, _depot: &mut Depot, res: &mut Response) {
        res.render(Json(self));
    }
}

impl salvo::oapi::EndpointOutRegister for BatchAccepted {
    fn register(components: &mut salvo::oapi::Components, operation: &mut salvo::oapi::Operation) {
        let schema = BatchAccepted::to_schema(components);
        operation.responses.insert(
            "200",
            oapi::Response::new("The batch's id and its jobs' documents")
                .add_content("application/json", oapi::Content::new(schema)),
        );
        crate::error::register_key_answers(components, operation);
        crate::error::register_rate_limit(components, operation);
    }
}

/// Queue a batch of segmentation jobs.
///
/// 1 to 1,000 jobs, each with the fields of `/enqueue` and its own optional
/// `idempotency_key`. Every job is checked first: a 422 `invalid_items` names each
/// invalid job by its index and field, and then nothing is written. Otherwise the batch
/// and all its jobs are written in one transaction. `priority` is `interactive` (the
/// default) or `bulk`: bulk jobs run only when no interactive job of their model waits
/// (and in a share of the claims, `FOODSEG_BULK_SHARE`), the keys that send bulk jobs
/// taking turns. A job's `idempotency_key` works as the `Idempotency-Key` header does for
/// `/enqueue` (a retried batch answers the batch and the jobs the first one created).
/// Needs a key with scope `submit` when keys are required (the default).
#[endpoint(tags("v2"), security(("bearer" = [])), request_body = BatchRequest)]
async fn submit_batch(req: &mut Request, depot: &mut Depot) -> Result<BatchAccepted, ApiError> {
    let state = ready_state(depot)?;
    let caller = crate::auth::caller(depot).cloned();
    state
        .limits
        .check(crate::limits::Route::Enqueue, caller.as_ref())?;
    let body = small_body(req, MAX_BODY_BYTES, BODY_TIMEOUT).await?;
    let parsed = batch::parse(&body, &state.net_policy)?;
    let owner = match &caller {
        Some(Caller::Key(key)) => Some(key.id),
        _ => None,
    };
    let batch_id = BatchId::new();
    let registry = state.registry.current();
    let mut items = Vec::with_capacity(parsed.jobs.len());
    let mut errors = Vec::new();
    for (index, (request, key)) in parsed.jobs.into_iter().enumerate() {
        let model = match registry.resolve(request.model_id.as_deref()) {
            Ok(model) => model,
            Err(e) => {
                let e = ApiError::UnknownModel {
                    requested: e.requested,
                    known: e.known,
                };
                errors.push(ItemError::of(index, &e));
                continue;
            }
        };
        // The fingerprint of a single `/enqueue` of the same job: a key works the same
        // on either route.
        let key = key.map(|key| {
            Fingerprint::new("enqueue")
                .part(request.image_url.as_bytes())
                .optional(request.model_id.as_deref())
                .optional(request.webhook_url.as_deref())
                .key(
                    key,
                    idempotency_scope(caller.as_ref()),
                    state.idempotency_keep,
                )
        });
        let model_id = request
            .model_id
            .clone()
            .unwrap_or_else(|| model.primary_id().to_string());
        let mut job = new_job(
            &state,
            JobId::new(),
            (model_id, model),
            request.image_url,
            request.webhook_url,
            owner,
        );
        job.priority = parsed.priority;
        job.batch_id = Some(batch_id);
        items.push((job, key));
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidItems(errors));
    }
    let new = NewBatch {
        id: batch_id,
        owner,
        priority: parsed.priority,
        items,
    };
    let actor = caller.as_ref().map_or_else(|| "api".into(), Caller::actor);
    let (batch_id, items) = match with_deadline(state.store.enqueue_batch(&new, &actor)).await? {
        BatchWrite::Written { batch_id, items } => (batch_id, items),
        BatchWrite::KeyReused { index, job_id } => {
            let e = ApiError::IdempotencyKeyReused(job_id);
            return Err(ApiError::InvalidItems(vec![ItemError {
                field: Some("idempotency_key".into()),
                ..ItemError::of(index, &e)
            }]));
        }
    };
    let created = items.iter().filter(|i| !i.replayed).count();
    if created > 0 {
        state.waker.wake();
    }
    for item in items.iter().filter(|i| !i.replayed) {
        metrics::counter!(crate::metrics::JOBS_ENQUEUED_TOTAL, "model" => item.job.model_name.clone())
            .increment(1);
    }
    tracing::info!(%batch_id, jobs = items.len(), created, priority = %parsed.priority, "batch queued");
    Ok(BatchAccepted {
        batch_id: batch_id.to_string(),
        priority: parsed.priority,
        jobs: items.iter().map(|i| V2JobDocument::from(&i.job)).collect(),
    })
}

/// A batch and where its jobs stand.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(name = "BatchProgress"))]
pub struct BatchView {
    pub batch_id: String,
    /// `interactive` or `bulk`.
    pub priority: Priority,
    /// Jobs sent in the batch.
    pub size: i32,
    pub created_at: DateTime<Utc>,
    /// Jobs per state (`MFR.Job.*` statuses).
    pub counts: BatchCounts,
    /// Seconds until its last job finishes at the batch's rate over the last five
    /// minutes; null while no job finished in that time, 0 once done.
    pub eta_seconds: Option<f64>,
    /// When its last job finished, once all have.
    pub finished_at: Option<DateTime<Utc>>,
    /// When the rest of the batch was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// A batch's jobs per state.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCounts {
    #[serde(rename = "MFR.Job.QUEUED")]
    pub queued: i64,
    #[serde(rename = "MFR.Job.IN_PROGRESS")]
    pub in_progress: i64,
    #[serde(rename = "MFR.Job.SUCCESS")]
    pub success: i64,
    #[serde(rename = "MFR.Job.ERROR")]
    pub error: i64,
}

impl From<&BatchProgress> for BatchView {
    fn from(b: &BatchProgress) -> Self {
        BatchView {
            batch_id: b.id.to_string(),
            priority: b.priority,
            size: b.size,
            created_at: b.created_at,
            counts: BatchCounts {
                queued: b.queued,
                in_progress: b.running,
                success: b.succeeded,
                error: b.failed,
            },
            eta_seconds: b.eta_seconds().map(|s| (s * 10.0).round() / 10.0),
            finished_at: b.finished_at,
            cancelled_at: b.cancelled_at,
        }
    }
}

#[async_trait]
impl Writer for BatchView {
    async fn write(self, _req: &mut Request, _depot: &mut Depot, res: &mut Response) {
        res.render(Json(self));
    }
}

impl salvo::oapi::EndpointOutRegister for BatchView {
    fn register(components: &mut salvo::oapi::Components, operation: &mut salvo::oapi::Operation) {
        let schema = BatchView::to_schema(components);
        operation.responses.insert(
            "200",
            oapi::Response::new("The batch's counts per state and its estimated time to finish")
                .add_content("application/json", oapi::Content::new(schema)),
        );
        crate::error::register_key_answers(components, operation);
    }
}

/// Whose batches the caller may see: its own (`Some`), or every one (an operator key).
fn viewer(depot: &Depot) -> Result<Option<ApiKeyId>, ApiError> {
    match crate::auth::caller(depot) {
        Some(Caller::Key(key)) if key.has_scope(Scope::Operator) => Ok(None),
        Some(Caller::Key(key)) => Ok(Some(key.id)),
        _ => Err(ApiError::Unauthorized {
            reason: "this route needs an API key: send Authorization: Bearer <token>",
            token_given: false,
        }),
    }
}

/// A batch's progress.
///
/// Its jobs per state and an estimated time to finish. The key that sent the batch sees
/// it, and operator keys; any other key gets 404.
#[endpoint(tags("v2"), security(("bearer" = [])))]
async fn batch_progress(
    batch_id: PathParam<String>,
    depot: &mut Depot,
) -> Result<BatchView, ApiError> {
    let raw = batch_id.into_inner();
    let state = ready_state(depot)?;
    let owner = viewer(depot)?;
    let id: BatchId = raw
        .parse()
        .map_err(|_| ApiError::BatchNotFound(raw.clone()))?;
    let batch = with_deadline(state.store.batch(id, owner))
        .await?
        .ok_or(ApiError::BatchNotFound(raw))?;
    Ok(BatchView::from(&batch))
}

/// Cancel the rest of a batch.
///
/// Every job of the batch still queued ends with `MFR.Job.ERROR` ("Job cancelled with the
/// rest of its batch") and its webhook; jobs already running finish. Answers the batch's
/// progress after the cancel. Cancelling again changes nothing. The key that sent the
/// batch may cancel it, and operator keys.
#[endpoint(tags("v2"), security(("bearer" = [])))]
async fn cancel_batch(
    batch_id: PathParam<String>,
    depot: &mut Depot,
) -> Result<BatchView, ApiError> {
    let raw = batch_id.into_inner();
    let state = ready_state(depot)?;
    let owner = viewer(depot)?;
    let id: BatchId = raw
        .parse()
        .map_err(|_| ApiError::BatchNotFound(raw.clone()))?;
    let actor = crate::auth::caller(depot).map_or_else(|| "api".into(), Caller::actor);
    match with_deadline(state.store.cancel_batch(id, owner, &actor)).await? {
        BatchCancel::NotFound => return Err(ApiError::BatchNotFound(raw)),
        BatchCancel::Cancelled(jobs) => {
            if !jobs.is_empty() {
                state.waker.wake();
                tracing::info!(%id, cancelled = jobs.len(), %actor, "rest of batch cancelled");
            }
        }
    }
    let batch = with_deadline(state.store.batch(id, owner))
        .await?
        .ok_or(ApiError::BatchNotFound(raw))?;
    Ok(BatchView::from(&batch))
}
