//! Hoops shared by all routes: state injection, the request span, JSON error bodies.

use salvo::prelude::*;
use tracing::Instrument;

use crate::error::{ApiError, status_body};
use crate::state::AppState;

/// Puts the [`AppState`] into each request's depot.
pub struct Inject(pub AppState);

#[async_trait]
impl Handler for Inject {
    async fn handle(
        &self,
        _req: &mut Request,
        depot: &mut Depot,
        _res: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        depot.insert_typed(self.0.clone());
    }
}

/// The state injected by [`Inject`].
pub fn state(depot: &Depot) -> Option<&AppState> {
    depot.get_typed::<AppState>().ok()
}

/// The injected state once the migrations have been applied (503 until then): how a
/// handler that reads the database starts.
pub fn ready_state(depot: &Depot) -> Result<AppState, ApiError> {
    let state = state(depot)
        .ok_or_else(|| ApiError::Internal("application state missing from the request".into()))?
        .clone();
    if !state.schema_ready() {
        return Err(ApiError::DatabaseUnavailable(None));
    }
    Ok(state)
}

/// Runs the rest of the chain inside an HTTP server span (continuing a caller's
/// `traceparent`), so the job stores the trace it was enqueued in.
#[handler]
pub async fn trace_request(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
    ctrl: &mut FlowCtrl,
) {
    let method = req.method().to_string();
    let route = route_of(req.uri().path());
    let span = foodseg_telemetry::spans::http_server(&method, route, req.headers());
    ctrl.call_next(req, depot, res)
        .instrument(span.clone())
        .await;
    let status = res.status_code.unwrap_or(StatusCode::OK);
    foodseg_telemetry::spans::record_http_status(&span, status.as_u16());
}

/// The route template of a path (ids replaced), for span names without high cardinality.
fn route_of(path: &str) -> &'static str {
    match path {
        "/enqueue" => "/enqueue",
        "/health/live" => "/health/live",
        "/health/ready" => "/health/ready",
        "/openapi.json" => "/openapi.json",
        "/metrics" => "/metrics",
        "/v2/uploads" => "/v2/uploads",
        p if p.starts_with("/status/") => "/status/{job_id}",
        p if p.starts_with("/jobs/") && p.ends_with("/events") => "/jobs/{job_id}/events",
        p if p.starts_with("/jobs/") && p.ends_with("/deliveries") => "/jobs/{job_id}/deliveries",
        p if p.starts_with("/jobs/") && p.ends_with("/redeliver") => "/jobs/{job_id}/redeliver",
        p if p.starts_with("/docs") => "/docs",
        _ => "other",
    }
}

/// Catcher hoop: error statuses without a body (unknown route, wrong method) get the
/// same JSON error body as handler errors.
#[handler]
pub async fn json_errors(res: &mut Response, ctrl: &mut FlowCtrl) {
    if let Some(status) = res.status_code
        && (status.is_client_error() || status.is_server_error())
    {
        res.render(Json(status_body(status)));
        ctrl.skip_rest();
    }
}
