//! The steps every service takes between reading its configuration and doing its work,
//! in this order: bind the ops listener (so `/health/live` answers while the rest
//! starts), wait for Postgres and apply the migrations, run, and on shutdown wait for its
//! tasks to end.

use std::net::SocketAddr;
use std::time::Duration;

use foodseg_engine::{Backoff, Store, StoreError, error_chain};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The first wait between two tries to reach Postgres; it doubles up to [`MIGRATE_MAX_WAIT`].
pub const MIGRATE_FIRST_WAIT: Duration = Duration::from_millis(200);
/// The longest wait between two tries to reach Postgres.
pub const MIGRATE_MAX_WAIT: Duration = Duration::from_secs(5);

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr`, if the service has one configured (`None` runs without a listener).
pub async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, ListenError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| ListenError {
            addr: addr.to_string(),
            source,
        })
}

/// Where the schema stands after [`migrate`].
#[derive(Debug)]
pub enum Schema {
    /// The migrations are applied.
    Applied,
    /// Postgres was unreachable: a task applies the migrations once it can (`Ok(false)`
    /// if shutdown comes first).
    Waiting(JoinHandle<Result<bool, StoreError>>),
}

impl Schema {
    /// Waits until the migrations are applied: `Ok(false)` when shutdown came first.
    pub async fn applied(self) -> Result<bool, StoreError> {
        match self {
            Schema::Applied => Ok(true),
            Schema::Waiting(task) => task.await.unwrap_or(Ok(false)),
        }
    }
}

/// Applies pending migrations. When Postgres is unreachable, a task keeps trying (every
/// wait logged, growing from [`MIGRATE_FIRST_WAIT`] to [`MIGRATE_MAX_WAIT`]) until it can
/// or `shutdown` fires, so a service may serve its health while it waits. Any failure
/// other than "unreachable" (a migration that does not apply) is returned.
pub async fn migrate(store: &Store, shutdown: &CancellationToken) -> Result<Schema, StoreError> {
    match store.migrate().await {
        Ok(()) => return Ok(Schema::Applied),
        Err(e) if e.is_unavailable() => {
            tracing::warn!(error = %error_chain(&e), "database unreachable; waiting to apply migrations");
        }
        Err(e) => return Err(e),
    }
    let (store, shutdown) = (store.clone(), shutdown.clone());
    Ok(Schema::Waiting(tokio::spawn(async move {
        let mut retries = Backoff::new(MIGRATE_FIRST_WAIT, MIGRATE_MAX_WAIT).retries();
        while retries.wait(&shutdown).await {
            match store.migrate().await {
                Ok(()) => {
                    tracing::info!("database reachable; migrations applied");
                    return Ok(true);
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %error_chain(&e), "database still unreachable; waiting to apply migrations");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    })))
}

/// Waits for a service's background tasks to end (after their token was cancelled),
/// logging any that panicked.
pub async fn join_tasks(service: &str, tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        if let Err(e) = task.await {
            tracing::warn!(service, error = %e, "a task ended abnormally");
        }
    }
}
