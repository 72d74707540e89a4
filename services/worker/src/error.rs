//! Why the worker cannot start or keep running.

use foodseg_engine::{BusError, StoreError};

/// A failure of the worker as a whole (a single job's failure is a [`crate::failure::Failure`]).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid configuration")]
    Config(#[from] foodseg_runtime::ConfigError),
    #[error("job store")]
    Store(#[from] StoreError),
    #[error("NATS")]
    Bus(#[from] BusError),
    #[error("cannot load the model registry")]
    Registry(#[from] foodseg_models::RegistryError),
    #[error("this worker serves no model: {0}")]
    NoModel(String),
    #[error("cannot load model {model}")]
    Model {
        model: String,
        #[source]
        source: foodseg_pipeline::SessionError,
    },
    #[error("metrics")]
    Metrics(#[from] foodseg_telemetry::metrics::MetricsError),
    #[error("cannot build the image download client")]
    HttpClient(#[source] foodseg_http::Error),
    #[error(transparent)]
    Listen(#[from] foodseg_runtime::ListenError),
}
