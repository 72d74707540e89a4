//! What every handler starts from, below the routes and the console: the [`AppState`]
//! injected into each request, readiness (503 until the migrations are applied), and the
//! deadline on every database call.

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
