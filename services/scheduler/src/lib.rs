//! The foodseg scheduler: posts each finished job's result to its webhook exactly as MFR
//! expects (the v1 job document, encoded as a JSON string) with retries over up to a day,
//! and repairs what crashes and lost messages leave behind — RUNNING jobs whose worker
//! died are re-driven (or failed once out of attempts), QUEUED jobs whose dispatch message
//! was lost are republished, stuck outbox rows are published by the relay it runs — plus
//! a daily reconciliation report.
//!
//! It reacts to finished-job events and Postgres notifications for low latency, and also
//! scans Postgres periodically, so nothing depends on a message arriving. Any number of
//! schedulers may run against one database: deliveries are claimed with row locks
//! (`FOR UPDATE SKIP LOCKED`) and every attempt is fenced on its number and claim.
//!
//! # Layout
//!
//! This file builds the scheduler from its [`Config`] and runs its tasks ([`run`],
//! [`serve`]); `main.rs` is the binary around it. Beside them, `config.rs` reads the
//! environment, `error.rs` says why the scheduler could not start, and `metrics.rs` holds
//! its Prometheus series.
//!
//! * [`webhook`] delivers results: `body.rs` encodes the v1 body, `signature.rs` signs it,
//!   `sender.rs` sends one attempt, `schedule.rs` decides what follows an answer,
//!   `retry_after.rs` reads the receiver's `Retry-After`, `dispatcher.rs` claims due
//!   deliveries and runs the attempts, and `wakers.rs` wakes it on finished-job events
//!   and new deliveries.
//! * [`maintenance`] repairs and reports: `sweeper.rs` re-drives or fails jobs whose
//!   worker died and republishes lost dispatch messages, `uploads.rs` purges uploaded
//!   images no longer needed (with every sweep), and `reconcile.rs` runs the daily
//!   reconciliation.

pub mod config;
pub mod error;
pub mod maintenance;
pub mod metrics;
pub mod webhook;

pub use config::Config;
pub use error::Error;

use std::sync::Arc;

use foodseg_engine::error_chain;
use foodseg_engine::{Bus, Relay, Store};
use foodseg_runtime::{ReadyReport, serve_ops};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::maintenance::reconcile;
use crate::maintenance::sweeper::Sweeper;
use crate::webhook::dispatcher::Dispatcher;
use crate::webhook::sender::Sender;
use crate::webhook::wakers;

/// What the scheduler runs on, built from a [`Config`] or assembled by tests (a per-test
/// pool, unique subjects).
#[derive(Debug, Clone)]
pub struct Parts {
    pub store: Store,
    pub bus: Bus,
}

impl Parts {
    /// Connects (lazily) to Postgres and NATS: neither needs to be up to start.
    pub async fn from_config(config: &Config) -> Result<Self, Error> {
        let common = &config.common;
        let store = Store::connect_lazy(&common.store_config(), common.subjects.clone())?;
        let bus = common.connect_bus().await?;
        Ok(Parts { store, bus })
    }
}

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let parts = Parts::from_config(&config).await?;
    let listener = foodseg_runtime::bind(config.http_addr).await?;
    serve(config, parts, listener, shutdown).await
}

/// Runs the scheduler on `parts` (and the probes on `listener`, if any) until `shutdown`:
/// applies migrations (waiting for Postgres if needed), then runs the delivery loop, the
/// event and notification wakers, the outbox relay, the sweeps and the daily pass. On
/// shutdown, attempts in flight finish and are recorded.
pub async fn serve(
    config: Config,
    parts: Parts,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let Parts { store, bus } = parts;
    if !foodseg_runtime::migrate(&store, &shutdown)
        .await?
        .applied()
        .await?
    {
        return Ok(());
    }
    let metrics_handle = foodseg_telemetry::metrics::install()?;
    metrics::describe();
    let sender = Sender::new(
        config.common.net_policy.clone(),
        config.webhook_secrets.clone(),
        config.attempt_timeout,
        config.connect_timeout,
    )
    .map_err(Error::HttpClient)?;

    let tasks = shutdown.child_token();
    let wake = Arc::new(Notify::new());
    let relay = Relay::new(store.clone(), bus.clone(), config.common.relay_config());
    let sweeper = Sweeper {
        models: served_models(&config.common.models_dir),
        store: store.clone(),
        bus: bus.clone(),
        relay: relay.waker(),
        actor: config.scheduler_id.clone(),
        stale_queued_after: config.stale_queued_after,
        max_queue_wait: config.max_queue_wait,
        upload_retention: config.upload_retention,
        redrive_grace: config.redrive_grace,
        retention: config.retention,
        delivery_max_age: config.delivery_max_age,
    };
    let mut handles = vec![
        tokio::spawn(relay.run(tasks.clone())),
        tokio::spawn(wakers::consume_events(
            bus.clone(),
            wake.clone(),
            tasks.clone(),
        )),
        tokio::spawn(wakers::listen_deliveries(
            store.pool().clone(),
            wake.clone(),
            tasks.clone(),
        )),
        tokio::spawn(sweeper.run(config.sweep_interval, tasks.clone())),
        tokio::spawn(reconcile::run(
            store.clone(),
            config.reconcile_at,
            tasks.clone(),
        )),
    ];
    if let Some(listener) = listener {
        let ready = {
            let (store, bus) = (store.clone(), bus.clone());
            move || {
                let (store, bus) = (store.clone(), bus.clone());
                async move {
                    ReadyReport::new()
                        .check("nats", bus.is_connected())
                        .check("postgres", store.ping().await.is_ok())
                }
            }
        };
        let render_metrics = move || metrics_handle.render();
        handles.push(serve_ops(listener, ready, render_metrics, tasks.clone())?);
    }
    tracing::info!(scheduler_id = %config.scheduler_id, "scheduler started");

    let dispatcher = Arc::new(Dispatcher::new(store, sender, &config, wake));
    dispatcher.run(shutdown.clone()).await;
    tasks.cancel();
    foodseg_runtime::join_tasks("scheduler", handles).await;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// The models of the registry (`FOODSEG_MODELS_DIR`): the per-model worker gauges cover
/// each of them from the start, so "no live worker for a model" is visible even before
/// any job or worker names it. Without a readable registry, only the models the database
/// names are covered.
fn served_models(dir: &std::path::Path) -> Vec<String> {
    match foodseg_models::Registry::load(dir) {
        Ok(registry) => registry
            .models()
            .iter()
            .map(|m| m.name().to_string())
            .collect(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %error_chain(&e), "no model registry; worker gauges cover only the models the database names");
            Vec::new()
        }
    }
}
