//! `POST /v2/uploads`: a job for an image sent as bytes instead of a URL. The bytes are
//! stored with the job, in the same transaction, for the worker to read; the scheduler
//! purges them once the job finished and the retention period passed.

use chrono::Utc;
use foodseg_engine::JobId;
use foodseg_engine::store::{NewUpload, upload_image_url};
use salvo::extract::Metadata;
use salvo::http::ParseError;
use salvo::oapi::schema::{BasicType, KnownFormat, Object, SchemaFormat};
use salvo::oapi::{
    self, Components, EndpointArgRegister, Operation, Parameter, ParameterIn, RequestBody, Required,
};
use salvo::prelude::*;
use uuid::Uuid;

use super::jobs::{DocumentReply, idempotency_scope, new_job, store_job};
use crate::enqueue::check_url;
use crate::error::ApiError;
use crate::idempotency::{Fingerprint, KeyHeader};
use crate::request::state;
use crate::upload::{UploadError, check_filename, check_image, discard, receive};

pub fn router() -> Router {
    Router::with_path("v2/uploads").post(upload_image)
}

/// Queue a segmentation job for an uploaded image.
///
/// The body is the image itself (any Content-Type; the type is sniffed from the bytes),
/// or a `multipart/form-data` body whose `file` part is the image. JPEG, PNG and WebP are
/// accepted, up to 20 MiB unless the server is configured otherwise. Answers the v1 job
/// document with status `MFR.Job.QUEUED`; its `request.image_url` is
/// `upload://<job_id>/<filename>` and each result item's `image_id` is the file name.
///
/// An `Idempotency-Key` header works as for `/enqueue`: the same key with the same bytes
/// and parameters answers the job the first upload created.
#[endpoint(tags("v2"), security(("bearer" = [])))]
async fn upload_image(
    query: UploadQuery,
    key: KeyHeader,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<DocumentReply, UploadError> {
    let state = state(depot)
        .ok_or_else(|| ApiError::Internal("application state missing from the request".into()))?
        .clone();
    // Refused before a byte of the body is read: over the caller's budget, or too many
    // uploads in flight. The slot is held until the upload is stored.
    let limits = state.uploads;
    let caller = crate::auth::caller(depot).cloned();
    let admitted = state
        .limits
        .check(crate::limits::Route::Uploads, caller.as_ref())
        .and_then(|()| state.limits.upload_slot(caller.as_ref()));
    let _slot = match admitted {
        Ok(slot) => slot,
        Err(refused) => {
            discard(req, &limits).await;
            return Err(refused.into());
        }
    };
    let key = match key.0 {
        Ok(key) => key,
        Err(e) => {
            discard(req, &limits).await;
            return Err(e.into());
        }
    };
    // The whole body within the timeout: a client that trickles its bytes gets 408 and
    // gives its slot back.
    let received = tokio::time::timeout(limits.body_timeout, receive(req, &limits))
        .await
        .map_err(|_| ApiError::BodyTimeout(limits.body_timeout))??;
    let image = check_image(&received.bytes, &limits)?;
    let filename = check_filename(
        query.filename.as_deref().or(received.filename.as_deref()),
        image,
    )?;
    let model_id = query.model_id.or(received.model_id);
    if model_id.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err(ApiError::EmptyField { field: "model_id" }.into());
    }
    let registry = state.registry.current();
    let model = registry
        .resolve(model_id.as_deref())
        .map_err(|e| ApiError::UnknownModel {
            requested: e.requested,
            known: e.known,
        })?;
    let model_id = model_id.unwrap_or_else(|| model.primary_id().to_string());
    let webhook_url = match query.webhook_url.or(received.webhook_url) {
        Some(url) if url.trim().is_empty() => {
            return Err(ApiError::EmptyField {
                field: "webhook_url",
            }
            .into());
        }
        Some(url) => Some(check_url("webhook_url", url, &state.net_policy)?),
        None => None,
    };
    if !state.schema_ready() {
        return Err(ApiError::DatabaseUnavailable(None).into());
    }
    let key = key.map(|key| {
        Fingerprint::new("upload")
            .part(&received.bytes)
            .part(filename.as_bytes())
            .part(model_id.as_bytes())
            .optional(webhook_url.as_deref())
            .key(
                key,
                idempotency_scope(caller.as_ref()),
                state.idempotency_keep,
            )
    });
    let owner = match &caller {
        Some(crate::auth::Caller::Key(key)) => Some(key.id),
        _ => None,
    };
    let job_id = JobId::new();
    let size = received.bytes.len();
    let job = new_job(
        &state,
        job_id,
        (model_id, model),
        upload_image_url(job_id, &filename),
        webhook_url,
        owner,
    );
    let upload = NewUpload {
        id: Uuid::now_v7(),
        content_type: image.mime().to_string(),
        filename,
        bytes: received.bytes,
        expires_at: Utc::now()
            + chrono::Duration::from_std(limits.max_age).unwrap_or(chrono::Duration::days(7)),
    };
    let (job, reply) = store_job(&state, &job, Some(&upload), key).await?;
    if reply.is_replay() {
        return Ok(reply);
    }
    metrics::counter!(crate::metrics::JOBS_ENQUEUED_TOTAL, "model" => job.model_name.clone())
        .increment(1);
    metrics::counter!(crate::metrics::UPLOADS_TOTAL, "model" => job.model_name.clone())
        .increment(1);
    metrics::histogram!(crate::metrics::UPLOAD_BYTES).record(size as f64);
    tracing::info!(
        job_id = %job.id,
        model = %job.model_name,
        bytes = size,
        content_type = image.mime(),
        trace_id = job.trace_id.as_deref().unwrap_or(""),
        "upload queued"
    );
    Ok(reply)
}

/// The query parameters of `POST /v2/uploads`. Extraction never fails: each is checked
/// by the handler, which answers with the api's JSON errors.
#[derive(Debug, Default)]
pub struct UploadQuery {
    filename: Option<String>,
    model_id: Option<String>,
    webhook_url: Option<String>,
}

impl<'ex> salvo::Extractible<'ex> for UploadQuery {
    fn metadata() -> &'static Metadata {
        static METADATA: Metadata = Metadata::new("UploadQuery");
        &METADATA
    }

    #[allow(refining_impl_trait)]
    async fn extract(req: &'ex mut Request, _depot: &'ex mut Depot) -> Result<Self, ParseError> {
        let get = |name: &str| req.queries().get(name).cloned();
        Ok(UploadQuery {
            filename: get("filename"),
            model_id: get("model_id"),
            webhook_url: get("webhook_url"),
        })
    }
}

impl EndpointArgRegister for UploadQuery {
    fn register(_components: &mut Components, operation: &mut Operation, _arg: &str) {
        let string = || Object::with_type(BasicType::String);
        for (name, description) in [
            (
                "filename",
                "File name of the image; it becomes each result item's `image_id`. \
                 Defaults to the multipart part's file name, else `upload.<ext>`.",
            ),
            (
                "model_id",
                "A model name or alias (e.g. `124096`); absent for the default model.",
            ),
            (
                "webhook_url",
                "http(s) URL that receives the finished job document, as for /enqueue.",
            ),
        ] {
            operation.parameters.insert(
                Parameter::new(name)
                    .location(ParameterIn::Query)
                    .required(Required::False)
                    .description(description)
                    .schema(string()),
            );
        }
        let binary = || {
            Object::with_type(BasicType::String)
                .format(SchemaFormat::KnownFormat(KnownFormat::Binary))
        };
        let mut body = RequestBody::new()
            .description(
                "The image bytes (JPEG, PNG or WebP; the type is sniffed, any Content-Type is \
                 accepted), or a multipart/form-data body with the image in its `file` part.",
            )
            .required(Required::True);
        for content_type in [
            "application/octet-stream",
            "image/jpeg",
            "image/png",
            "image/webp",
        ] {
            body = body.add_content(content_type, oapi::Content::new(binary()));
        }
        let form = Object::new()
            .property("file", binary())
            .required("file")
            .property("model_id", string())
            .property("webhook_url", string());
        body = body.add_content("multipart/form-data", oapi::Content::new(form));
        operation.request_body = Some(body);
    }
}
