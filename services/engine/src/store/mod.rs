//! Postgres adapter: the source of truth for jobs, their events, the outbox and deliveries.
//!
//! Every state change is one statement or one transaction that checks the state it expects,
//! so two processes racing on the same job can never both win.
//!
//! Each side effect of a job has one home: a job finishes only through `finish.rs` (row,
//! event, finished message, webhook); `Nats-Msg-Id`s are built in [`crate::message`] and
//! bound into the statements; a message's trace headers (`job_trace_headers`) and a
//! webhook's `webhook-id` (`job_webhook_id`) are SQL functions from the migrations. SQL
//! is written as raw strings; a statement that runs on a timer over a whole table begins
//! with `-- periodic: <name>`, and the plans test explains every such statement against
//! a million jobs.

#[macro_use]
mod row;
mod api_keys;
mod console;
#[macro_use]
mod deliveries;
mod attempts;
mod batches;
mod endpoints;
mod error;
mod feed;
mod finish;
mod idempotency;
mod jobs;
mod operator;
mod outbox;
mod redispatch;
mod retention;
mod shadow;
mod sweeps;
mod uploads;
mod workers;

pub use api_keys::{ApiKeyRow, CreateKeyError};
pub use attempts::{EndpointChange, Recorded};
pub use batches::{
    BatchCancel, BatchItem, BatchProgress, BatchWrite, CANCELLED_WITH_BATCH, NewBatch,
};
pub use console::{
    ConsoleSession, FinishedStats, JobFilter, JobSummary, StateCount, WebhookBacklog,
};
pub(crate) use deliveries::AttemptRow;
pub use deliveries::{
    AttemptRecord, ClaimedDelivery, DeliveryAttemptRow, DeliveryRow, DeliveryView, Redelivery,
};
pub use endpoints::{EndpointEvent, EndpointHealthCounts, EndpointSteer, EndpointView};
pub use error::{StoreError, is_unavailable};
pub use feed::{Cursor, ReconciliationRow};
pub use finish::Success;
pub use idempotency::{IdempotencyKey, IdempotencyScope, Idempotent};
pub use jobs::{
    ClaimOutcome, FenceLost, MSG_IN_PROGRESS, MSG_QUEUED, MSG_SUCCESS, NewJob, RetryOutcome,
};
pub use operator::{Action, CANCELLED_BY_OPERATOR};
pub use outbox::{HeldLane, OutboxBatch, OutboxRow};
pub use redispatch::{DispatchState, REPUBLISH_DETAIL, StaleQueued};
pub use row::{Job, JobEventRow};
pub use shadow::{
    Agreement, ClassAgreement, ClassCounts, NewShadowResult, Percentiles, ShadowComparison,
    ShadowPair, VersionPair, agreement,
};
pub use sweeps::{
    JobStateCount, LOST_FAIL_DETAIL, REDRIVE_DETAIL, ReconciliationReport, RedriveReport,
    day_bounds,
};
pub use uploads::{
    NewUpload, UPLOAD_SCHEME, Upload, is_upload_url, upload_image_url, upload_job_id,
};
pub use workers::{ModelLoad, WORKER_LIVE_WITHIN, WorkerInfo, WorkerRow, unserved_message};

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::subjects::Subjects;

/// Migrations embedded from the workspace's `migrations/` folder.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How to reach Postgres.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub database_url: String,
    pub max_connections: u32,
    /// How long a caller waits for a connection before the store reports itself unavailable.
    pub acquire_timeout: Duration,
    /// Postgres's `statement_timeout` on every connection of the pool: a statement running
    /// longer is cancelled by the server (an abandoned request's query does not run on).
    /// `None` leaves the server's setting. Migrations run without it.
    pub statement_timeout: Option<Duration>,
}

impl StoreConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        StoreConfig {
            database_url: database_url.into(),
            max_connections: 32,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: None,
        }
    }
}

/// Handle to the job store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    subjects: Subjects,
}

impl Store {
    /// Connects lazily: the pool opens connections on first use, so a service can start
    /// (and report itself not ready) while Postgres is down.
    pub fn connect_lazy(config: &StoreConfig, subjects: Subjects) -> Result<Self, StoreError> {
        let mut options: PgConnectOptions = config
            .database_url
            .parse()
            .map_err(|source| StoreError::Config { source })?;
        if let Some(timeout) = config.statement_timeout {
            options =
                options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Store { pool, subjects })
    }

    /// Wraps an existing pool (tests use the per-test database of `#[sqlx::test]`).
    pub fn from_pool(pool: PgPool, subjects: Subjects) -> Self {
        Store { pool, subjects }
    }

    /// Applies pending migrations. Concurrent callers are serialised by sqlx's advisory lock.
    /// They run on a connection of their own without the pool's `statement_timeout` (an
    /// index built on a large table may take minutes), closed afterwards.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let options = (*self.pool.connect_options())
            .clone()
            .options([("statement_timeout", "0")]);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.pool.options().get_acquire_timeout())
            .connect_lazy_with(options);
        let migrated = MIGRATOR.run(&pool).await;
        pool.close().await;
        migrated?;
        Ok(())
    }

    /// A cheap round trip, for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar!(r#"SELECT 1 AS one"#)
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }
}
