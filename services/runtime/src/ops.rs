//! The ops listener of the worker and the scheduler (the api serves the same routes on
//! its own listener): `/health/live`, `/health/ready` and
//! `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::startup::ListenError;

/// The outcome of a readiness check: named checks, ready when all pass.
#[derive(Debug, Clone)]
pub struct ReadyReport {
    checks: serde_json::Map<String, serde_json::Value>,
    ok: bool,
}

impl ReadyReport {
    /// A report with no checks yet (ready).
    pub fn new() -> Self {
        ReadyReport {
            checks: serde_json::Map::new(),
            ok: true,
        }
    }

    /// Adds the check `name`; the report is ready only if every check passed.
    pub fn check(mut self, name: &str, passed: bool) -> Self {
        self.checks.insert(name.into(), passed.into());
        self.ok &= passed;
        self
    }
}

impl Default for ReadyReport {
    fn default() -> Self {
        ReadyReport::new()
    }
}

type ReadyFn = Arc<dyn Fn() -> BoxFuture<'static, ReadyReport> + Send + Sync>;
type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

struct Live;

#[async_trait]
impl Handler for Live {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        res.render(Json(serde_json::json!({"status": "ok"})));
    }
}

struct Ready(ReadyFn);

#[async_trait]
impl Handler for Ready {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let report = (self.0)().await;
        let body = serde_json::json!({
            "status": if report.ok { "ok" } else { "unavailable" },
            "checks": report.checks,
        });
        let code = if report.ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        res.render_with_status(code, Json(body));
    }
}

struct Metrics(MetricsFn);

#[async_trait]
impl Handler for Metrics {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let _ = res.add_header(
            "content-type",
            foodseg_telemetry::metrics::CONTENT_TYPE,
            true,
        );
        res.render((self.0)());
    }
}

/// Serves the probes on `listener` until `shutdown`: `/health/live` always answers 200,
/// `/health/ready` runs `ready` and answers 200 or 503 with its checks, `/metrics` answers
/// `render_metrics` as Prometheus text. Stopping is graceful, within 5 s.
pub fn serve_ops<R, F>(
    listener: tokio::net::TcpListener,
    ready: R,
    render_metrics: impl Fn() -> String + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ListenError>
where
    R: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = ReadyReport> + Send + 'static,
{
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let acceptor = TcpAcceptor::try_from(listener).map_err(|source| ListenError {
        addr: addr.clone(),
        source,
    })?;
    tracing::info!(%addr, "health and metrics listening");
    let ready: ReadyFn = Arc::new(move || Box::pin(ready()));
    let router = Router::new()
        .push(Router::with_path("health/live").get(Live))
        .push(Router::with_path("health/ready").get(Ready(ready)))
        .push(Router::with_path("metrics").get(Metrics(Arc::new(render_metrics))));
    let server = Server::new(acceptor);
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop_graceful(Duration::from_secs(5));
    });
    Ok(tokio::spawn(server.serve(router)))
}
