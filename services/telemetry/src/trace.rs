//! W3C trace context helpers shared by the services: what goes into NATS headers, job
//! rows and webhook `traceparent`, and how a consumer continues the producer's trace.

/// The W3C `traceparent` of the current span, when tracing is on and the span is sampled.
pub fn current_traceparent() -> Option<String> {
    None
}

/// The trace id (32 hex chars) of the current span, when there is one.
pub fn current_trace_id() -> Option<String> {
    None
}

/// Makes `span` a child of the remote context in `traceparent` (ignored when malformed).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let _ = (span, traceparent);
}

/// The trace id inside a `traceparent` header value.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32))
        .then_some(id)
}
