//! The foodseg segmentation worker. It pulls job messages from JetStream (one durable
//! consumer per model it serves), claims each job in Postgres under a lease with an
//! attempt fence, fetches and decodes the image while the model runs inference on other
//! jobs, and writes the result — or a classified failure — through the fenced store
//! calls. Postgres decides who runs a job; NATS only rings the bell.

pub mod batch;
mod compare;
pub mod config;
mod consumer;
pub mod error;
pub mod failure;
mod heartbeat;
mod image_source;
pub mod import;
mod job;
mod lease;
pub mod metrics;
pub mod segment;
mod serving;
pub mod shadow;
mod slot;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use foodseg_engine::store::WorkerInfo;
use foodseg_engine::{Finisher, GroupConfig, Store};
use foodseg_runtime::{ReadyReport, serve_ops};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{BatchConfig, Config, ImageLimits};
pub use error::WorkerError;
pub use failure::Failure;
pub use foodseg_pipeline::Device;
pub use foodseg_runtime::ConfigError;

use crate::job::JobContext;
use crate::segment::ImageFetcher;
use crate::serving::Serving;

/// How long released jobs get to write their release after the drain time is over.
const RELEASE_GRACE: Duration = Duration::from_secs(10);

/// Runs the worker until `shutdown` fires, then stops pulling, lets in-flight jobs finish
/// within the drain timeout and releases the ones that do not.
///
/// Models and ONNX Runtime sessions load first, each warmed by one run on a blank
/// image: a model that cannot load or run (for example CUDA asked for but unavailable) is
/// an error before any message is consumed. Then the ops listener opens, and the worker
/// waits for Postgres (and applies the migrations) before it consumes. While it runs, it
/// follows the models directory (on SIGHUP and every `FOODSEG_MODELS_POLL`): changed
/// models are swapped and added ones served without a restart.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let metrics_handle = foodseg_telemetry::metrics::install()?;
    let models_watch = config.common.models_watch();
    let runtimes = segment::load_models(&config).await?;
    // The candidate of FOODSEG_SHADOW, loaded and warm before any job is taken.
    let shadow = shadow::Shadow::load(&config).await?;
    let names: Vec<&str> = runtimes.iter().map(|r| r.name()).collect();
    metrics::register(&names, config.concurrency);
    tracing::info!(worker_id = %config.worker_id, models = ?names, "models loaded");
    let models: Vec<String> = names.iter().map(|n| n.to_string()).collect();

    let common = &config.common;
    let store = Store::connect_lazy(&common.store_config(), common.subjects.clone())?;
    let bus = common.connect_bus().await?;

    let consuming = Arc::new(AtomicBool::new(false));
    // The listener answers while the worker waits for Postgres, and stops with the
    // worker, including when `run` returns an error.
    let server_stop = shutdown.child_token();
    let _server_stop_on_return = server_stop.clone().drop_guard();
    let server = match foodseg_runtime::bind(config.http_addr).await? {
        Some(listener) => {
            let ready = {
                let (store, bus, consuming) = (store.clone(), bus.clone(), consuming.clone());
                move || {
                    let (store, bus, consuming) = (store.clone(), bus.clone(), consuming.clone());
                    async move {
                        ReadyReport::new()
                            .check("consuming", consuming.load(Ordering::Relaxed))
                            .check("nats", bus.is_connected())
                            .check("postgres", store.ping().await.is_ok())
                    }
                }
            };
            let render_metrics = move || metrics_handle.render();
            Some(serve_ops(
                listener,
                ready,
                render_metrics,
                server_stop.clone(),
            )?)
        }
        None => None,
    };
    if !foodseg_runtime::migrate(&store, &shutdown)
        .await?
        .applied()
        .await?
    {
        return Ok(());
    }
    bus.ensure_streams().await?;

    if let Some(shadow) = &shadow {
        tokio::spawn(shadow.clone().run_queue(store.clone(), shutdown.clone()));
    }
    let fetcher = ImageFetcher::new(&common.net_policy, config.image)?;
    let ctx = Arc::new(JobContext {
        finisher: Finisher::start(store.clone(), finisher_config(config.concurrency)),
        store: store.clone(),
        worker_id: config.worker_id.clone(),
        lease: config.lease,
        renew_every: config.renew_every(),
        retry: config.retry,
        fetcher,
        shadow,
    });
    let (info, info_rx) = tokio::sync::watch::channel(WorkerInfo {
        id: config.worker_id.clone(),
        models,
        concurrency: i32::try_from(config.concurrency).unwrap_or(i32::MAX),
        version: env!("CARGO_PKG_VERSION").to_string(),
    });
    let tracker = TaskTracker::new();
    let release = CancellationToken::new();
    let serving = Arc::new(Serving {
        ack_wait: (config.lease * 2).max(Duration::from_secs(30)),
        max_ack_pending: max_ack_pending(config.concurrency),
        config: config.clone(),
        bus: bus.clone(),
        ctx,
        permits: Arc::new(Semaphore::new(config.concurrency)),
        tracker: tracker.clone(),
        stop: shutdown.clone(),
        release: release.clone(),
        info,
        slots: Default::default(),
        loops: Default::default(),
    });
    for runtime in runtimes {
        serving.serve(runtime).await?;
    }
    let watcher = tokio::spawn({
        let serving = serving.clone();
        models_watch.run(shutdown.clone(), move |registry| {
            let serving = serving.clone();
            async move { serving.apply(registry).await }
        })
    });
    let heartbeat_stop = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat::run(
        store.clone(),
        info_rx,
        heartbeat_stop.clone(),
    ));
    consuming.store(true, Ordering::Relaxed);
    tracing::info!(concurrency = config.concurrency, lease = ?config.lease, "worker running");

    shutdown.cancelled().await;
    consuming.store(false, Ordering::Relaxed);
    let _ = watcher.await;
    serving.join().await;
    tracker.close();
    if tokio::time::timeout(config.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = tracker.len(),
            "drain time over; releasing unfinished jobs"
        );
        release.cancel();
        if tokio::time::timeout(RELEASE_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                in_flight = tracker.len(),
                "jobs still held after release; their leases will lapse and the sweeper re-drive them"
            );
        }
    }
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    server_stop.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Workers of one model the consumer has room for, each with this worker's concurrency.
const WORKERS_PER_MODEL: i64 = 256;

/// The consumer's bound on messages handed out and not yet answered. Workers hold only
/// the jobs they run (a retry's backoff waits in Postgres, not on the server), so this is
/// the in-flight jobs of [`WORKERS_PER_MODEL`] workers.
fn max_ack_pending(concurrency: usize) -> i64 {
    i64::try_from(concurrency)
        .unwrap_or(i64::MAX)
        .saturating_mul(WORKERS_PER_MODEL)
}

/// The group commit of results: a few batches in flight (each holds a database
/// connection while it is written), each at most the jobs this worker runs at once. A
/// worker running one job at a time writes each result on its own, at once.
fn finisher_config(concurrency: usize) -> GroupConfig {
    GroupConfig {
        writers: 4,
        max_batch: concurrency.max(1),
        queue: concurrency.max(1).saturating_mul(2),
    }
}
