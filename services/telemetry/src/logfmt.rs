//! Log line formatting that stamps each line logged inside a traced span with its
//! OpenTelemetry trace and span ids: `"trace_id"`/`"span_id"` fields in JSON, trailing
//! `trace_id=… span_id=…` in text. A job's spans carry its trace, so every line about a
//! job names the trace an SRE opens in Jaeger.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Wraps a [`FormatEvent`] (text or JSON) and adds the active trace context.
#[derive(Debug, Clone)]
pub struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    pub fn text(inner: F) -> Self {
        WithTraceIds { inner, json: false }
    }

    pub fn json(inner: F) -> Self {
        WithTraceIds { inner, json: true }
    }
}

/// Trace and span id of the active OpenTelemetry context (the entered span's).
fn active_ids() -> Option<(String, String)> {
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    })
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = active_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&add_ids(&line, &trace_id, &span_id, self.json))
    }
}

/// Adds the ids to one formatted line (which ends with a newline).
fn add_ids(line: &str, trace_id: &str, span_id: &str, json: bool) -> String {
    if json {
        // The JSON formatter writes one object per line; the ids become its first fields.
        match line.strip_prefix('{') {
            Some(rest) => {
                let sep = if rest.trim_start().starts_with('}') {
                    ""
                } else {
                    ","
                };
                format!("{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{sep}{rest}")
            }
            None => line.to_string(),
        }
    } else {
        let body = line.strip_suffix('\n').unwrap_or(line);
        format!("{body} trace_id={trace_id} span_id={span_id}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_get_id_fields() {
        let out = add_ids("{\"level\":\"INFO\",\"fields\":{}}\n", "abc", "def", true);
        assert_eq!(
            out,
            "{\"trace_id\":\"abc\",\"span_id\":\"def\",\"level\":\"INFO\",\"fields\":{}}\n"
        );
        assert_eq!(
            add_ids("{}\n", "abc", "def", true),
            "{\"trace_id\":\"abc\",\"span_id\":\"def\"}\n"
        );
    }

    #[test]
    fn text_lines_get_trailing_ids() {
        let out = add_ids("2026 INFO job: claimed attempt=1\n", "abc", "def", false);
        assert_eq!(
            out,
            "2026 INFO job: claimed attempt=1 trace_id=abc span_id=def\n"
        );
    }
}
