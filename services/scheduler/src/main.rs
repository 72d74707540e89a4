use anyhow::Context;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = foodseg_telemetry::TelemetryConfig::from_env("foodseg-scheduler");
    let _guard = foodseg_telemetry::init(&telemetry).context("starting telemetry")?;
    let config = foodseg_scheduler::Config::from_env().context("reading configuration")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    foodseg_scheduler::run(config, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(foodseg_scheduler::error::chain(&e)))
}

/// Ctrl-C or SIGTERM starts a graceful shutdown.
async fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
    token.cancel();
}
