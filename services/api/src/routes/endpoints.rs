//! Operator routes for webhook endpoints (a webhook URL's scheme, host and port): their
//! health and backlog with the latest pauses and resumes (`GET /endpoints`), and pausing
//! or resuming one by hand (`POST /endpoints/pause`, `POST /endpoints/resume`).

use foodseg_engine::document::format_time;
use foodseg_engine::store::{EndpointEvent, EndpointView};
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::reports::KeyedJson;
use crate::endpoint_steer::{self, Steer};
use crate::enqueue::{MAX_BODY_BYTES, kind, string_field};
use crate::error::{ApiError, ErrorBody};
use crate::request::{ready_state, small_body, with_deadline};

/// WebhookEndpoints `GET /endpoints` lists at most.
const LISTED: i64 = 1000;
/// Pauses and resumes `GET /endpoints` shows.
const EVENTS: i64 = 20;
/// How long a pause or resume body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn router() -> Router {
    Router::with_path("endpoints")
        .get(list)
        .push(Router::with_path("pause").post(pause))
        .push(Router::with_path("resume").post(resume))
}

/// The webhook endpoints and their latest pauses and resumes.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoints {
    /// Paused endpoints first, then those with deliveries waiting, then the others, each
    /// group most recently changed first (at most 1,000).
    pub endpoints: Vec<WebhookEndpoint>,
    /// The latest 20 pauses and resumes, newest first.
    pub events: Vec<WebhookEndpointEvent>,
}

/// One webhook endpoint: its health, its backlog and the limits it is sent within.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    /// `scheme://host:port`, e.g. `https://mfr.example:443`.
    pub endpoint: String,
    /// `active` (sent within its limits) or `paused` (nothing sent but probes; none when
    /// paused by hand).
    pub state: String,
    /// Paused by hand: only a hand resumes it, and no probe is sent.
    pub manual: bool,
    /// While paused: since when (RFC 3339).
    pub paused_at: Option<String>,
    /// While paused: who paused it (a scheduler, or an operator's key).
    pub paused_by: Option<String>,
    /// While paused by failures: when the next probe is due.
    pub next_probe_at: Option<String>,
    /// Failed attempts since the endpoint last answered.
    pub failures: i32,
    /// The last failed attempt's error (URLs in it redacted).
    pub last_error: Option<String>,
    pub last_failure_at: Option<String>,
    /// Deliveries waiting (pending).
    pub waiting: i64,
    /// Attempts in flight now.
    pub in_flight: i64,
    /// The rate and concurrency the schedulers apply (`50/1s, 8 at once`), once one has
    /// sent to it.
    pub limits: Option<String>,
    pub updated_at: String,
}

/// A pause or resume of an endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointEvent {
    pub endpoint: String,
    /// RFC 3339.
    pub at: String,
    /// `paused` or `resumed`.
    pub action: String,
    /// A scheduler id, `key:<name>` (an operator route) or `console:<name>`.
    pub actor: String,
    /// Why, e.g. `5 failed attempts in a row`, `paused by hand`.
    pub detail: Option<String>,
}

/// The body of `POST /endpoints/pause` and `/endpoints/resume`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointRequest {
    /// An endpoint as `GET /endpoints` lists it (`https://mfr.example:443`), or any URL
    /// of it (`https://mfr.example/webhooks/foodseg`).
    pub endpoint: String,
}

/// What a pause or resume did.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointSteered {
    /// The endpoint as it is now (null only in the rare case it is no longer among the
    /// 1,000 endpoints `GET /endpoints` lists).
    pub endpoint: Option<WebhookEndpoint>,
    /// Whether its state changed: `false` when it already was paused by hand (pause) or
    /// active (resume).
    pub changed: bool,
}

impl From<EndpointView> for WebhookEndpoint {
    fn from(v: EndpointView) -> Self {
        WebhookEndpoint {
            endpoint: v.endpoint,
            state: v.state.as_str().to_string(),
            manual: v.manual,
            paused_at: v.paused_at.map(format_time),
            paused_by: v.paused_by,
            next_probe_at: v.next_probe_at.map(format_time),
            failures: v.failures,
            last_error: v.last_error.as_deref().map(foodseg_http::redact::urls_in),
            last_failure_at: v.last_failure_at.map(format_time),
            waiting: v.waiting,
            in_flight: v.in_flight,
            limits: v.limits,
            updated_at: format_time(v.updated_at),
        }
    }
}

impl From<EndpointEvent> for WebhookEndpointEvent {
    fn from(e: EndpointEvent) -> Self {
        WebhookEndpointEvent {
            endpoint: e.endpoint,
            at: format_time(e.at),
            action: e.action.as_str().to_string(),
            actor: e.actor,
            detail: e.detail.as_deref().map(foodseg_http::redact::urls_in),
        }
    }
}

/// The webhook endpoints: state, consecutive failures, last error, deliveries waiting
/// and in flight, limits; and the latest 20 pauses and resumes.
///
/// Needs an API key with scope `operator`.
#[endpoint(tags("operator"), security(("bearer" = [])))]
async fn list(depot: &mut Depot) -> Result<KeyedJson<WebhookEndpoints>, ApiError> {
    let state = ready_state(depot)?;
    let (endpoints, events) = tokio::try_join!(
        with_deadline(state.store.endpoints(LISTED)),
        with_deadline(state.store.endpoint_events(EVENTS)),
    )?;
    Ok(KeyedJson(WebhookEndpoints {
        endpoints: endpoints.into_iter().map(WebhookEndpoint::from).collect(),
        events: events.into_iter().map(WebhookEndpointEvent::from).collect(),
    }))
}

/// Pause a webhook endpoint by hand: nothing, not even probes, is sent to it until it is
/// resumed by hand; its deliveries wait without spending attempts.
///
/// The body names the endpoint as listed or by any URL of it. Answers the endpoint and
/// whether it changed (`false` when it already was paused by hand); 404 when no delivery
/// was ever made to it. Needs an API key with scope `operator`.
#[endpoint(tags("operator"), security(("bearer" = [])), request_body = EndpointRequest)]
async fn pause(req: &mut Request, depot: &mut Depot) -> Result<Json<EndpointSteered>, SteerError> {
    steer(Steer::Pause, req, depot).await
}

/// Resume a webhook endpoint by hand, whatever paused it: its waiting deliveries become
/// due at once, oldest first, sent within its rate.
///
/// The body names the endpoint as listed or by any URL of it. Answers the endpoint and
/// whether it changed (`false` when it already was active); 404 when no delivery was ever
/// made to it. Needs an API key with scope `operator`.
#[endpoint(tags("operator"), security(("bearer" = [])), request_body = EndpointRequest)]
async fn resume(req: &mut Request, depot: &mut Depot) -> Result<Json<EndpointSteered>, SteerError> {
    steer(Steer::Resume, req, depot).await
}

async fn steer(
    action: Steer,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<EndpointSteered>, SteerError> {
    let body = small_body(req, MAX_BODY_BYTES, BODY_TIMEOUT).await?;
    let endpoint = parse(&body)?;
    let state = ready_state(depot)?;
    let actor = crate::auth::caller(depot).map_or_else(|| "operator".into(), |c| c.actor());
    let steered = endpoint_steer::steer(&state, action, &endpoint, &actor).await?;
    Ok(Json(EndpointSteered {
        endpoint: steered.view.map(WebhookEndpoint::from),
        changed: steered.changed,
    }))
}

/// The `endpoint` of a JSON body (read as JSON whatever the Content-Type).
fn parse(body: &[u8]) -> Result<String, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(ApiError::NotAnObject(kind(&value)));
    };
    match map.get("endpoint") {
        None | Some(Value::Null) => Err(ApiError::MissingField { field: "endpoint" }),
        Some(v) => string_field("endpoint", v),
    }
}

/// An [`ApiError`] of a pause or resume, documented with the answers these routes give.
#[derive(Debug)]
pub struct SteerError(ApiError);

impl From<ApiError> for SteerError {
    fn from(e: ApiError) -> Self {
        SteerError(e)
    }
}

#[async_trait]
impl Writer for SteerError {
    async fn write(self, req: &mut Request, depot: &mut Depot, res: &mut Response) {
        self.0.write(req, depot, res).await;
    }
}

impl EndpointOutRegister for SteerError {
    fn register(components: &mut Components, operation: &mut Operation) {
        crate::error::register_key_answers(components, operation);
        let schema = ErrorBody::to_schema(components);
        for (status, brief) in [
            ("400", "The body is not JSON, or not a JSON object"),
            (
                "404",
                "No webhook endpoint of that name: no delivery was ever made to it",
            ),
            ("408", "The request body did not arrive in time"),
            ("413", "Request body over 64 KiB"),
            (
                "422",
                "Field endpoint missing, not a string, empty, over 2,048 characters or with a NUL",
            ),
            (
                "429",
                "Too many refused API keys from this client address; retry after Retry-After seconds",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_one_endpoint() {
        assert_eq!(
            parse(br#"{"endpoint": "https://mfr.example:443", "x": 1}"#).unwrap(),
            "https://mfr.example:443"
        );
        for (body, code) in [
            (&b"{"[..], "invalid_json"),
            (b"[1]", "invalid_json"),
            (b"", "invalid_json"),
            (b"{}", "missing_field"),
            (br#"{"endpoint": null}"#, "missing_field"),
            (br#"{"endpoint": 443}"#, "invalid_type"),
            (br#"{"endpoint": " "}"#, "empty_field"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.code(), code, "{}", String::from_utf8_lossy(body));
        }
    }
}
