//! A webhook receiver that behaves like MFR's Rails endpoint: the JSON params parser
//! puts a JSON body that is not an object under `_json` (an object body is merged into
//! params, so `params.require(:_json)` fails with 400), then `JSON.parse(params[:_json])`.
//! It verifies Standard Webhooks signatures with its own implementation, and misbehaves
//! on demand, chosen by the URL path:
//!
//! - `/ok` → 200
//! - `/fail/N` → 500 for the first N hits of each `webhook-id`, then 200
//! - `/gone` → 410
//! - `/hang` → no answer until [`Receiver::release`], then 200
//! - `/hang-once` → no answer (ever) to the first hit of each `webhook-id`, then 200
//! - `/retry-after/S` → 503 with `Retry-After: S` to the first hit of each `webhook-id`, then 200
//!
//! While [`Receiver::set_down`] holds a status, every request gets it instead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use sha2::Sha256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub content_type: Option<String>,
    pub webhook_id: Option<String>,
    pub timestamp: Option<i64>,
    /// Whether the signature verified (`None` when the receiver has no secret).
    pub signature_ok: Option<bool>,
    /// The `webhook-signature` header as sent.
    pub signature: Option<String>,
    /// The body as sent.
    pub body: String,
    pub traceparent: Option<String>,
    /// The job document found in `params[:_json]`, or why Rails would have refused it.
    pub document: Result<serde_json::Value, String>,
    /// What the receiver answered (0 when it never answered).
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

struct State {
    secret: Option<Vec<u8>>,
    hits: Mutex<Vec<Hit>>,
    seen: Mutex<HashMap<String, u32>>,
    hanging: AtomicUsize,
    release: watch::Receiver<bool>,
    down: Mutex<Option<u16>>,
}

/// A running receiver on 127.0.0.1.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    release: watch::Sender<bool>,
    stop: CancellationToken,
}

impl Receiver {
    /// Starts a receiver that verifies signatures with `secret` (`whsec_…`) when given.
    pub async fn start(secret: Option<&str>) -> Receiver {
        let secret = secret.map(|s| {
            STANDARD
                .decode(s.strip_prefix("whsec_").expect("whsec_ prefix"))
                .expect("base64 secret")
        });
        let (release, release_rx) = watch::channel(false);
        let state = Arc::new(State {
            secret,
            hits: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            hanging: AtomicUsize::new(0),
            release: release_rx,
            down: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let acceptor = TcpAcceptor::try_from(listener).expect("acceptor");
        let router = Router::with_path("{**rest}").post(Hook(state.clone()));
        let server = Server::new(acceptor);
        let handle = server.handle();
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            stopper.cancelled().await;
            handle.stop_forceful();
        });
        tokio::spawn(server.serve(router));
        Receiver {
            addr,
            state,
            release,
            stop,
        }
    }

    /// The URL of one behaviour, e.g. `url("fail/2")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Requests received for one `webhook-id`.
    pub fn hits_for(&self, webhook_id: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.webhook_id.as_deref() == Some(webhook_id))
            .collect()
    }

    /// Requests to `/hang` waiting for [`Receiver::release`].
    pub fn hanging(&self) -> usize {
        self.state.hanging.load(Ordering::SeqCst)
    }

    /// Answers every request with `status` (the receiver is down) until `None`.
    pub fn set_down(&self, status: Option<u16>) {
        *self.state.down.lock().unwrap() = status;
    }

    /// Lets every `/hang` request (current and future) answer 200.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Hook(Arc<State>);

#[async_trait]
impl Handler for Hook {
    async fn handle(&self, req: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let state = &self.0;
        let at = Instant::now();
        let path = req.uri().path().trim_start_matches('/').to_string();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type");
        let webhook_id = header("webhook-id");
        let timestamp = header("webhook-timestamp").and_then(|t| t.parse::<i64>().ok());
        let signature = header("webhook-signature");
        let traceparent = header("traceparent");
        let body = req.payload().await.map(|b| b.to_vec()).unwrap_or_default();
        let body = String::from_utf8_lossy(&body).to_string();

        let signature_ok =
            state
                .secret
                .as_ref()
                .map(|key| match (&webhook_id, timestamp, &signature) {
                    (Some(id), Some(ts), Some(sig)) => verify(key, id, ts, &body, sig),
                    _ => false,
                });
        let document = rails_params(content_type.as_deref(), &body);
        let mut hit = Hit {
            path: path.clone(),
            content_type,
            webhook_id: webhook_id.clone(),
            timestamp,
            signature_ok,
            signature: signature.clone(),
            body: body.clone(),
            traceparent,
            document: document.clone(),
            status: 0,
            at,
        };
        let down = *state.down.lock().unwrap();
        if let Some(status) = down {
            hit.status = status;
            state.hits.lock().unwrap().push(hit);
            res.status_code(
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            );
            res.render("down for maintenance");
            return;
        }
        if document.is_err() || signature_ok == Some(false) {
            hit.status = 400;
            state.hits.lock().unwrap().push(hit);
            res.status_code(StatusCode::BAD_REQUEST);
            res.render(Json(serde_json::json!({"error": "bad webhook"})));
            return;
        }
        let seen = {
            let mut seen = state.seen.lock().unwrap();
            let n = seen.entry(webhook_id.unwrap_or_default()).or_insert(0);
            *n += 1;
            *n
        };
        let mut parts = path.split('/');
        let (status, retry_after) = match (parts.next(), parts.next()) {
            (Some("ok"), _) => (200, None),
            (Some("gone"), _) => (410, None),
            (Some("fail"), Some(n)) => {
                let n: u32 = n.parse().unwrap_or(0);
                (if seen <= n { 500 } else { 200 }, None)
            }
            (Some("retry-after"), Some(s)) if seen == 1 => (503, Some(s.to_string())),
            (Some("retry-after"), _) => (200, None),
            (Some("hang"), _) => {
                // Recorded before waiting, so tests can see it is in flight.
                state.hits.lock().unwrap().push(hit.clone());
                state.hanging.fetch_add(1, Ordering::SeqCst);
                let mut release = state.release.clone();
                let _ = release.wait_for(|released| *released).await;
                state.hanging.fetch_sub(1, Ordering::SeqCst);
                let mut hits = state.hits.lock().unwrap();
                if let Some(h) = hits
                    .iter_mut()
                    .rev()
                    .find(|h| h.webhook_id == hit.webhook_id)
                {
                    h.status = 200;
                }
                res.status_code(StatusCode::OK);
                return;
            }
            (Some("hang-once"), _) if seen == 1 => {
                state.hits.lock().unwrap().push(hit);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            (Some("hang-once"), _) => (200, None),
            _ => (404, None),
        };
        hit.status = status;
        state.hits.lock().unwrap().push(hit);
        res.status_code(StatusCode::from_u16(status).unwrap());
        if let Some(s) = retry_after {
            let _ = res.add_header("retry-after", s, true);
        }
        res.render(if status == 200 { "ok" } else { "not now" });
    }
}

/// What MFR's controller gets: Rails' JSON params parsing, `params.require(:_json)`, then
/// `JSON.parse` of that string.
pub fn rails_params(content_type: Option<&str>, body: &str) -> Result<serde_json::Value, String> {
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("application/json") {
        return Err(
            "param is missing or the value is empty: _json (body not parsed as JSON)".into(),
        );
    }
    let parsed: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("ActionDispatch::Http::Parameters::ParseError: {e}"))?;
    let json = match parsed {
        // An object is merged into params: there is no `_json`.
        serde_json::Value::Object(_) => {
            return Err("param is missing or the value is empty: _json".into());
        }
        other => other,
    };
    let text = match json {
        serde_json::Value::String(s) if !s.is_empty() => s,
        other => return Err(format!("params[:_json] is not a JSON string: {other}")),
    };
    serde_json::from_str(&text).map_err(|e| format!("JSON::ParserError: {e}"))
}

/// Standard Webhooks verification: any `v1,` signature in the space-separated header must
/// equal base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), and the timestamp must be
/// within five minutes.
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &str, header: &str) -> bool {
    let now = chrono::Utc::now().timestamp();
    if (now - timestamp).abs() > 300 {
        return false;
    }
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}
