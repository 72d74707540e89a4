//! Why the scheduler could not start or stopped.

use foodseg_engine::{BusError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot build the webhook HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] foodseg_telemetry::metrics::MetricsError),
}

/// An error and its sources, `: `-separated, for logs.
pub use foodseg_engine::error_chain as chain;
