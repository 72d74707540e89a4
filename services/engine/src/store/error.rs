use crate::domain::IllegalTransition;

use super::FenceLost;

/// Failures of the job store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid DATABASE_URL")]
    Config {
        #[source]
        source: sqlx::Error,
    },
    /// Postgres cannot be reached or is not accepting writes right now (connection
    /// refused or lost, pool timeout, server shutting down, read-only after a failover).
    /// Callers answer 503 or retry; it is never the request's fault.
    #[error("database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The statement ran past the connection's `statement_timeout` and Postgres cancelled
    /// it (SQLSTATE 57014). Callers answer 503; it is not the request's fault either.
    #[error("database statement timed out")]
    TimedOut(#[source] sqlx::Error),
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error(transparent)]
    FenceLost(#[from] FenceLost),
}

impl StoreError {
    /// Whether the database could not be reached at all (as opposed to a failed query).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The one answer to "is the database unreachable?": transport failures, an exhausted or
/// closed pool, and the server-side SQLSTATEs of the same kind — class 08 (connection
/// exception), 57P01–57P03 (admin shutdown, crash shutdown, cannot connect now) and 25006
/// (read-only transaction, as a demoted primary answers after a failover).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "25006")
        }),
        _ => false,
    }
}

/// Postgres cancelled the statement because it ran past `statement_timeout`.
fn is_statement_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|code| code == "57014"))
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else if is_statement_timeout(&e) {
            StoreError::TimedOut(e)
        } else {
            StoreError::Query(e)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) if is_unavailable(&inner) => {
                StoreError::Unavailable(inner)
            }
            other => StoreError::Migrate(other),
        }
    }
}
