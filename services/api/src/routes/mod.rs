//! The HTTP surface, one module per area; [`router`] puts them together.

mod docs;
mod feed;
mod health;
mod jobs;
mod metrics;
mod middleware;
mod operator;
mod reports;
mod uploads;

pub(crate) use feed::{decode_cursor, encode_cursor};
pub(crate) use jobs::with_deadline;
pub use jobs::{IDEMPOTENT_REPLAYS_TOTAL, JobDocumentSchema};
pub(crate) use middleware::{ready_state, state};
pub use uploads::{UPLOAD_BYTES, UPLOADS_TOTAL};

use salvo::catcher::Catcher;
use salvo::prelude::*;

use crate::auth;
use crate::state::AppState;

/// Every route of the api, with the state injected and JSON error bodies everywhere.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .push(jobs::router().hoop(auth::V1Access))
        .push(health::router())
        .push(metrics::router())
        .push(operator::router().hoop(auth::RequireScope::operator()))
        .push(reports::router().hoop(auth::RequireScope::operator()))
        .push(uploads::router().hoop(auth::RequireScope::submit_when_required()))
        .push(feed::router().hoop(auth::RequireScope::reader()))
        .push(crate::console::router());
    let router = Router::new().hoop(middleware::Inject(state)).push(api);
    docs::with_docs(router)
}

/// The router wrapped in a service that traces and measures every request (matched or
/// not) and whose catcher answers unmatched routes with JSON.
pub fn service(state: AppState) -> Service {
    Service::new(router(state))
        .hoop(middleware::trace_request)
        .catcher(Catcher::default().hoop(middleware::json_errors))
}
