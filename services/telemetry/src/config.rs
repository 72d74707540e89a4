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
    /// `http/protobuf` (the default): POST to the collector's `/v1/traces` (port 4318).
    #[default]
    HttpProtobuf,
    /// `grpc`: the collector's gRPC port (4317).
    Grpc,
}

impl OtlpProtocol {
    /// The value naming this protocol in the `OTEL_EXPORTER_OTLP_*PROTOCOL` variables.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::Grpc => "grpc",
        }
    }
}

impl std::fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    pub protocol: OtlpProtocol,
    /// A collector URL set in code, used as is (for OTLP/HTTP the full `/v1/traces` URL).
    /// `None`, as [`TelemetryConfig::from_env`] leaves it, lets the exporter read the
    /// standard variables itself: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, used as is, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, the collector's base URL (OTLP/HTTP appends
    /// `/v1/traces`).
    pub endpoint: Option<String>,
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
    /// Export target; `None` (no endpoint variable set, or `OTEL_TRACES_EXPORTER=none`)
    /// means spans are created and propagated, so trace ids still tie logs together, but
    /// not exported.
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
    /// count as unset, as the OpenTelemetry specification asks. The exporter still reads
    /// its endpoint, timeout and headers from the process environment; set
    /// [`OtlpTarget::endpoint`] to send spans elsewhere.
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

        // Which endpoint wins, and the `/v1/traces` path, are the exporter's business: it
        // reads these variables itself. Here they only decide whether to export.
        let endpoint_set = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        let otlp = (endpoint_set && tracing_enabled && !exporter_none).then_some(OtlpTarget {
            protocol,
            endpoint: None,
        });

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

    /// The export decision `from_lookup` makes for `vars`; the endpoint is always left to
    /// the exporter.
    fn export(vars: &[(&str, &str)]) -> Option<OtlpProtocol> {
        let c = config(vars);
        if let Some(target) = &c.otlp {
            assert_eq!(
                target.endpoint, None,
                "from_lookup leaves the endpoint to the exporter: {target:?}"
            );
        }
        c.otlp.map(|t| t.protocol)
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318");
    const TRACES_ENDPOINT: (&str, &str) = (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://otel:4318/v1/traces",
    );

    #[test]
    fn no_endpoint_means_no_export_but_tracing_on() {
        let c = config(&[]);
        assert_eq!(c.otlp, None);
        assert_eq!(c.invalid_protocol, None);
        assert!(c.tracing_enabled);
        assert_eq!(c.service_name, "foodseg-worker");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.jaeger_url_template, DEFAULT_JAEGER_URL_TEMPLATE);
        // A protocol alone exports nothing either.
        assert_eq!(export(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]), None);
    }

    #[test]
    fn either_endpoint_variable_turns_export_on_over_http_by_default() {
        assert_eq!(export(&[ENDPOINT]), Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(export(&[TRACES_ENDPOINT]), Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(
            export(&[ENDPOINT, TRACES_ENDPOINT]),
            Some(OtlpProtocol::HttpProtobuf)
        );
    }

    #[test]
    fn protocol_comes_from_the_generic_variable() {
        for (value, protocol) in [
            ("grpc", OtlpProtocol::Grpc),
            ("http/protobuf", OtlpProtocol::HttpProtobuf),
        ] {
            assert_eq!(
                export(&[TRACES_ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", value)]),
                Some(protocol)
            );
        }
    }

    #[test]
    fn traces_protocol_wins_over_the_generic_one() {
        assert_eq!(
            export(&[
                ENDPOINT,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ]),
            Some(OtlpProtocol::Grpc)
        );
        assert_eq!(
            export(&[
                ENDPOINT,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ]),
            Some(OtlpProtocol::HttpProtobuf)
        );
        // An unsupported generic value is irrelevant when the traces one is valid.
        let c = config(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        assert_eq!(c.invalid_protocol, None);
        assert_eq!(c.otlp.map(|t| t.protocol), Some(OtlpProtocol::Grpc));
    }

    #[test]
    fn unsupported_protocol_is_reported() {
        let c = config(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(c.invalid_protocol.as_deref(), Some("http/json"));
        let c = config(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "GRPC"),
        ]);
        assert_eq!(c.invalid_protocol.as_deref(), Some("GRPC"));
    }

    #[test]
    fn disabled_sdk_or_none_exporter_turns_export_off() {
        for endpoint in [ENDPOINT, TRACES_ENDPOINT] {
            let c = config(&[endpoint, ("OTEL_SDK_DISABLED", "true")]);
            assert!(!c.tracing_enabled);
            assert_eq!(c.otlp, None);
            let c = config(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]);
            assert!(!c.tracing_enabled);
            assert_eq!(c.otlp, None);
            let c = config(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]);
            assert!(c.tracing_enabled);
            assert_eq!(c.otlp, None);
            // Any other value leaves both on.
            let c = config(&[
                endpoint,
                ("OTEL_SDK_DISABLED", "false"),
                ("OTEL_TRACES_EXPORTER", "otlp"),
            ]);
            assert!(c.tracing_enabled);
            assert!(c.otlp.is_some());
        }
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
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", " "),
            ("OTEL_SERVICE_NAME", " "),
        ]);
        assert_eq!(c.otlp, None);
        assert_eq!(c.service_name, "foodseg-worker");
        assert_eq!(
            export(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "")]),
            Some(OtlpProtocol::HttpProtobuf)
        );
    }
}
