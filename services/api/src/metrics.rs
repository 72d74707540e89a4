//! The api's own Prometheus series (shared ones are in `foodseg_telemetry::metrics`):
//! described, and registered at zero for their known label values, at startup, so
//! `/metrics` lists every series dashboards and alerts use before it first moves.

use foodseg_models::Registry;

use crate::limits::{RATE_LIMITED_TOTAL, UPLOADS_IN_FLIGHT};

/// Jobs accepted (by `/enqueue` or `/v2/uploads`; idempotent replays not counted), by model.
pub const JOBS_ENQUEUED_TOTAL: &str = "foodseg_jobs_enqueued_total";
/// Requests answered with the job an earlier request (same idempotency key) created.
pub const IDEMPOTENT_REPLAYS_TOTAL: &str = "foodseg_api_idempotent_replays_total";
/// Uploads accepted, by model.
pub const UPLOADS_TOTAL: &str = "foodseg_uploads_total";
/// Size of accepted uploads.
pub const UPLOAD_BYTES: &str = "foodseg_upload_bytes";

/// Installs the process's recorder (idempotent) and registers the api's series; the
/// recorder may be unavailable, in which case `/metrics` answers 503.
pub fn install(registry: &Registry) {
    if let Err(e) = foodseg_telemetry::metrics::install() {
        tracing::warn!(error = %e, "metrics recorder unavailable; /metrics answers 503");
        return;
    }
    describe();
    for model in registry.models() {
        metrics::counter!(JOBS_ENQUEUED_TOTAL, "model" => model.name().to_owned()).increment(0);
        metrics::counter!(UPLOADS_TOTAL, "model" => model.name().to_owned()).increment(0);
    }
    metrics::counter!(IDEMPOTENT_REPLAYS_TOTAL).increment(0);
    for route in ["enqueue", "uploads", "feed", "redeliver"] {
        metrics::counter!(RATE_LIMITED_TOTAL, "route" => route, "reason" => "rate").increment(0);
    }
    metrics::counter!(RATE_LIMITED_TOTAL, "route" => "uploads", "reason" => "uploads_in_flight")
        .increment(0);
    metrics::gauge!(UPLOADS_IN_FLIGHT).increment(0.0);
    // Registered without a sample: renders as an empty histogram.
    let _ = metrics::histogram!(UPLOAD_BYTES);
}

fn describe() {
    crate::limits::describe();
    metrics::describe_counter!(
        JOBS_ENQUEUED_TOTAL,
        "Jobs accepted by /enqueue or /v2/uploads (idempotent replays not counted), by model"
    );
    metrics::describe_counter!(
        IDEMPOTENT_REPLAYS_TOTAL,
        "Requests answered with the job an earlier request with the same Idempotency-Key created"
    );
    metrics::describe_counter!(UPLOADS_TOTAL, "Images accepted by /v2/uploads, by model");
    metrics::describe_histogram!(
        UPLOAD_BYTES,
        metrics::Unit::Bytes,
        "Size of the images accepted by /v2/uploads"
    );
}
