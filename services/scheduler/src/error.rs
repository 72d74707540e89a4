//! Why the scheduler could not start or stopped.

use foodseg_engine::{BusError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration")]
    Config(#[from] foodseg_runtime::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot build the webhook HTTP client")]
    HttpClient(#[source] foodseg_http::Error),
    #[error(transparent)]
    Listen(#[from] foodseg_runtime::ListenError),
    #[error(transparent)]
    Metrics(#[from] foodseg_telemetry::metrics::MetricsError),
}
