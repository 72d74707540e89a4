//! The HTTP routes of the api, one module per area; [`router`] puts them together (the
//! console is mounted beside them by [`crate::service`]).

mod batches;
mod docs;
mod endpoints;
mod feed;
mod health;
mod jobs;
mod metrics;
mod middleware;
mod operator;
mod reports;
pub(crate) mod shadow;
mod uploads;

pub use middleware::{json_errors, trace_request};

use salvo::prelude::*;

use crate::auth;

/// The api's routes — the MFR v1 contract, health, metrics, operator routes and `/v2` —
/// each behind its guard, with the OpenAPI document and the docs generated from them.
/// They read the state the caller injects ([`crate::request::Inject`]).
pub fn router() -> Router {
    let api = Router::new()
        .push(jobs::router().hoop(auth::V1Access))
        .push(health::router())
        .push(metrics::router())
        .push(operator::router().hoop(auth::RequireScope::operator()))
        .push(reports::router().hoop(auth::RequireScope::operator()))
        .push(endpoints::router().hoop(auth::RequireScope::operator()))
        .push(shadow::router().hoop(auth::RequireScope::operator()))
        .push(uploads::router().hoop(auth::RequireScope::submit_when_required()))
        .push(batches::submit_router().hoop(auth::RequireScope::submit_when_required()))
        .push(batches::batch_router().hoop(auth::RequireScope::reader()))
        .push(feed::router().hoop(auth::RequireScope::reader()));
    docs::with_docs(api)
}
