//! An in-process OTLP/HTTP trace receiver for tests: a salvo server on 127.0.0.1 that
//! accepts `POST /v1/traces`, decodes the real OTLP protobuf (`ExportTraceServiceRequest`)
//! and keeps the spans for assertions.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use salvo::conn::tcp::TcpAcceptor;
use salvo::http::ParseError;
use salvo::http::header::{CONTENT_TYPE, HeaderValue};
use salvo::prelude::*;
use salvo::server::ServerHandle;
use tokio::sync::Notify;

/// Largest request body accepted (the OTLP spec's recommended limit).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One span as the receiver decoded it; ids are lowercase hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that exported it.
    pub service_name: String,
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    /// Attribute values rendered as text (strings unquoted).
    pub attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// The status description, when the span failed.
    pub status_message: String,
    /// Span events (log records inside the span): name and attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Everything the span carries as text: name, attributes, status message, events.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} {:?} {}",
            self.name, self.attributes, self.status_message
        );
        for (name, attributes) in &self.events {
            out.push_str(&format!(" {name} {attributes:?}"));
        }
        out
    }
}

#[derive(Debug, Default)]
struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: Mutex<u64>,
    changed: Notify,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: ServerHandle,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.stop_forceful();
    }
}

impl OtlpReceiver {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start() -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let router = Router::with_path("v1/traces").post(Collect(shared.clone()));
        let server = Server::new(TcpAcceptor::try_from(listener)?);
        let handle = server.handle();
        tokio::spawn(server.serve(router));
        Ok(OtlpReceiver {
            addr,
            shared,
            server: handle,
        })
    }

    /// Base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is appended by exporters).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Full URL for `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Number of export requests decoded so far.
    pub fn requests(&self) -> u64 {
        *self
            .shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done` holds for the spans received, or `timeout` passes; returns the
    /// spans either way so the caller's assertions explain what was missing.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let spans = self.spans();
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }
}

/// What is wrong with `spans` as one complete trace: more than one trace id, not exactly
/// one root, or a parent that is not among the spans. Empty when it is a single trace.
pub fn trace_problems(spans: &[ReceivedSpan]) -> Vec<String> {
    let mut problems = Vec::new();
    if spans.is_empty() {
        problems.push("no spans".to_string());
        return problems;
    }
    let trace_ids: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    if trace_ids.len() != 1 {
        problems.push(format!("{} trace ids: {trace_ids:?}", trace_ids.len()));
    }
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .collect();
    if roots.len() != 1 {
        let names: Vec<_> = roots
            .iter()
            .map(|s| format!("{}:{}", s.service_name, s.name))
            .collect();
        problems.push(format!("{} root spans: {names:?}", roots.len()));
    }
    for s in spans {
        if let Some(parent) = &s.parent_span_id
            && !ids.contains(parent.as_str())
        {
            problems.push(format!(
                "{}:{} has parent {parent} outside the trace",
                s.service_name, s.name
            ));
        }
    }
    problems
}

/// `POST /v1/traces`: an OTLP/HTTP protobuf export request, answered with the empty
/// `ExportTraceServiceResponse` (no bytes).
struct Collect(Arc<Shared>);

#[handler]
impl Collect {
    async fn handle(&self, req: &mut Request, res: &mut Response) {
        let status = match req.payload_with_max_size(MAX_BODY).await {
            Err(ParseError::PayloadTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Err(_) => StatusCode::BAD_REQUEST,
            Ok(body) => match ExportTraceServiceRequest::decode(body.as_ref()) {
                Ok(request) => {
                    record(&self.0, request);
                    StatusCode::OK
                }
                Err(_) => StatusCode::BAD_REQUEST,
            },
        };
        res.status_code(status);
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
    }
}

fn record(shared: &Shared, request: ExportTraceServiceRequest) {
    let mut decoded = Vec::new();
    for rs in request.resource_spans {
        let service_name = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| render(kv.value.as_ref()))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                decoded.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty()
                        && span.parent_span_id.iter().any(|b| *b != 0))
                    .then(|| hex(&span.parent_span_id)),
                    name: span.name,
                    kind: match span.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    attributes: attributes(&span.attributes),
                    status: match span.status.as_ref().map(|s| s.code) {
                        Some(1) => "ok",
                        Some(2) => "error",
                        _ => "unset",
                    },
                    status_message: span.status.map(|s| s.message).unwrap_or_default(),
                    events: span
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), attributes(&e.attributes)))
                        .collect(),
                });
            }
        }
    }
    shared
        .spans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(decoded);
    *shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner) += 1;
    shared.changed.notify_waiters();
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
