//! The MFR v1 contract: `POST /enqueue` and `GET /status/{job_id}`.

use foodseg_engine::JobId;
use foodseg_engine::document::JobDocument;
use foodseg_engine::store::{IdempotencyKey, IdempotencyScope, Idempotent, Job, NewJob, NewUpload};
use salvo::oapi::ToSchema;
use salvo::oapi::extract::PathParam;
use salvo::prelude::*;

use crate::enqueue::{self, EnqueueRequest, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::idempotency::{self, Fingerprint, KeyHeader};
use crate::request::{small_body, state, with_deadline};
use crate::state::AppState;

/// Actor recorded in the job's event log for enqueues.
const ACTOR: &str = "api";
/// How long an `/enqueue` body (at most 64 KiB of JSON) may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn router() -> Router {
    Router::new()
        .push(Router::with_path("enqueue").post(enqueue_job))
        .push(Router::with_path("status/{job_id}").get(job_status))
}

/// A job document answer; a replayed one (an `Idempotency-Key` seen before) says so in
/// the `Idempotency-Replayed` header.
pub struct DocumentReply {
    document: JobDocument,
    replayed: bool,
}

impl DocumentReply {
    pub fn new(job: &Job) -> Self {
        DocumentReply {
            document: JobDocument::from(job),
            replayed: false,
        }
    }

    /// Whether this answers an earlier request's job (same idempotency key).
    pub fn is_replay(&self) -> bool {
        self.replayed
    }
}

#[async_trait]
impl Writer for DocumentReply {
    async fn write(self, _req: &mut Request, _depot: &mut Depot, res: &mut Response) {
        if self.replayed {
            res.headers_mut().insert(
                idempotency::REPLAYED_HEADER,
                salvo::http::HeaderValue::from_static("true"),
            );
        }
        res.render(Json(self.document));
    }
}

impl salvo::oapi::EndpointOutRegister for DocumentReply {
    fn register(components: &mut salvo::oapi::Components, operation: &mut salvo::oapi::Operation) {
        let schema = JobDocument::to_schema(components);
        operation.responses.insert(
            "200",
            salvo::oapi::Response::new(
                "The job document (of the job an earlier request with the same \
                 Idempotency-Key created, when the `Idempotency-Replayed` header is `true`)",
            )
            .add_content("application/json", salvo::oapi::Content::new(schema)),
        );
    }
}

/// Queue a segmentation job.
///
/// The body is parsed as JSON whatever the declared Content-Type. Answers the job
/// document with status `MFR.Job.QUEUED`; the result is posted to `webhook_url` and can
/// be read from `/status/{job_id}`.
///
/// With an `Idempotency-Key` header (1–255 printable ASCII characters), a retry of the
/// same request answers the job the first one created, in its current state, with
/// `Idempotency-Replayed: true`; the same key with a different body is refused (422
/// `idempotency_key_reused`). Keys are kept for `FOODSEG_IDEMPOTENCY_HOURS` (48 h).
#[endpoint(tags("v1"), request_body = EnqueueRequest)]
async fn enqueue_job(
    key: KeyHeader,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<DocumentReply, ApiError> {
    let state = state(depot).ok_or_else(missing_state)?.clone();
    state
        .limits
        .check(crate::limits::Route::Enqueue, crate::auth::caller(depot))?;
    let body = small_body(req, MAX_BODY_BYTES, BODY_TIMEOUT).await?;
    let key = key.0?;
    let request = enqueue::parse(&body, &state.net_policy)?;
    let registry = state.registry.current();
    let model =
        registry
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
    let caller = crate::auth::caller(depot);
    let key = key.map(|key| {
        Fingerprint::new("enqueue")
            .part(request.image_url.as_bytes())
            .optional(request.model_id.as_deref())
            .optional(request.webhook_url.as_deref())
            .key(key, idempotency_scope(caller), state.idempotency_keep)
    });
    let owner = with_deadline(state.v1_owner.of(caller, &state.store)).await?;
    let job = new_job(
        &state,
        JobId::new(),
        (model_id, model),
        request.image_url,
        request.webhook_url,
        owner,
    );
    let (job, reply) = store_job(&state, &job, None, key).await?;
    if !reply.is_replay() {
        metrics::counter!(crate::metrics::JOBS_ENQUEUED_TOTAL, "model" => job.model_name.clone())
            .increment(1);
        tracing::info!(job_id = %job.id, model = %job.model_name, trace_id = job.trace_id.as_deref().unwrap_or(""), "job queued");
    }
    Ok(reply)
}

/// The job an entry route (`/enqueue`, `/v2/uploads`) writes: the model it runs with (the
/// `model_id` asked for, and the registry's model), the URLs, its owner, the attempt
/// budget, and the trace of the request it came in.
pub(crate) fn new_job(
    state: &AppState,
    id: JobId,
    (model_id, model): (String, &foodseg_models::Model),
    image_url: String,
    webhook_url: Option<String>,
    owner: Option<foodseg_engine::ApiKeyId>,
) -> NewJob {
    let traceparent = foodseg_telemetry::trace::current_traceparent();
    let trace_id = foodseg_telemetry::trace::current_trace_id().or_else(|| {
        traceparent
            .as_deref()
            .and_then(foodseg_telemetry::trace::trace_id_of)
            .map(str::to_string)
    });
    NewJob {
        id,
        model_id,
        model_name: model.name().to_string(),
        image_url,
        webhook_url,
        max_attempts: state.max_attempts,
        trace_id,
        traceparent,
        owner,
        priority: foodseg_engine::Priority::Interactive,
        batch_id: None,
    }
}

/// Writes a new job (with its uploaded image, if any); with an idempotency key, only
/// when the key is new, else answers the job the key is bound to.
pub(crate) async fn store_job(
    state: &AppState,
    job: &NewJob,
    upload: Option<&NewUpload>,
    key: Option<IdempotencyKey>,
) -> Result<(Job, DocumentReply), ApiError> {
    let (stored, replayed) = match key {
        None => {
            let stored = match upload {
                Some(upload) => {
                    with_deadline(state.store.enqueue_upload(job, upload, ACTOR)).await?
                }
                // Written together with other requests' jobs, one commit for all.
                None => with_deadline(state.enqueuer.enqueue(job.clone(), ACTOR)).await?,
            };
            (stored, false)
        }
        Some(key) => {
            match with_deadline(state.store.enqueue_idempotent(job, upload, &key, ACTOR)).await? {
                Idempotent::Created(stored) => (stored, false),
                Idempotent::Replayed(stored) => {
                    metrics::counter!(crate::metrics::IDEMPOTENT_REPLAYS_TOTAL).increment(1);
                    (stored, true)
                }
                Idempotent::KeyReused { job_id } => {
                    return Err(ApiError::IdempotencyKeyReused(job_id));
                }
            }
        }
    };
    if !replayed {
        state.waker.wake();
    }
    let reply = DocumentReply {
        document: JobDocument::from(&stored),
        replayed,
    };
    Ok((stored, reply))
}

/// Whose `Idempotency-Key`s a request's key is among: its API key's, else its client
/// address's (as trusted proxies reveal it), so that a key names only the caller's own
/// jobs.
pub(crate) fn idempotency_scope(caller: Option<&crate::auth::Caller>) -> IdempotencyScope {
    match caller {
        Some(crate::auth::Caller::Key(key)) => IdempotencyScope::Key(key.id),
        Some(crate::auth::Caller::Anonymous(Some(ip))) => {
            IdempotencyScope::Address(ip.to_canonical().to_string())
        }
        Some(crate::auth::Caller::Anonymous(None)) | None => {
            IdempotencyScope::Address("unknown".into())
        }
    }
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
    Ok(DocumentReply::new(&job))
}

fn ensure_schema(state: &AppState) -> Result<(), ApiError> {
    if state.schema_ready() {
        Ok(())
    } else {
        Err(ApiError::DatabaseUnavailable(None))
    }
}

fn missing_state() -> ApiError {
    ApiError::Internal("application state missing from the request".into())
}
