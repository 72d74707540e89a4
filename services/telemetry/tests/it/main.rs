//! Integration tests of foodseg-telemetry, one module per area.
//!
//! `telemetry::init` installs a process-wide subscriber, which a process gets once: only
//! `export_http` calls it. Tests needing a pipeline of their own build one with
//! `telemetry::build` and scope it to their thread with [`scoped`].

mod dead_collector;
mod dead_collector_grpc;
mod export_http;
mod metrics;
mod propagation;

use foodseg_telemetry::{TelemetryConfig, TelemetryGuard};
use tracing::dispatcher::DefaultGuard;

/// Builds the telemetry of `config` and makes it the current thread's subscriber until
/// the returned [`DefaultGuard`] drops. Spans made on other threads do not reach it.
pub fn scoped(config: &TelemetryConfig) -> anyhow::Result<(DefaultGuard, TelemetryGuard)> {
    let (dispatch, guard) = foodseg_telemetry::build(config)?;
    Ok((tracing::dispatcher::set_default(&dispatch), guard))
}
