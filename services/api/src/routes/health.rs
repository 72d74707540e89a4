//! Liveness and readiness probes.

use salvo::oapi::ToSchema;
use salvo::prelude::*;

use crate::request::{state, with_deadline};

pub fn router() -> Router {
    Router::with_path("health")
        .push(Router::with_path("live").get(live))
        .push(Router::with_path("ready").get(ready))
}

/// Probe answer: `status` is `ok` or `unavailable`; checks name each dependency.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// Postgres: `ok` or why not (only on readiness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// NATS: `ok` or why not (only on readiness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<String>,
    /// On failure: which dependency failed, as the common error body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

/// The process is up.
#[endpoint(tags("health"))]
async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        postgres: None,
        nats: None,
        error: None,
    })
}

/// Ready to take jobs: Postgres answers (schema migrated) and NATS is connected.
/// 503 names what failed.
#[endpoint(tags("health"), status_codes(200, 503))]
async fn ready(depot: &mut Depot, res: &mut Response) -> Json<Health> {
    let Some(state) = state(depot).cloned() else {
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        return Json(Health {
            status: "unavailable".into(),
            postgres: None,
            nats: None,
            error: None,
        });
    };
    let postgres = match with_deadline(state.store.ping()).await {
        Ok(()) if state.schema_ready() => Ok(()),
        Ok(()) => Err("migrations not applied yet".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let nats = if state.bus.is_connected() {
        Ok(())
    } else {
        Err("not connected".to_string())
    };
    let failed: Vec<String> = [("postgres", &postgres), ("nats", &nats)]
        .into_iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    let show = |r: Result<(), String>| Some(r.err().unwrap_or_else(|| "ok".into()));
    if failed.is_empty() {
        Json(Health {
            status: "ok".into(),
            postgres: show(postgres),
            nats: show(nats),
            error: None,
        })
    } else {
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        Json(Health {
            status: "unavailable".into(),
            postgres: show(postgres),
            nats: show(nats),
            error: Some(crate::error::ErrorDetail {
                code: "not_ready".into(),
                message: failed.join("; "),
                field: None,
                known_ids: None,
                items: None,
            }),
        })
    }
}
