//! The console's webhook endpoints page (`/console/endpoints`): each endpoint's state,
//! failures in a row, last error, deliveries waiting and in flight, and limits, with a
//! Pause or Resume button (CSRF-checked form posts, recorded with the session's key), and
//! the latest pauses and resumes below.

use askama::Template;
use chrono::Utc;
use foodseg_engine::domain::EndpointState;
use foodseg_engine::store::{EndpointEvent, EndpointView};
use salvo::prelude::*;

use super::page::{ConsoleError, render};
use super::pages::chrome;
use super::session::session;
use super::views::{Chrome, when};
use crate::endpoint_steer::{self, Steer};
use crate::request::{ready_state, with_deadline};

/// Endpoints the page lists at most.
const LISTED: i64 = 500;
/// Pauses and resumes the page shows.
const EVENTS: i64 = 20;

/// One endpoint, formatted.
pub struct EndpointLine {
    pub endpoint: String,
    pub paused: bool,
    pub manual: bool,
    pub paused_at: String,
    pub paused_by: String,
    pub next_probe: String,
    pub failures: i32,
    pub last_error: String,
    pub last_failure: String,
    pub waiting: i64,
    pub in_flight: i64,
    pub limits: String,
}

impl From<EndpointView> for EndpointLine {
    fn from(v: EndpointView) -> Self {
        EndpointLine {
            endpoint: v.endpoint,
            paused: v.state == EndpointState::Paused,
            manual: v.manual,
            paused_at: v.paused_at.map(when).unwrap_or_default(),
            paused_by: v.paused_by.unwrap_or_default(),
            next_probe: v.next_probe_at.map(when).unwrap_or_default(),
            failures: v.failures,
            last_error: v
                .last_error
                .as_deref()
                .map(foodseg_http::redact::urls_in)
                .unwrap_or_default(),
            last_failure: v.last_failure_at.map(when).unwrap_or_default(),
            waiting: v.waiting,
            in_flight: v.in_flight,
            limits: v.limits.unwrap_or_default(),
        }
    }
}

/// One pause or resume, formatted.
pub struct EndpointEventLine {
    pub at: String,
    pub endpoint: String,
    pub action: &'static str,
    pub actor: String,
    pub detail: String,
}

impl From<EndpointEvent> for EndpointEventLine {
    fn from(e: EndpointEvent) -> Self {
        EndpointEventLine {
            at: when(e.at),
            endpoint: e.endpoint,
            action: e.action.as_str(),
            actor: e.actor,
            detail: e
                .detail
                .as_deref()
                .map(foodseg_http::redact::urls_in)
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/endpoints.html")]
pub struct EndpointsPage {
    pub chrome: Chrome,
    pub generated: String,
    pub notice: Option<&'static str>,
    pub endpoints: Vec<EndpointLine>,
    pub events: Vec<EndpointEventLine>,
}

/// The notice the page shows after a form (`?done=`); unknown values show none.
pub fn notice(done: &str) -> Option<&'static str> {
    match done {
        "paused" => Some(
            "Endpoint paused by hand: nothing, not even probes, is sent to it until it is resumed.",
        ),
        "resumed" => {
            Some("Endpoint resumed: its waiting deliveries are due now, sent within its rate.")
        }
        "unchanged" => Some("Nothing changed: the endpoint already was in that state."),
        _ => None,
    }
}

/// `GET /console/endpoints`
#[handler]
pub async fn list(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match endpoints_page(req, depot).await {
        Ok(page) => render(res, StatusCode::OK, &page),
        Err(e) => e.write_to(res),
    }
}

async fn endpoints_page(req: &Request, depot: &Depot) -> Result<EndpointsPage, ConsoleError> {
    let chrome = chrome(depot)?;
    let state = ready_state(depot)?;
    let (endpoints, events) = tokio::try_join!(
        with_deadline(state.store.endpoints(LISTED)),
        with_deadline(state.store.endpoint_events(EVENTS)),
    )?;
    Ok(EndpointsPage {
        chrome,
        generated: when(Utc::now()),
        notice: req.query::<String>("done").and_then(|done| notice(&done)),
        endpoints: endpoints.into_iter().map(EndpointLine::from).collect(),
        events: events.into_iter().map(EndpointEventLine::from).collect(),
    })
}

/// `POST /console/endpoints/pause`
#[handler]
pub async fn pause(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    act(Steer::Pause, req, depot, res).await
}

/// `POST /console/endpoints/resume`
#[handler]
pub async fn resume(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    act(Steer::Resume, req, depot, res).await
}

async fn act(action: Steer, req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match run(action, req, depot).await {
        Ok(done) => res.render(Redirect::other(format!("/console/endpoints?done={done}"))),
        Err(e) => e.write_to(res),
    }
}

async fn run(
    action: Steer,
    req: &mut Request,
    depot: &Depot,
) -> Result<&'static str, ConsoleError> {
    let session = session(depot)?.clone();
    session.check_csrf(req.form::<String>("csrf").await.as_deref())?;
    let endpoint = req
        .form::<String>("endpoint")
        .await
        .ok_or_else(|| ConsoleError::BadInput("the form names no endpoint".into()))?;
    let state = ready_state(depot)?;
    let steered = endpoint_steer::steer(&state, action, &endpoint, &session.actor()).await?;
    Ok(match (steered.changed, action) {
        (false, _) => "unchanged",
        (true, Steer::Pause) => "paused",
        (true, Steer::Resume) => "resumed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_fixed_texts() {
        assert!(notice("paused").unwrap().contains("not even probes"));
        assert_eq!(notice("<script>"), None);
    }
}
