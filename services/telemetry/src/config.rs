//! Telemetry settings read from the environment: the standard `OTEL_*` variables plus
//! `FOODSEG_LOG_FORMAT`, `RUST_LOG`, `FOODSEG_TRACE_FILTER` and
//! `FOODSEG_JAEGER_URL_TEMPLATE`.

use crate::jaeger::DEFAULT_JAEGER_URL_TEMPLATE;

/// Log format, from `FOODSEG_LOG_FORMAT` (`text` or `json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// OTLP transport, from `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the default): POST to `<endpoint>/v1/traces`.
    #[default]
    HttpProtobuf,
    /// `grpc`: the collector's gRPC port (4317).
    Grpc,
}

/// Where spans are exported to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    pub protocol: OtlpProtocol,
    /// Full URL: for HTTP the `/v1/traces` URL, for gRPC the collector's base URL.
    pub endpoint: String,
}

/// Default trace filter: our spans at `info`, and never the exporter's own HTTP/gRPC
/// machinery (exporting its spans would feed the exporter with its own work).
pub const DEFAULT_TRACE_FILTER: &str =
    "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off";

/// Telemetry settings of one service.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name`: `OTEL_SERVICE_NAME`, else the service's own name.
    pub service_name: String,
    pub log_format: LogFormat,
    /// `RUST_LOG` directives for log output (default `info`).
    pub log_filter: String,
    /// `FOODSEG_TRACE_FILTER` directives for which spans become OpenTelemetry spans,
    /// independent of the log level (default [`DEFAULT_TRACE_FILTER`]).
    pub trace_filter: String,
    /// `false` when `OTEL_SDK_DISABLED=true`: no OpenTelemetry at all, not even trace ids.
    pub tracing_enabled: bool,
    /// Export target; `None` (no endpoint set, or `OTEL_TRACES_EXPORTER=none`) means spans
    /// are created and propagated, so trace ids still tie logs together, but not exported.
    pub otlp: Option<OtlpTarget>,
    /// Set when the protocol variable holds something unsupported; `init` refuses it.
    pub invalid_protocol: Option<String>,
    /// `FOODSEG_JAEGER_URL_TEMPLATE`, with `{trace_id}` where the id goes.
    pub jaeger_url_template: String,
}

impl TelemetryConfig {
    /// Reads the environment. `service_name` is the default `service.name`
    /// (`foodseg-api`, `foodseg-worker`, `foodseg-scheduler`).
    pub fn from_env(service_name: &str) -> Self {
        Self::from_lookup(service_name, |key| std::env::var(key).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`; empty values
    /// count as unset, as the OpenTelemetry specification asks.
    pub fn from_lookup(service_name: &str, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let log_format = match get("FOODSEG_LOG_FORMAT").as_deref() {
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let tracing_enabled =
            !get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let exporter_none =
            get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));

        let protocol_value = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let (protocol, invalid_protocol) = match protocol_value.as_deref() {
            None | Some("http/protobuf") => (OtlpProtocol::HttpProtobuf, None),
            Some("grpc") => (OtlpProtocol::Grpc, None),
            Some(other) => (OtlpProtocol::HttpProtobuf, Some(other.to_string())),
        };

        let endpoint = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The per-signal variable is the full URL, used as is.
            (Some(url), _) => Some(url),
            // The generic one is a base URL; OTLP/HTTP appends the signal path.
            (None, Some(base)) => Some(match protocol {
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                OtlpProtocol::Grpc => base,
            }),
            (None, None) => None,
        };
        let otlp = endpoint
            .filter(|_| tracing_enabled && !exporter_none)
            .map(|endpoint| OtlpTarget { protocol, endpoint });

        TelemetryConfig {
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| service_name.to_string()),
            log_format,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info".to_string()),
            trace_filter: get("FOODSEG_TRACE_FILTER")
                .unwrap_or_else(|| DEFAULT_TRACE_FILTER.to_string()),
            tracing_enabled,
            otlp,
            invalid_protocol,
            jaeger_url_template: get("FOODSEG_JAEGER_URL_TEMPLATE")
                .unwrap_or_else(|| DEFAULT_JAEGER_URL_TEMPLATE.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> TelemetryConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetryConfig::from_lookup("foodseg-worker", |k| vars.get(k).cloned())
    }

    #[test]
    fn no_endpoint_means_no_export_but_tracing_on() {
        let c = config(&[]);
        assert_eq!(c.otlp, None);
        assert!(c.tracing_enabled);
        assert_eq!(c.service_name, "foodseg-worker");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.jaeger_url_template, DEFAULT_JAEGER_URL_TEMPLATE);
    }

    #[test]
    fn generic_http_endpoint_gets_signal_path() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318/")]);
        assert_eq!(
            c.otlp,
            Some(OtlpTarget {
                protocol: OtlpProtocol::HttpProtobuf,
                endpoint: "http://otel:4318/v1/traces".into()
            })
        );
    }

    #[test]
    fn traces_endpoint_is_used_as_is_and_wins() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/custom"),
        ]);
        assert_eq!(
            c.otlp.map(|t| t.endpoint).as_deref(),
            Some("http://b:9999/custom")
        );
    }

    #[test]
    fn grpc_endpoint_is_the_base_url() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(
            c.otlp,
            Some(OtlpTarget {
                protocol: OtlpProtocol::Grpc,
                endpoint: "http://otel:4317".into()
            })
        );
    }

    #[test]
    fn unsupported_protocol_is_reported() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        assert_eq!(c.invalid_protocol.as_deref(), Some("http/json"));
    }

    #[test]
    fn disabled_sdk_or_none_exporter_turns_export_off() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(!c.tracing_enabled);
        assert_eq!(c.otlp, None);
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert!(c.tracing_enabled);
        assert_eq!(c.otlp, None);
    }

    #[test]
    fn service_name_and_formats_from_env() {
        let c = config(&[
            ("OTEL_SERVICE_NAME", "worker-gpu-3"),
            ("FOODSEG_LOG_FORMAT", "JSON"),
            ("RUST_LOG", "debug"),
            (
                "FOODSEG_JAEGER_URL_TEMPLATE",
                "https://j.example/trace/{trace_id}",
            ),
        ]);
        assert_eq!(c.service_name, "worker-gpu-3");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "debug");
        assert_eq!(c.jaeger_url_template, "https://j.example/trace/{trace_id}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_SERVICE_NAME", " "),
        ]);
        assert_eq!(c.otlp, None);
        assert_eq!(c.service_name, "foodseg-worker");
    }
}
