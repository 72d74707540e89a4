//! What every handler starts from, below the routes and the console: the [`AppState`]
//! injected into each request, readiness (503 until the migrations are applied), the
//! deadline on every database call, and the bounded read of a small request body.

use std::future::Future;

use salvo::prelude::*;

use crate::error::ApiError;
use crate::state::{AppState, DB_DEADLINE};

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

/// Bounds a store call: a database that stopped answering gets a 503, not a hang.
pub(crate) async fn with_deadline<T>(
    f: impl Future<Output = Result<T, foodseg_engine::StoreError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(DB_DEADLINE, f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::DatabaseTimeout),
    }
}

/// The whole body of a small request: at most `limit` bytes (else 413), arriving within
/// `timeout` (else 408, and the connection is closed after the answer).
pub(crate) async fn small_body(
    req: &mut Request,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, ApiError> {
    let payload = tokio::time::timeout(timeout, req.payload_with_max_size(limit))
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?;
    match payload {
        Ok(body) => Ok(body.clone()),
        Err(salvo::http::ParseError::PayloadTooLarge) => Err(ApiError::PayloadTooLarge {
            size: limit + 1,
            limit,
        }),
        Err(e) => Err(ApiError::BodyUnreadable(e.to_string())),
    }
}
