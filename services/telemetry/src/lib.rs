//! Telemetry for the foodseg services: structured logs (text or JSON) through `tracing`.
//! Trace export and metrics build on the same entry point.

pub mod trace;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log format, from `FOODSEG_LOG_FORMAT` (`text` or `json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Telemetry settings of one service.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Default `service.name` when `OTEL_SERVICE_NAME` is unset.
    pub service_name: String,
    pub log_format: LogFormat,
}

impl TelemetryConfig {
    /// Reads `FOODSEG_LOG_FORMAT`; `RUST_LOG` filters (default `info`).
    pub fn from_env(service_name: &str) -> Self {
        let log_format = match std::env::var("FOODSEG_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        TelemetryConfig {
            service_name: service_name.to_string(),
            log_format,
        }
    }
}

/// Keeps telemetry alive; dropping it flushes what is buffered.
#[derive(Debug)]
pub struct TelemetryGuard {
    _private: (),
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(config: &TelemetryConfig) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Text => registry.with(fmt::layer()).init(),
        LogFormat::Json => registry.with(fmt::layer().json()).init(),
    }
    TelemetryGuard { _private: () }
}
