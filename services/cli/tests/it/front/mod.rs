//! A front for the api that behaves like an older server without `POST /v2/uploads`:
//! the path is removed from `/openapi.json` and answered with 404; everything else is
//! forwarded to the real api.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use salvo::http::StatusCode;
use salvo::prelude::*;
use tokio_util::sync::CancellationToken;

pub struct Front {
    pub base_url: String,
    refused: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Front {
    /// Starts the front on `127.0.0.1:0`, forwarding to `api` (`http://host:port`).
    pub async fn without_uploads(api: &str) -> anyhow::Result<Self> {
        let refused = Arc::new(AtomicUsize::new(0));
        let router = Router::with_path("{**rest}").goal(Forward {
            api: api.trim_end_matches('/').to_string(),
            http: foodseg_http::client()?,
            refused: refused.clone(),
        });
        let (addr, shutdown) = foodseg_testkit::serve_router(router).await?;
        Ok(Front {
            base_url: format!("http://{addr}"),
            refused,
            shutdown,
        })
    }

    /// Requests to the hidden upload endpoint.
    pub fn uploads_refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Forward {
    api: String,
    http: reqwest::Client,
    refused: Arc<AtomicUsize>,
}

#[async_trait]
impl Handler for Forward {
    async fn handle(
        &self,
        req: &mut Request,
        _depot: &mut Depot,
        res: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        let path = req.uri().path().to_string();
        if path == "/v2/uploads" {
            self.refused.fetch_add(1, Ordering::SeqCst);
            res.status_code(StatusCode::NOT_FOUND);
            return;
        }
        let target = match req.uri().query() {
            Some(q) => format!("{}{path}?{q}", self.api),
            None => format!("{}{path}", self.api),
        };
        let body = req.payload().await.cloned().unwrap_or_default();
        let mut forwarded = self.http.request(req.method().clone(), target).body(body);
        if let Some(ct) = req.headers().get("content-type") {
            forwarded = forwarded.header("content-type", ct.clone());
        }
        let Ok(answer) = forwarded.send().await else {
            res.status_code(StatusCode::BAD_GATEWAY);
            return;
        };
        let status = answer.status();
        let content_type = answer.headers().get("content-type").cloned();
        let Ok(bytes) = answer.bytes().await else {
            res.status_code(StatusCode::BAD_GATEWAY);
            return;
        };
        let bytes = if path == "/openapi.json" {
            hide_uploads(&bytes).unwrap_or(bytes.to_vec())
        } else {
            bytes.to_vec()
        };
        res.status_code(status);
        if let Some(ct) = content_type {
            let _ = res.add_header("content-type", ct, true);
        }
        let _ = res.write_body(bytes);
    }
}

fn hide_uploads(spec: &[u8]) -> Option<Vec<u8>> {
    let mut spec: serde_json::Value = serde_json::from_slice(spec).ok()?;
    spec["paths"].as_object_mut()?.remove("/v2/uploads")?;
    serde_json::to_vec(&spec).ok()
}
