//! Trace context crosses NATS headers, HTTP headers and stored `traceparent` strings, and
//! the span constructors carry the semantic-convention attributes.

use foodseg_telemetry::trace::{
    current_trace_id, current_traceparent, inject_pairs, set_parent, set_parent_from_http,
    set_parent_from_nats, trace_id_of, traceparent_from_nats, traceparent_of,
};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::prelude::*;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn with_tracing(f: impl FnOnce()) -> Vec<opentelemetry_sdk::trace::SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, f);
    provider.force_flush().expect("flush");
    exporter.get_finished_spans().expect("spans")
}

/// The trace headers a producer's span writes (as the outbox relay writes them).
fn injected(span: &tracing::Span) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    inject_pairs(span, &mut pairs);
    pairs
}

#[test]
fn stored_traceparent_becomes_the_parent() {
    let mut seen = None;
    let spans = with_tracing(|| {
        let span = tracing::info_span!("relay");
        set_parent(&span, TP);
        let _e = span.enter();
        seen = current_trace_id();
        let tp = current_traceparent().expect("traceparent");
        assert_eq!(trace_id_of(&tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "names the child, not the parent"
        );
    });
    assert_eq!(seen.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent_span_id.to_string(), "00f067aa0ba902b7");
}

#[test]
fn malformed_traceparent_starts_a_new_trace() {
    let spans = with_tracing(|| {
        let span = tracing::info_span!("job");
        set_parent(&span, "00-not-a-trace-01");
        let tp = traceparent_of(&span).expect("a fresh trace");
        assert!(trace_id_of(&tp).is_some());
    });
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
}

#[test]
fn nats_headers_carry_the_trace_from_producer_to_consumer() {
    let spans = with_tracing(|| {
        let producer = foodseg_telemetry::spans::nats_publish("foodseg.jobs.segment.m", Some(TP));
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in injected(&producer) {
            headers.insert(name.as_str(), value.as_str());
        }
        let sent = traceparent_from_nats(&headers).expect("traceparent header");
        assert_eq!(Some(sent.clone()), traceparent_of(&producer));
        drop(producer);

        let consumer =
            foodseg_telemetry::spans::nats_process("foodseg.jobs.segment.m", Some(&headers));
        set_parent_from_nats(&consumer, &headers); // a second call is harmless
        assert_eq!(
            trace_id_of(&traceparent_of(&consumer).expect("consumer context")),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    });
    let producer = spans
        .iter()
        .find(|s| s.name.starts_with("publish "))
        .expect("producer span");
    let consumer = spans
        .iter()
        .find(|s| s.name.starts_with("process "))
        .expect("consumer span");
    assert_eq!(producer.span_kind, opentelemetry::trace::SpanKind::Producer);
    assert_eq!(consumer.span_kind, opentelemetry::trace::SpanKind::Consumer);
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    let attr = |s: &opentelemetry_sdk::trace::SpanData, k: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr(producer, "messaging.system").as_deref(), Some("nats"));
    assert_eq!(
        attr(producer, "messaging.destination.name").as_deref(),
        Some("foodseg.jobs.segment.m")
    );
    assert_eq!(
        attr(producer, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attr(producer, "messaging.operation.name").as_deref(),
        Some("publish")
    );
    assert_eq!(
        attr(consumer, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(consumer, "messaging.operation.name").as_deref(),
        Some("process")
    );
}

#[test]
fn http_headers_carry_the_trace_and_client_spans_record_status() {
    let spans = with_tracing(|| {
        let client =
            foodseg_telemetry::spans::http_client("POST", "http://u:p@127.0.0.1:9/hook?x=1");
        let mut headers = http::HeaderMap::new();
        for (name, value) in injected(&client) {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                http::HeaderValue::from_str(&value).expect("a header value"),
            );
        }
        let tp = headers
            .get("traceparent")
            .expect("header")
            .to_str()
            .expect("ascii")
            .to_string();
        assert_eq!(Some(tp), traceparent_of(&client));
        foodseg_telemetry::spans::record_http_status(&client, 503);
        drop(client);

        let server = foodseg_telemetry::spans::http_server(
            "POST",
            "/hooks/{name}",
            "http",
            "/hooks/mfr",
            &headers,
        );
        set_parent_from_http(&server, &headers);
        foodseg_telemetry::spans::record_http_status(&server, 404);
        let _ = traceparent_of(&server);
    });
    let client = spans
        .iter()
        .find(|s| s.span_kind == opentelemetry::trace::SpanKind::Client)
        .expect("client");
    let server = spans
        .iter()
        .find(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .expect("server");
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert_eq!(
        server.span_context.trace_id(),
        client.span_context.trace_id()
    );
    let attr = |s: &opentelemetry_sdk::trace::SpanData, k: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr(client, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        attr(client, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(
        attr(client, "url.full").as_deref(),
        Some("http://127.0.0.1:9/hook?x=REDACTED")
    );
    assert_eq!(attr(client, "error.type").as_deref(), Some("503"));
    assert!(matches!(
        client.status,
        opentelemetry::trace::Status::Error { .. }
    ));
    assert_eq!(attr(client, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(server.name, "POST /hooks/{name}");
    assert_eq!(attr(server, "http.route").as_deref(), Some("/hooks/{name}"));
    assert_eq!(attr(server, "url.path").as_deref(), Some("/hooks/mfr"));
    assert_eq!(attr(server, "url.scheme").as_deref(), Some("http"));
    // A 404 answered by a server is the caller's problem, not a server error.
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("404")
    );
    assert!(!matches!(
        server.status,
        opentelemetry::trace::Status::Error { .. }
    ));
}

#[test]
fn inject_pairs_replaces_stale_trace_headers() {
    with_tracing(|| {
        let span = foodseg_telemetry::spans::nats_publish("s", Some(TP));
        let mut pairs = vec![
            ("traceparent".to_string(), TP.to_string()),
            ("x-other".to_string(), "1".to_string()),
        ];
        inject_pairs(&span, &mut pairs);
        let tps: Vec<_> = pairs.iter().filter(|(k, _)| k == "traceparent").collect();
        assert_eq!(tps.len(), 1);
        assert_eq!(Some(tps[0].1.clone()), traceparent_of(&span));
        assert_ne!(tps[0].1, TP);
        assert!(pairs.iter().any(|(k, v)| k == "x-other" && v == "1"));
    });
}
