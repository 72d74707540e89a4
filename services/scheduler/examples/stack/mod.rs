//! The stack the end-to-end benchmarks run: a throwaway database and throwaway streams,
//! the api, a worker with the real model, a scheduler, the fixture photos served on
//! loopback and a webhook receiver that records when each job's webhook arrived — all in
//! this process, against the real Postgres and NATS.
// Each benchmark uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use foodseg_engine::{Bus, Store, Subjects};
use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A job's webhook as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub status: String,
    /// The job's `processing_time`, seconds.
    pub processing: f64,
}

/// When each job's webhook arrived.
#[derive(Default)]
pub struct Arrivals {
    seen: Mutex<HashMap<String, Arrival>>,
    notify: Notify,
}

impl Arrivals {
    /// How many webhooks arrived.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The webhook of `job_id`, if it arrived.
    pub fn get(&self, job_id: &str) -> Option<Arrival> {
        self.seen.lock().unwrap().get(job_id).cloned()
    }

    /// Waits for the webhook of `job_id`.
    pub async fn wait(&self, job_id: &str, timeout: Duration) -> anyhow::Result<Arrival> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if let Some(arrival) = self.get(job_id) {
                return Ok(arrival);
            }
            if Instant::now() > deadline {
                bail!("job {job_id}: no webhook within {timeout:?}");
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Waits until `n` webhooks arrived.
    pub async fn wait_count(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if self.count() >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} of {n} webhooks within {timeout:?}", self.count());
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }
}

struct Hook(Arc<Arrivals>);

#[async_trait]
impl Handler for Hook {
    async fn handle(&self, req: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let at = Instant::now();
        let body = req.payload().await.map(|b| b.to_vec()).unwrap_or_default();
        let doc = serde_json::from_slice::<String>(&body)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        let Some(doc) = doc else {
            res.status_code(StatusCode::BAD_REQUEST);
            return;
        };
        let id = doc["job_id"].as_str().unwrap_or_default().to_string();
        let status = doc["status"].as_str().unwrap_or_default().to_string();
        if status != "MFR.Job.SUCCESS" {
            eprintln!("job {id} ended {status}: {}", doc["message"]);
        }
        let processing = doc["processing_time"].as_f64().unwrap_or(f64::NAN);
        self.0.seen.lock().unwrap().insert(
            id,
            Arrival {
                at,
                status,
                processing,
            },
        );
        self.0.notify.notify_waiters();
        res.status_code(StatusCode::OK);
    }
}

/// The webhook receiver on loopback: it records when each job's webhook arrived.
pub struct Receiver {
    /// The URL to give as `webhook_url`.
    pub hook_url: String,
    pub arrivals: Arc<Arrivals>,
    /// Stops the receiver.
    pub handle: salvo::server::ServerHandle,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let arrivals = Arc::new(Arrivals::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hook_url = format!("http://{}/hook", listener.local_addr()?);
        let server = Server::new(TcpAcceptor::try_from(listener)?);
        let handle = server.handle();
        tokio::spawn(server.serve(Router::with_path("hook").post(Hook(arrivals.clone()))));
        Ok(Receiver {
            hook_url,
            arrivals,
            handle,
        })
    }
}

/// A throwaway database on `DATABASE_URL`'s server and throwaway streams; `run` gets its
/// URL, the NATS URL and the subjects, and both are removed after it, whatever it
/// returned.
pub async fn with_throwaway<F, Fut>(run: F) -> anyhow::Result<()>
where
    F: FnOnce(String, String, Subjects) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let base_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/foodseg".into());
    let nats_url = foodseg_testkit::nats_url();
    let db_name = format!("foodseg_bench_{}", Uuid::new_v4().simple());
    let admin_options: PgConnectOptions =
        base_url.parse::<PgConnectOptions>()?.database("postgres");
    let mut admin = admin_options
        .connect()
        .await
        .context("connecting to Postgres")?;
    // Dynamic SQL: a database name cannot be a bind parameter.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&mut admin)
        .await?;
    let mut db_url = url::Url::parse(&base_url)?;
    db_url.set_path(&db_name);
    let subjects = Subjects::with_prefix(&format!(
        "bench{}",
        &Uuid::new_v4().simple().to_string()[..8]
    ));

    let result = run(db_url.to_string(), nats_url.clone(), subjects.clone()).await;

    let bus = Bus::connect(&nats_url, subjects.clone()).await?;
    for stream in [&subjects.jobs_stream, &subjects.events_stream] {
        let _ = bus.jetstream().delete_stream(stream).await;
    }
    // Dynamic SQL: a database name cannot be a bind parameter.
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE {db_name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    result
}

/// Runs `run` on a stack (a throwaway database and streams, the worker at
/// `concurrency`), stopping the stack after it whatever `run` returned.
pub async fn on_stack(
    concurrency: usize,
    run: impl AsyncFnOnce(&Stack) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    on_stack_with(
        &[("FOODSEG_WORKER_CONCURRENCY", concurrency.to_string())],
        run,
    )
    .await
}

/// Like [`on_stack`], with the services' settings `vars` (as [`Stack::start`] takes them).
pub async fn on_stack_with(
    vars: &[(&'static str, String)],
    run: impl AsyncFnOnce(&Stack) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    with_throwaway(|db, nats, subjects| async move {
        let stack = Stack::start(&db, &nats, &subjects, vars).await?;
        let result = run(&stack).await;
        stack.stop().await?;
        result
    })
    .await
}

/// The running stack.
pub struct Stack {
    pub pool: PgPool,
    pub api: foodseg_api::local::LocalApi,
    pub images: foodseg_testkit::FileServer,
    pub hook_url: String,
    pub arrivals: Arc<Arrivals>,
    shutdown: CancellationToken,
    worker: JoinHandle<Result<(), foodseg_worker::WorkerError>>,
    scheduler: JoinHandle<Result<(), foodseg_scheduler::Error>>,
    stop_hook: salvo::server::ServerHandle,
}

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Stack {
    /// Starts everything on the database and streams; `vars` add to (or override) the
    /// services' settings (e.g. `FOODSEG_WORKER_CONCURRENCY`).
    pub async fn start(
        database_url: &str,
        nats_url: &str,
        subjects: &Subjects,
        vars: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let root = root();
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .connect(database_url)
            .await?;
        let store = Store::from_pool(pool.clone(), subjects.clone());
        store.migrate().await?;
        let images = foodseg_testkit::FileServer::serve_dir(fixtures(&root)).await?;
        let Receiver {
            hook_url,
            arrivals,
            handle: stop_hook,
        } = Receiver::start().await?;

        let mut settings: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", database_url.to_string()),
            ("NATS_URL", nats_url.to_string()),
            ("FOODSEG_NATS_PREFIX", subjects.prefix.clone()),
            (
                "FOODSEG_MODELS_DIR",
                root.join("models").display().to_string(),
            ),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8".into()),
            ("FOODSEG_WORKER_ADDR", "off".into()),
            ("FOODSEG_SCHEDULER_ADDR", "off".into()),
        ]);
        settings.extend(vars.iter().cloned());
        let env = foodseg_runtime::Env::from_pairs(settings);
        let mut parts = foodseg_api::local::api_parts(
            pool.clone(),
            subjects.clone(),
            nats_url,
            &root.join("models"),
        )
        .await?;
        // The load comes from one loopback address: the per-caller abuse limit would
        // measure itself.
        parts.limits.enqueue = None;
        parts.relay = foodseg_runtime::Common::load(&env, Duration::from_secs(5))?.relay_config();
        let api = foodseg_api::local::start_api_with(parts).await?;
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(foodseg_worker::run(
            foodseg_worker::Config::load(&env)?,
            shutdown.clone(),
        ));
        let parts = foodseg_scheduler::Parts {
            store,
            bus: Bus::connect(nats_url, subjects.clone()).await?,
        };
        let scheduler = tokio::spawn(foodseg_scheduler::serve(
            foodseg_scheduler::Config::load(&env)?,
            parts,
            None,
            shutdown.clone(),
        ));
        Ok(Stack {
            pool,
            api,
            images,
            hook_url,
            arrivals,
            shutdown,
            worker,
            scheduler,
            stop_hook,
        })
    }

    /// Stops the worker, the scheduler, the api and the receiver.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.worker.await??;
        self.scheduler.await??;
        self.api.stop().await?;
        self.stop_hook.stop_graceful(None);
        Ok(())
    }
}

fn fixtures(root: &Path) -> PathBuf {
    root.join("services/pipeline/tests/fixtures")
}

/// The `p` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `met` or `MISSED`, as every benchmark prints its targets.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
