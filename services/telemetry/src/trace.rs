//! W3C trace context helpers shared by the services: what goes into NATS headers, job
//! rows and webhook `traceparent`, and how a consumer continues the producer's trace.
//!
//! All of them work whether or not [`crate::init`] ran: without the OpenTelemetry layer
//! there is no current context, so the getters return `None` and the setters do nothing.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header (and column) name of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Companion W3C header carrying vendor state.
pub const TRACESTATE: &str = "tracestate";

/// The W3C `traceparent` of the current span, when there is a valid trace context.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The trace id (32 hex chars) of the current span, when there is one.
pub fn current_trace_id() -> Option<String> {
    trace_id_of_span(&tracing::Span::current())
}

/// The W3C `traceparent` naming `span` (so the receiver becomes its child).
///
/// Starts `span`'s OpenTelemetry context: call [`set_parent`] on it before this.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut map = HashMap::new();
    inject_context(&span.context(), &mut map);
    map.remove(TRACEPARENT)
}

/// The trace id of `span`, when it has a valid trace context.
pub fn trace_id_of_span(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` a child of the remote context in `traceparent` (ignored when malformed).
///
/// Call it right after creating `span`, before entering it or reading its context:
/// OpenTelemetry fixes a span's parent when the span starts.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let mut map = HashMap::new();
    map.insert(TRACEPARENT.to_string(), traceparent.trim().to_string());
    set_parent_context(span, extract_context(&map));
}

/// Makes `span` a child of the context carried by NATS message headers, if any.
pub fn set_parent_from_nats(span: &tracing::Span, headers: &async_nats::HeaderMap) {
    set_parent_context(span, extract_context(&NatsHeaders(headers)));
}

/// Makes `span` a child of the context carried by HTTP request headers, if any.
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    set_parent_context(span, extract_context(&HttpHeaders(headers)));
}

/// `span`'s context as header pairs, replacing any trace headers already in `headers`
/// (for APIs taking `&[(String, String)]`, such as the outbox relay's publish).
pub fn inject_pairs(span: &tracing::Span, headers: &mut Vec<(String, String)>) {
    let mut map = HashMap::new();
    inject_context(&span.context(), &mut map);
    if map.is_empty() {
        return;
    }
    headers.retain(|(k, _)| {
        !k.eq_ignore_ascii_case(TRACEPARENT) && !k.eq_ignore_ascii_case(TRACESTATE)
    });
    let mut pairs: Vec<_> = map.into_iter().collect();
    pairs.sort();
    headers.extend(pairs);
}

/// The `traceparent` carried by NATS headers, when present and well formed.
pub fn traceparent_from_nats(headers: &async_nats::HeaderMap) -> Option<String> {
    headers
        .get(TRACEPARENT)
        .map(|v| v.as_str().trim().to_string())
        .filter(|tp| trace_id_of(tp).is_some())
}

/// The trace id inside a `traceparent` header value.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    is_valid_trace_id(id).then_some(id)
}

/// Whether `id` is a W3C trace id: 32 lowercase hex digits, not all zeros.
pub fn is_valid_trace_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

fn set_parent_context(span: &tracing::Span, cx: Context) {
    if !cx.span().span_context().is_valid() {
        return;
    }
    if let Err(error) = span.set_parent(cx) {
        // Only reachable through misuse (parent set after the span started) or with
        // tracing off; the span then stays in its local trace.
        tracing::debug!(%error, "cannot attach remote trace context");
    }
}

fn inject_context(cx: &Context, injector: &mut dyn Injector) {
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, injector);
    }
}

fn extract_context(extractor: &dyn Extractor) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), extractor)
}

struct NatsHeaders<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn trace_id_of_parses_traceparent() {
        assert_eq!(trace_id_of(TP), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(trace_id_of(""), None);
    }

    #[test]
    fn without_a_subscriber_there_is_no_context() {
        let span = tracing::info_span!("job");
        set_parent(&span, TP);
        assert_eq!(traceparent_of(&span), None);
        let _e = span.enter();
        assert_eq!(current_trace_id(), None);
        let mut pairs = vec![("x".to_string(), "y".to_string())];
        inject_pairs(&span, &mut pairs);
        assert_eq!(pairs, vec![("x".to_string(), "y".to_string())]);
    }

    #[test]
    fn nats_traceparent_is_validated() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(traceparent_from_nats(&h), None);
        h.insert(TRACEPARENT, "nonsense");
        assert_eq!(traceparent_from_nats(&h), None);
        h.insert(TRACEPARENT, TP);
        assert_eq!(traceparent_from_nats(&h).as_deref(), Some(TP));
    }
}
