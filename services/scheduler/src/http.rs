//! The scheduler's small HTTP listener: `/health/live`, `/health/ready` and `/metrics`.

use std::time::Duration;

use foodseg_engine::{Bus, Store};
use foodseg_telemetry::metrics::Handle;
use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use tokio_util::sync::CancellationToken;

/// What the probes and `/metrics` look at.
#[derive(Clone)]
pub struct Probe {
    pub store: Store,
    pub bus: Bus,
    pub metrics: Handle,
}

struct Live;

#[async_trait]
impl Handler for Live {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        res.render(Json(serde_json::json!({"status": "ok"})));
    }
}

struct Ready(Probe);

#[async_trait]
impl Handler for Ready {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let nats = self.0.bus.is_connected();
        let postgres = self.0.store.ping().await.is_ok();
        let ok = nats && postgres;
        if !ok {
            res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        }
        res.render(Json(serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "checks": {"nats": nats, "postgres": postgres},
        })));
    }
}

struct Metrics(Handle);

#[async_trait]
impl Handler for Metrics {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let _ = res.add_header(
            "content-type",
            foodseg_telemetry::metrics::CONTENT_TYPE,
            true,
        );
        res.render(self.0.render());
    }
}

/// Serves the probes on `listener` until `shutdown`.
pub fn serve(
    listener: tokio::net::TcpListener,
    probe: Probe,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let acceptor = TcpAcceptor::try_from(listener)?;
    let router = Router::new()
        .push(Router::with_path("health/live").get(Live))
        .push(Router::with_path("health/ready").get(Ready(probe.clone())))
        .push(Router::with_path("metrics").get(Metrics(probe.metrics)));
    let server = Server::new(acceptor);
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop_graceful(Duration::from_secs(5));
    });
    Ok(tokio::spawn(server.serve(router)))
}
