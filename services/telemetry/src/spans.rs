//! Span constructors following the OpenTelemetry semantic conventions for HTTP and
//! messaging, so every service names and tags the same things the same way.
//!
//! Each returns a `tracing::Span` with the right `otel.kind`, `otel.name` and attributes;
//! fields known only later (status codes, detections, …) are declared empty and filled
//! with `span.record(..)` or the `record_*` helpers here. Remote parents are attached
//! before the span starts, as OpenTelemetry requires.

use tracing::field::Empty;

use crate::trace::{set_parent, set_parent_from_http, set_parent_from_nats};

/// SERVER span for an incoming HTTP request, continuing the caller's `traceparent` if
/// it sent one (MFR sends none, so an enqueue is the root of its job's trace). `route`
/// is the matched route template (`/status/{job_id}`), `path` the request's path.
pub fn http_server(
    method: &str,
    route: &str,
    scheme: &str,
    path: &str,
    headers: &http::HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %path,
        url.scheme = %scheme,
        http.response.status_code = Empty,
        "error.type" = Empty,
    );
    set_parent_from_http(&span, headers);
    span
}

/// CLIENT span for one outgoing HTTP request (a webhook delivery attempt, an image
/// fetch). `url.full` is redacted (no credentials, no query values).
pub fn http_client(method: &str, url: &str) -> tracing::Span {
    let (server_address, server_port) = server_of(url);
    tracing::info_span!(
        "http.client",
        otel.name = %method,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = %method,
        url.full = %foodseg_http::redact::url(url),
        server.address = server_address.as_deref().unwrap_or(""),
        server.port = server_port,
        http.response.status_code = Empty,
        http.request.resend_count = Empty,
        job.id = Empty,
        "error.type" = Empty,
    )
}

/// PRODUCER span for publishing to a NATS subject, named after the operation
/// (`publish <subject>`, as the messaging conventions name spans). `parent` is the stored
/// `traceparent` of the job when publishing outside the request (outbox relay, sweeper);
/// `None` keeps the current span as parent.
pub fn nats_publish(subject: &str, parent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "messaging.publish",
        otel.name = %format_args!("publish {subject}"),
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %subject,
        messaging.message.id = Empty,
        job.id = Empty,
        "error.type" = Empty,
    );
    if let Some(tp) = parent {
        set_parent(&span, tp);
    }
    span
}

/// CONSUMER span for processing one NATS message, continuing the trace in its headers.
pub fn nats_process(subject: &str, headers: Option<&async_nats::HeaderMap>) -> tracing::Span {
    let span = tracing::info_span!(
        "messaging.process",
        otel.name = %format_args!("process {subject}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %subject,
        messaging.message.id = Empty,
        messaging.message.delivery_count = Empty,
        job.id = Empty,
        "error.type" = Empty,
    );
    if let Some(h) = headers {
        set_parent_from_nats(&span, h);
    }
    span
}

/// Records an HTTP response status on a client or server span; for a client every
/// status ≥ 400 is an error, for a server only ≥ 500 (a 4xx is the caller's fault).
pub fn record_http_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    let is_client = span.metadata().is_some_and(|m| m.name() == "http.client");
    let threshold = if is_client { 400 } else { 500 };
    if status >= threshold {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.to_string().as_str());
    }
}

/// Marks a span as failed, with a short error class (`timeout`, `connect`, a type name).
pub fn record_error(span: &tracing::Span, error_type: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type);
}

/// Host and port of a URL, for `server.address` / `server.port`.
fn server_of(url: &str) -> (Option<String>, u16) {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return (None, 0);
    };
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    (uri.host().map(str::to_string), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_spans_show_urls_redacted() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let record = seen.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || Writer(record.clone()))
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let _span = http_client("POST", "https://u:pw@h.example/hook?sig=abc").entered();
        });
        let text = seen.lock().unwrap().clone();
        assert!(
            text.contains("https://h.example/hook?sig=REDACTED"),
            "{text}"
        );
        assert!(!text.contains("pw") && !text.contains("abc"), "{text}");
    }

    /// Collects what a fmt layer writes.
    struct Writer(std::sync::Arc<std::sync::Mutex<String>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn server_address_and_default_ports() {
        assert_eq!(
            server_of("https://h.example/x"),
            (Some("h.example".into()), 443)
        );
        assert_eq!(
            server_of("http://127.0.0.1:8080/x"),
            (Some("127.0.0.1".into()), 8080)
        );
        assert_eq!(server_of("::nope::"), (None, 0));
    }
}
