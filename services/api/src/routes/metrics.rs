//! `GET /metrics`: the process's Prometheus metrics (shared recorder of
//! `foodseg_telemetry::metrics`, installed when the router is built so nothing recorded
//! at startup is lost).

use foodseg_telemetry::metrics::{CONTENT_TYPE, Handle};
use salvo::prelude::*;

pub fn router() -> Router {
    match foodseg_telemetry::metrics::install() {
        Ok(handle) => {
            crate::limits::describe();
            Router::with_path("metrics").get(Metrics(Some(handle)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder unavailable; /metrics answers 503");
            Router::with_path("metrics").get(Metrics(None))
        }
    }
}

struct Metrics(Option<Handle>);

#[async_trait]
impl Handler for Metrics {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        match &self.0 {
            Some(handle) => {
                let _ = res.add_header("content-type", CONTENT_TYPE, true);
                res.render(handle.render());
            }
            None => {
                res.status_code(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
    }
}
