//! The skeleton every foodseg service is built on, so the api, the worker and the
//! scheduler start and stop the same way: the command line ([`parse_service_args`]:
//! `--help`, `--version`, nothing else), the `main` sequence ([`run_service`]: telemetry,
//! configuration, Ctrl-C/SIGTERM turned into a [`CancellationToken`], startup errors with
//! their context), the configuration loader ([`Env`], [`Common`]), the startup steps
//! ([`startup`]: bind, wait for Postgres and migrate, join the tasks on the way out) and
//! the small ops listener serving `/health/live`, `/health/ready` and `/metrics`.

pub mod config;
mod models_watch;
mod ops;
mod signal;
pub mod startup;

use std::future::Future;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use config::{Common, ConfigError, Env, Unit};
pub use models_watch::ModelsWatch;
pub use ops::{ReadyReport, serve_ops};
pub use signal::shutdown_on_signal;
pub use startup::{ListenError, Schema, bind, join_tasks, migrate};

/// The command line of a service binary that takes no arguments: `--help` prints `about`
/// and how it is configured, `--version` the version, and anything else is refused with
/// a usage message (exit code 2) — never started as the service.
pub fn service_command(service: &'static str, about: &'static str) -> clap::Command {
    clap::Command::new(service)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .after_help(
            "Configured by environment variables (DATABASE_URL, NATS_URL, FOODSEG_*): \
             docs/configuration.md lists them all. Ctrl-C or SIGTERM stops it gracefully.",
        )
}

/// Parses the command line of a service that takes no arguments ([`service_command`]):
/// returns only when there were none; `--help` and `--version` print and exit 0, anything
/// else exits 2 with a usage message.
pub fn parse_service_args(service: &'static str, about: &'static str) {
    service_command(service, about).get_matches();
}

/// The body of a service's `main`, once its arguments are parsed: starts telemetry as
/// `service`, reads the configuration with `config`, then runs `run` until it returns,
/// cancelling its token on Ctrl-C or SIGTERM. A failure keeps its chain of causes under
/// the step that failed.
pub async fn run_service<T, CE, R, Fut, E>(
    service: &'static str,
    config: impl FnOnce() -> Result<T, CE>,
    run: R,
) -> anyhow::Result<()>
where
    CE: std::error::Error + Send + Sync + 'static,
    R: FnOnce(T, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let telemetry = foodseg_telemetry::TelemetryConfig::from_env(service);
    let _guard = foodseg_telemetry::init(&telemetry).context("starting telemetry")?;
    let config = config().context("reading configuration")?;
    let shutdown = shutdown_on_signal();
    run(config, shutdown)
        .await
        .with_context(|| format!("{service} stopped with an error"))
}
