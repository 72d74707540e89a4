//! Why telemetry could not be set up.

use tracing_subscriber::filter::ParseError;
use tracing_subscriber::util::TryInitError;

use crate::config::OtlpProtocol;

/// Telemetry could not be set up; every variant is a configuration the operator fixes.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("unsupported OTLP protocol {0:?}: use \"http/protobuf\" or \"grpc\"")]
    UnsupportedProtocol(String),
    #[error("invalid RUST_LOG directives {directives:?}")]
    LogFilter {
        directives: String,
        #[source]
        source: ParseError,
    },
    #[error("invalid FOODSEG_TRACE_FILTER directives {directives:?}")]
    TraceFilter {
        directives: String,
        #[source]
        source: ParseError,
    },
    #[error("cannot set up the OTLP ({protocol}) span exporter")]
    Exporter {
        protocol: OtlpProtocol,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("cannot set up the OTLP/HTTP client")]
    HttpClient(#[source] foodseg_http::Error),
    #[error("OTLP over gRPC needs a Tokio runtime: call telemetry::init inside it")]
    NoRuntime,
    #[error("a global tracing subscriber or logger is already installed")]
    AlreadyInitialized(#[source] TryInitError),
}
