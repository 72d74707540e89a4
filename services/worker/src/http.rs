//! The worker's small HTTP listener: `/health/live`, `/health/ready` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use foodseg_engine::{Bus, Store};
use salvo::conn::TcpListener;
use salvo::prelude::*;
use tokio_util::sync::CancellationToken;

/// What readiness depends on.
#[derive(Clone)]
pub struct Probe {
    pub store: Store,
    pub bus: Bus,
    /// Set once models are loaded and consumers are pulling.
    pub consuming: Arc<AtomicBool>,
    /// Prometheus text of the process's metrics.
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
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
        let p = &self.0;
        let consuming = p.consuming.load(Ordering::Relaxed);
        let nats = p.bus.is_connected();
        let postgres = p.store.ping().await.is_ok();
        let ok = consuming && nats && postgres;
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "checks": {"consuming": consuming, "nats": nats, "postgres": postgres},
        });
        let code = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        res.render_with_status(code, Json(body));
    }
}

struct Metrics(Probe);

#[async_trait]
impl Handler for Metrics {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let text = (self.0.render_metrics)();
        let _ = res.add_header(
            "content-type",
            foodseg_telemetry::metrics::CONTENT_TYPE,
            true,
        );
        res.render(text);
    }
}

/// Binds `addr` and serves until `shutdown`. Returns the bound address and the server task.
pub async fn serve(
    addr: SocketAddr,
    probe: Probe,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let acceptor = TcpListener::new(addr)
        .try_bind()
        .await
        .map_err(std::io::Error::other)?;
    let bound = acceptor.local_addr()?;
    let router = Router::new()
        .push(Router::with_path("health/live").get(Live))
        .push(Router::with_path("health/ready").get(Ready(probe.clone())))
        .push(Router::with_path("metrics").get(Metrics(probe)));
    let server = Server::new(acceptor);
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop_graceful(std::time::Duration::from_secs(5));
    });
    let task = tokio::spawn(server.serve(router));
    Ok((bound, task))
}
