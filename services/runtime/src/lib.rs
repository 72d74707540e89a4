//! Process plumbing shared by the foodseg binaries: the configuration loader ([`Env`],
//! [`Common`]), the `main` sequence (telemetry, configuration, Ctrl-C/SIGTERM turned into
//! a [`CancellationToken`], the error chain on failure) and the small ops listener
//! serving `/health/live`, `/health/ready` and `/metrics`.

pub mod config;
mod ops;
mod signal;

use std::future::Future;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use config::{Common, ConfigError, Env, Unit};
pub use ops::{ReadyReport, serve_ops};
pub use signal::shutdown_on_signal;

/// The body of a service's `main`: starts telemetry as `service`, reads the configuration
/// with `config`, then runs `run` until it returns, cancelling its token on Ctrl-C or
/// SIGTERM. A failure of `run` becomes its error chain on one line.
pub async fn run_service<T, CE, R, Fut, E>(
    service: &str,
    config: impl FnOnce() -> Result<T, CE>,
    run: R,
) -> anyhow::Result<()>
where
    CE: std::error::Error + Send + Sync + 'static,
    R: FnOnce(T, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error,
{
    let telemetry = foodseg_telemetry::TelemetryConfig::from_env(service);
    let _guard = foodseg_telemetry::init(&telemetry).context("starting telemetry")?;
    let config = config().context("reading configuration")?;
    let shutdown = shutdown_on_signal();
    run(config, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(foodseg_engine::error_chain(&e)))
}
