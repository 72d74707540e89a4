//! Hoops around every request: the request span and its metrics, JSON error bodies.

use salvo::prelude::*;
use tracing::Instrument;

use crate::error::status_body;

/// Runs the rest of the chain inside an HTTP server span (continuing a caller's
/// `traceparent`), so the job stores the trace it was enqueued in, and records the
/// request in `foodseg_http_server_request_duration_seconds`. A service hoop: it also
/// sees requests no route matched.
#[handler]
pub async fn trace_request(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
    ctrl: &mut FlowCtrl,
) {
    let started = std::time::Instant::now();
    let method = method_of(req.method());
    let route = route_of(req);
    let span = foodseg_telemetry::spans::http_server(
        method,
        &route,
        req.scheme().as_str(),
        req.uri().path(),
        req.headers(),
    );
    ctrl.call_next(req, depot, res)
        .instrument(span.clone())
        .await;
    let status = res.status_code.unwrap_or(StatusCode::OK).as_u16();
    foodseg_telemetry::spans::record_http_status(&span, status);
    foodseg_telemetry::metrics::http_server_request(&route, method, status, started.elapsed());
}

/// `http.route` of requests that matched no route (one value, whatever the path).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The route template salvo matched (`/status/{job_id}`), so spans and metrics carry a
/// bounded set of values; [`UNMATCHED_ROUTE`] when no route matched.
fn route_of(req: &Request) -> String {
    let matched = req.matched_path();
    if !matched.is_empty() {
        format!("/{}", matched.trim_start_matches('/'))
    } else if req.uri().path() == "/" {
        "/".to_owned()
    } else {
        UNMATCHED_ROUTE.to_owned()
    }
}

/// The request method, or `_OTHER` for methods outside HTTP's standard set (the
/// OpenTelemetry convention, so an arbitrary method cannot mint a new series).
fn method_of(method: &salvo::http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("_OTHER")
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
