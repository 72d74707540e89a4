//! The foodseg api service: the MFR v1 contract (`POST /enqueue`, `GET /status/{job_id}`),
//! health probes, the OpenAPI document and its interactive docs. An enqueue writes the job,
//! its first event and its dispatch message in one transaction; the outbox relay running
//! in this process publishes the message to JetStream, so the api keeps accepting jobs
//! while NATS is down. With Postgres down it answers 503 within a bounded time.

pub mod auth;
pub mod batch;
pub mod config;
pub mod console;
pub mod endpoint_steer;
pub mod enqueue;
pub mod error;
pub mod idempotency;
pub mod keys_command;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod paging;
pub mod request;
pub mod routes;
pub mod state;
pub mod upload;

pub use config::Config;
pub use error::{ApiError, Error};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use foodseg_engine::error_chain;
use foodseg_engine::netguard::NetPolicy;
use foodseg_engine::{Bus, Enqueuer, GroupConfig, Relay, RelayConfig, Store};
use foodseg_models::{Registry, SharedRegistry};
use foodseg_runtime::Schema;
use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How long in-flight requests may finish after shutdown is requested.
const GRACEFUL_STOP: Duration = Duration::from_secs(10);
/// A client has this long to send a request's head (Slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection on which nothing was read or written this long is closed: an idle
/// keep-alive connection, or a body that stopped arriving.
const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A body whose next chunk takes this long is failed (uploads also have a whole-body
/// timeout, `FOODSEG_UPLOAD_BODY_TIMEOUT`).
const BODY_CHUNK_TIMEOUT: Duration = Duration::from_secs(20);
/// An answer the client does not read for this long is abandoned.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the api runs on, built from a [`Config`] or assembled by tests (a per-test pool,
/// unique subjects).
#[derive(Debug, Clone)]
pub struct Parts {
    pub store: Store,
    pub bus: Bus,
    pub registry: Registry,
    pub max_attempts: foodseg_engine::Attempt,
    pub net_policy: NetPolicy,
    pub relay: RelayConfig,
    pub uploads: upload::UploadLimits,
    pub access: auth::AccessConfig,
    pub limits: limits::LimitSettings,
    /// How long idempotency keys are kept (`FOODSEG_IDEMPOTENCY_HOURS`).
    pub idempotency_keep: Duration,
    /// Follows the models directory (with `FOODSEG_DEFAULT_MODEL` applied to each
    /// reload); `None` keeps the registry loaded at start.
    pub models_watch: Option<(foodseg_runtime::ModelsWatch, Option<String>)>,
}

impl Parts {
    /// Loads the model registry and connects (lazily) to Postgres and NATS: neither needs
    /// to be up for the api to start.
    pub async fn from_config(config: &Config) -> Result<Self, Error> {
        let common = &config.common;
        let models_watch = common.models_watch();
        let registry =
            Registry::load(&common.models_dir)?.with_default(config.default_model.clone())?;
        let store = Store::connect_lazy(&common.store_config(), common.subjects.clone())?;
        let bus = common.connect_bus().await?;
        Ok(Parts {
            store,
            bus,
            registry,
            max_attempts: config.max_attempts,
            net_policy: common.net_policy.clone(),
            relay: common.relay_config(),
            uploads: config.uploads,
            access: config.access.clone(),
            limits: config.limits,
            idempotency_keep: config.idempotency_keep,
            models_watch: Some((models_watch, config.default_model.clone())),
        })
    }
}

/// Puts each reloaded registry in place, with the default model applied: a model added
/// to the directory is accepted from then on, without a restart. A registry that lacks
/// the default model is refused and the one in use kept.
async fn follow_models(
    watch: foodseg_runtime::ModelsWatch,
    registry: Arc<SharedRegistry>,
    default: Option<String>,
    stop: CancellationToken,
) {
    watch
        .run(stop, move |loaded| {
            match loaded.with_default(default.clone()) {
                Ok(loaded) => {
                    tracing::info!(ids = ?loaded.known_ids(), "models reloaded");
                    registry.replace(loaded);
                }
                Err(e) => tracing::error!(error = %error_chain(&e),
                    "the reloaded models directory lacks the default model; keeping the models in use"),
            }
            std::future::ready(())
        })
        .await;
}

/// Runs the api on `config.addr` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let parts = Parts::from_config(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.addr.to_string(),
            source,
        })?;
    serve(parts, listener, shutdown).await
}

/// Runs the api on an already bound listener (tests bind `127.0.0.1:0` and read the
/// address first) until `shutdown` is cancelled: applies migrations (retrying in the
/// background while Postgres is unreachable), sets up the JetStream streams when NATS
/// is up, starts the outbox relay and serves HTTP.
pub async fn serve(
    parts: Parts,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().ok();
    // Before the relay and the routes, so every series is described and registered
    // before anything records into it.
    crate::metrics::install(&parts.registry);
    let tasks = shutdown.child_token();
    let schema_ready = Arc::new(AtomicBool::new(false));
    // The api serves while it waits for Postgres (health, and 503 for what needs the
    // database); a migration that does not apply stops it.
    let migration = match foodseg_runtime::migrate(&parts.store, &tasks).await? {
        Schema::Applied => {
            schema_ready.store(true, Ordering::Release);
            None
        }
        Schema::Waiting(task) => Some(tokio::spawn({
            let (ready, shutdown) = (schema_ready.clone(), shutdown.clone());
            async move {
                let applied = task.await.unwrap_or(Ok(false));
                match applied {
                    Ok(applied) => ready.store(applied, Ordering::Release),
                    Err(_) => shutdown.cancel(),
                }
                applied
            }
        })),
    };
    if parts.bus.is_connected() {
        match tokio::time::timeout(Duration::from_secs(5), parts.bus.ensure_streams()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %error_chain(&e), "cannot set up streams yet; the relay retries")
            }
            Err(_) => tracing::warn!("setting up streams timed out; the relay retries"),
        }
    } else {
        tracing::warn!("NATS is not reachable yet; jobs are kept in the outbox until it is");
    }
    let relay = Relay::new(parts.store.clone(), parts.bus.clone(), parts.relay.clone());
    let registry = Arc::new(SharedRegistry::new(parts.registry));
    let mut background = Vec::new();
    if let Some((watch, default)) = parts.models_watch {
        background.push(tokio::spawn(follow_models(
            watch,
            registry.clone(),
            default,
            tasks.clone(),
        )));
    }
    let state = AppState {
        keys: Arc::new(auth::KeyRing::new(parts.store.clone())),
        v1_owner: Arc::new(auth::V1Owner::new(parts.access.v1_owner.clone())),
        limits: Arc::new(limits::Limits::new(&parts.limits)),
        access: parts.access,
        enqueuer: Enqueuer::start(parts.store.clone(), GroupConfig::default()),
        store: parts.store,
        bus: parts.bus,
        registry: registry.clone(),
        waker: relay.waker(),
        net_policy: parts.net_policy,
        max_attempts: parts.max_attempts,
        uploads: parts.uploads,
        idempotency_keep: parts.idempotency_keep,
        schema_ready,
    };
    background.push(tokio::spawn(relay.run(tasks.clone())));

    let acceptor = TcpAcceptor::try_from(listener).map_err(|source| Error::Bind {
        addr: addr.map(|a| a.to_string()).unwrap_or_default(),
        source,
    })?;
    let server = Server::new(acceptor).fuse_config(
        salvo::fuse::FuseConfig::default()
            .with_http1_header_timeout(HEADER_READ_TIMEOUT)
            .with_connection_idle_timeout(CONNECTION_IDLE_TIMEOUT)
            .with_request_body_timeout(BODY_CHUNK_TIMEOUT)
            .with_write_stall_timeout(WRITE_STALL_TIMEOUT),
    );
    let handle = server.handle();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        stopper.cancelled().await;
        handle.stop_graceful(GRACEFUL_STOP);
    });
    if let Some(addr) = addr {
        tracing::info!(%addr, "api listening");
    }
    let served = server.try_serve(service(state)).await;
    tasks.cancel();
    foodseg_runtime::join_tasks("api", background).await;
    if let Some(migration) = migration
        && let Ok(Err(e)) = migration.await
    {
        return Err(e.into());
    }
    served.map_err(Error::Serve)
}

/// Every route (the api's and the console's) with the state injected, in a service that
/// traces and measures every request (matched or not) and answers unmatched routes with
/// JSON.
pub fn service(state: AppState) -> Service {
    let router = Router::new()
        .hoop(request::Inject(state))
        .push(routes::router())
        .push(console::router());
    Service::new(router)
        .hoop(routes::trace_request)
        .catcher(salvo::catcher::Catcher::default().hoop(routes::json_errors))
}
