//! `GET /metrics`: the process's Prometheus metrics (shared recorder of
//! `foodseg_telemetry::metrics`, installed and described by `crate::metrics::install`
//! when the api starts; `install` here only fetches the same recorder).

use foodseg_telemetry::metrics::{CONTENT_TYPE, Handle};
use salvo::prelude::*;

pub fn router() -> Router {
    match foodseg_telemetry::metrics::install() {
        Ok(handle) => Router::with_path("metrics").get(Metrics(Some(handle))),
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
