//! End-to-end latency: N jobs through api → worker (real model, fixture image served on
//! loopback) → scheduler → a local webhook receiver, all in this process against the
//! real Postgres (a throwaway database) and NATS (throwaway streams).
//!
//! Jobs run closed-loop at the worker's concurrency, so none waits in a queue: the
//! enqueue-to-webhook latency minus the job's `processing_time` is the engine's own
//! overhead (HTTP enqueue, outbox relay, JetStream, claim, result commit, delivery).
//!
//! `cargo run --release -p foodseg-scheduler --example bench_e2e -- [--jobs N] [--concurrency C]`

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use foodseg_engine::{Bus, Store, Subjects};
use salvo::conn::tcp::TcpAcceptor;
use salvo::prelude::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const MAX_JOBS: usize = 1000;
const FIXTURE: &str = "fruits.jpg";

/// When each job's webhook arrived, with the processing time it reported.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<HashMap<String, (Instant, f64)>>,
    notify: Notify,
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
        let processing = doc["processing_time"].as_f64().unwrap_or(f64::NAN);
        if doc["status"] != "MFR.Job.SUCCESS" {
            eprintln!("job {id} ended {}: {}", doc["status"], doc["message"]);
        }
        self.0.seen.lock().unwrap().insert(id, (at, processing));
        self.0.notify.notify_waiters();
        res.status_code(StatusCode::OK);
    }
}

struct Args {
    jobs: usize,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        jobs: 50,
        concurrency: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = |it: &mut dyn Iterator<Item = String>| -> anyhow::Result<usize> {
            it.next()
                .context("missing value")?
                .parse()
                .context("not a number")
        };
        match a.as_str() {
            "--jobs" => out.jobs = value(&mut it)?,
            "--concurrency" => out.concurrency = value(&mut it)?,
            other => bail!("unknown argument {other:?} (use --jobs N, --concurrency C)"),
        }
    }
    if out.jobs == 0 || out.jobs > MAX_JOBS {
        bail!("--jobs must be between 1 and {MAX_JOBS}");
    }
    out.concurrency = out.concurrency.clamp(1, 16);
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let base_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/foodseg".into());
    let nats_url = foodseg_testkit::nats_url();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");

    // A throwaway database and throwaway streams.
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

    let result = run(&args, db_url.as_str(), &nats_url, &subjects, &root).await;

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

async fn run(
    args: &Args,
    database_url: &str,
    nats_url: &str,
    subjects: &Subjects,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .connect(database_url)
        .await?;
    let store = Store::from_pool(pool.clone(), subjects.clone());
    store.migrate().await?;

    let images =
        foodseg_testkit::FileServer::serve_dir(root.join("services/pipeline/tests/fixtures"))
            .await?;
    let arrivals = Arc::new(Arrivals::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    let server = Server::new(TcpAcceptor::try_from(listener)?);
    let stop_hook = server.handle();
    tokio::spawn(server.serve(Router::with_path("hook").post(Hook(arrivals.clone()))));

    let api = foodseg_api::local::start_api(pool.clone(), subjects.clone(), nats_url).await?;
    let shutdown = CancellationToken::new();
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", database_url.to_string()),
        ("NATS_URL", nats_url.to_string()),
        ("FOODSEG_NATS_PREFIX", subjects.prefix.clone()),
        (
            "FOODSEG_MODELS_DIR",
            root.join("models").display().to_string(),
        ),
        ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8".into()),
        ("FOODSEG_WORKER_ADDR", "off".into()),
        ("FOODSEG_WORKER_CONCURRENCY", args.concurrency.to_string()),
        ("FOODSEG_SCHEDULER_ADDR", "off".into()),
    ]);
    let env = foodseg_runtime::Env::from_pairs(vars);
    let worker_config = foodseg_worker::Config::load(&env)?;
    let worker = tokio::spawn(foodseg_worker::run(worker_config, shutdown.clone()));
    let scheduler_config = foodseg_scheduler::Config::load(&env)?;
    let parts = foodseg_scheduler::Parts {
        store: Store::from_pool(pool.clone(), subjects.clone()),
        bus: Bus::connect(nats_url, subjects.clone()).await?,
    };
    let scheduler = tokio::spawn(foodseg_scheduler::serve(
        scheduler_config,
        parts,
        None,
        shutdown.clone(),
    ));

    let ctx = Arc::new(Client {
        http: foodseg_http::client()?,
        enqueue_url: api.url("/enqueue"),
        image_url: images.url(FIXTURE),
        hook_url,
        arrivals,
    });

    // Warm-up: model sessions, connections, consumers.
    eprintln!("warming up…");
    for _ in 0..args.concurrency {
        ctx.one().await?;
    }

    eprintln!(
        "running {} jobs at concurrency {}…",
        args.jobs, args.concurrency
    );
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let measured_from = chrono::Utc::now();
    let mut clients = Vec::new();
    for _ in 0..args.concurrency {
        let (ctx, next, jobs) = (ctx.clone(), next.clone(), args.jobs);
        clients.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < jobs {
                out.push(ctx.one().await?);
            }
            anyhow::Ok(out)
        }));
    }
    let mut samples = Vec::new();
    for c in clients {
        samples.extend(c.await??);
    }
    let wall = began.elapsed().as_secs_f64();

    // Where the overhead goes, from the timestamps Postgres and the scheduler recorded.
    let stages: Vec<(f64, f64, f64)> = sqlx::query!(
        r#"SELECT EXTRACT(EPOCH FROM j.started_at - j.created_at)::float8 * 1000 AS "claim!",
                  EXTRACT(EPOCH FROM a.started_at - j.finished_at)::float8 * 1000 AS "send!",
                  a.latency_ms
           FROM jobs j JOIN deliveries d ON d.job_id = j.id
           JOIN delivery_attempts a ON a.delivery_id = d.id AND a.attempt = 1
           WHERE j.status = 'succeeded' AND j.created_at >= $1"#,
        measured_from
    )
    .fetch_all(&pool)
    .await?
    .into_iter()
    .map(|r| (r.claim, r.send, r.latency_ms))
    .collect();

    shutdown.cancel();
    let _ = worker.await?;
    scheduler.await??;
    api.stop().await?;
    stop_hook.stop_graceful(None);

    let mut latency: Vec<f64> = samples.iter().map(|(l, _)| l * 1000.0).collect();
    let mut processing: Vec<f64> = samples.iter().map(|(_, p)| p * 1000.0).collect();
    let mut overhead: Vec<f64> = samples.iter().map(|(l, p)| (l - p) * 1000.0).collect();
    for v in [&mut latency, &mut processing, &mut overhead] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "bench-e2e: {} jobs ({FIXTURE}, default model, CPU), concurrency {}",
        samples.len(),
        args.concurrency
    );
    println!(
        "  throughput            {:8.2} jobs/s",
        samples.len() as f64 / wall
    );
    println!("                          p50 ms    p99 ms");
    for (name, v) in [
        ("enqueue → webhook", &latency),
        ("worker processing_time", &processing),
        ("engine overhead", &overhead),
    ] {
        println!(
            "  {name:<22} {:8.1}  {:8.1}",
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let (p50, p99) = (percentile(&overhead, 0.5), percentile(&overhead, 0.99));
    println!(
        "  target: overhead p50 ≤ 25 ms: {p50:.1} ms, {}",
        verdict(p50 <= 25.0)
    );
    println!(
        "  target: overhead p99 ≤ 100 ms: {p99:.1} ms, {}",
        verdict(p99 <= 100.0)
    );
    println!("  of which (from the timestamps Postgres and the scheduler recorded):");
    let column = |f: fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = stages.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    for (name, v) in [
        ("enqueue → claim", column(|s| s.0)),
        ("result → webhook sent", column(|s| s.1)),
        ("webhook request", column(|s| s.2)),
    ] {
        if !v.is_empty() {
            println!(
                "    {name:<20} {:8.1}  {:8.1}",
                percentile(&v, 0.5),
                percentile(&v, 0.99)
            );
        }
    }
    Ok(())
}

/// One closed-loop client.
struct Client {
    http: reqwest::Client,
    enqueue_url: String,
    image_url: String,
    hook_url: String,
    arrivals: Arc<Arrivals>,
}

impl Client {
    /// Enqueues one job (as MFR does) and waits for its webhook: (latency s, processing s).
    async fn one(&self) -> anyhow::Result<(f64, f64)> {
        let body = serde_json::json!({
            "image_url": self.image_url, "model_id": null, "webhook_url": self.hook_url
        });
        let start = Instant::now();
        let res = self
            .http
            .post(&self.enqueue_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await?;
        let doc: serde_json::Value = res.json().await?;
        let id = doc["job_id"].as_str().context("no job_id")?.to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let notified = self.arrivals.notify.notified();
            if let Some((at, processing)) = self.arrivals.seen.lock().unwrap().get(&id).copied() {
                return Ok((at.duration_since(start).as_secs_f64(), processing));
            }
            if Instant::now() > deadline {
                bail!("job {id}: no webhook within 120 s");
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }
}
