//! Enqueue benchmark: sustained `POST /enqueue` rate and latency over HTTP on loopback at
//! fixed concurrency, then backfill-sized batches through `POST /v2/jobs` (1,000 bulk jobs
//! each), beside the raw rate of single-row INSERT+COMMIT into the same Postgres at the
//! same concurrency, measured in the same run.
//!
//! `cargo run --release -p foodseg-api --example bench_enqueue -- [--clients 64]
//! [--seconds 20] [--requests N] [--pool 64] [--api-pool 16] [--batch-jobs 100000]
//! [--batch-clients 4]` (or `BENCH_CLIENTS`, `BENCH_SECONDS`, `BENCH_REQUESTS`,
//! `BENCH_POOL`, `BENCH_API_POOL`; `--batch-jobs 0` skips the batches). Uses a fresh database (created, then dropped) on
//! `DATABASE_URL`'s server and unique NATS subjects on `NATS_URL`. Every phase is bounded
//! by time and by request count.

use std::time::{Duration, Instant};

use anyhow::Context;
use foodseg_api::local::{api_parts, start_api_with};
use foodseg_testkit::{TestBus, repo_models_dir};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// The enqueue rate to reach, as a share of the raw INSERT+COMMIT rate of the same run.
const RATE_TARGET: f64 = 0.80;

#[derive(Debug, Clone)]
struct Args {
    clients: usize,
    seconds: u64,
    requests: Option<u64>,
    pool: u32,
    api_pool: u32,
    /// Jobs sent in batches of [`BATCH`] through `POST /v2/jobs`.
    batch_jobs: usize,
    /// Batches in flight at once.
    batch_clients: usize,
}

/// Jobs per batch: the most `POST /v2/jobs` takes.
const BATCH: usize = 1000;

fn args() -> anyhow::Result<Args> {
    let env = |k: &str| std::env::var(k).ok();
    let mut a = Args {
        clients: env("BENCH_CLIENTS")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(64),
        seconds: env("BENCH_SECONDS")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(20),
        requests: env("BENCH_REQUESTS").map(|v| v.parse()).transpose()?,
        pool: env("BENCH_POOL")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(64),
        api_pool: env("BENCH_API_POOL")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(16),
        batch_jobs: 100_000,
        batch_clients: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => a.clients = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--requests" => a.requests = Some(value()?.parse()?),
            "--pool" => a.pool = value()?.parse()?,
            "--api-pool" => a.api_pool = value()?.parse()?,
            "--batch-jobs" => a.batch_jobs = value()?.parse()?,
            "--batch-clients" => a.batch_clients = value()?.parse()?,
            other => anyhow::bail!("unknown flag {other}; see the example's header"),
        }
    }
    anyhow::ensure!(
        a.clients > 0 && a.seconds > 0 && a.pool > 0 && a.api_pool > 0 && a.batch_clients > 0,
        "values must be positive"
    );
    Ok(a)
}

/// Latencies of one phase and how long it took in all.
struct Phase {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
    /// Jobs each successful request wrote.
    jobs_per_request: usize,
}

impl Phase {
    /// Jobs (or rows) written per second.
    fn rate(&self) -> f64 {
        (self.latencies.len() * self.jobs_per_request) as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<26} {:>8} ok {:>4} err  {:>9.0} jobs/s   p50 {:>8.2} ms   p99 {:>8.2} ms",
            self.latencies.len(),
            self.errors,
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
        );
    }
}

/// Runs `clients` loops of `op` until the time or request budget is spent.
async fn drive<F, Fut>(args: &Args, op: F) -> Phase
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let budget = args.requests.unwrap_or(u64::MAX);
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let op = op.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < until {
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= budget {
                    break;
                }
                let t = Instant::now();
                if op(n).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Phase {
        latencies,
        errors,
        elapsed,
        jobs_per_request: 1,
    }
}

async fn bench_api(args: &Args, pool: PgPool, tb: &TestBus) -> anyhow::Result<Phase> {
    let mut parts = api_parts(pool, tb.subjects.clone(), &tb.url, &repo_models_dir()).await?;
    parts.relay.batch_size = 512;
    // Every request comes from one loopback address: the per-caller abuse limit would
    // measure itself, not the enqueue path.
    parts.limits.enqueue = None;
    let api = start_api_with(parts).await?;
    let client = foodseg_http::client_builder()?
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let url = api.url("/enqueue");
    // Warm up connections and the pool.
    for _ in 0..args.clients.min(16) {
        let _ = client
            .post(&url)
            .body(r#"{"image_url":"https://img.example.org/warm.jpg"}"#)
            .send()
            .await;
    }
    let phase = drive(args, move |n| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let body = format!(
                r#"{{"image_url":"https://img.example.org/{n}.jpg","model_id":"124096","webhook_url":"https://mfr.example.org/hook"}}"#
            );
            match client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
            {
                Ok(res) => res.status().is_success() && res.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    let pending = api.store.outbox_pending().await?;
    let ended = Instant::now();
    let drained = foodseg_testkit::wait_until(Duration::from_secs(30), || async {
        api.store.outbox_pending().await.ok() == Some(0)
    })
    .await;
    match drained {
        Ok(_) => println!(
            "outbox rows unpublished when the run ended: {pending}; none left {:.0} ms later",
            ended.elapsed().as_secs_f64() * 1e3
        ),
        Err(_) => println!(
            "outbox rows unpublished when the run ended: {pending}; still {} after 30 s",
            api.store.outbox_pending().await?
        ),
    }
    api.stop().await?;
    Ok(phase)
}

/// `batch_jobs` bulk jobs in batches of [`BATCH`] from `batch_clients` clients; checks
/// that every job was written.
async fn bench_batches(args: &Args, pool: PgPool, tb: &TestBus) -> anyhow::Result<Phase> {
    let mut parts = api_parts(
        pool.clone(),
        tb.subjects.clone(),
        &tb.url,
        &repo_models_dir(),
    )
    .await?;
    parts.limits.enqueue = None;
    let api = start_api_with(parts).await?;
    let token =
        foodseg_api::local::api_key(&api.store, "backfill", &[foodseg_engine::Scope::Submit])
            .await?;
    let before = jobs_in(&pool).await?;
    let client = foodseg_http::client()?;
    let url = api.url("/v2/jobs");
    let batches = args.batch_jobs.div_ceil(BATCH) as u64;
    let budget = Args {
        clients: args.batch_clients,
        requests: Some(batches),
        seconds: 3600,
        ..args.clone()
    };
    let mut phase = drive(&budget, move |n| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            let jobs: Vec<serde_json::Value> = (0..BATCH)
                .map(|i| {
                    serde_json::json!({
                        "image_url": format!("https://img.example.org/{n}/{i}.jpg"),
                        "webhook_url": "https://mfr.example.org/hook",
                    })
                })
                .collect();
            let body = serde_json::json!({ "jobs": jobs, "priority": "bulk" }).to_string();
            match client
                .post(&url)
                .bearer_auth(&token)
                .body(body)
                .send()
                .await
            {
                Ok(res) => res.status().is_success() && res.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    let written = jobs_in(&pool).await? - before;
    anyhow::ensure!(
        written == phase.latencies.len() as i64 * BATCH as i64,
        "{written} jobs written for {} batches",
        phase.latencies.len()
    );
    api.stop().await?;
    // The rate is in jobs: each request carried a batch.
    phase.jobs_per_request = BATCH;
    Ok(phase)
}

async fn jobs_in(pool: &PgPool) -> anyhow::Result<i64> {
    // Dynamic SQL: a bench's count, not a service query.
    Ok(sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(pool)
        .await?)
}

async fn bench_raw(args: &Args, pool: PgPool) -> anyhow::Result<Phase> {
    // Dynamic SQL: the baseline's table exists only in the bench's throwaway database,
    // not in the schema the checked queries are verified against.
    sqlx::query(
        "CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload text NOT NULL, \
         created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    Ok(drive(args, move |n| {
        let pool = pool.clone();
        async move {
            // Dynamic SQL: see the CREATE TABLE above.
            sqlx::query("INSERT INTO bench_raw (payload) VALUES ($1)")
                .bind(format!("https://img.example.org/{n}.jpg"))
                .execute(&pool)
                .await
                .is_ok()
        }
    })
    .await)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/foodseg".into());
    let admin_opts: PgConnectOptions = url.parse::<PgConnectOptions>()?.database("postgres");
    let db = format!("foodseg_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin_opts
        .connect()
        .await
        .context("connecting to Postgres")?;
    // Dynamic SQL: a database name cannot be a bind parameter.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await?;
    let tb = TestBus::new().await?;
    let result = run(&args, &admin_opts, &db, &tb).await;
    tb.cleanup().await;
    // Dynamic SQL: a database name cannot be a bind parameter.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    result
}

async fn run(args: &Args, admin: &PgConnectOptions, db: &str, tb: &TestBus) -> anyhow::Result<()> {
    let opts = admin.clone().database(db);
    let pool = PgPoolOptions::new()
        .max_connections(args.pool)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.clone())
        .await?;
    foodseg_engine::store::MIGRATOR.run(&pool).await?;
    println!(
        "bench_enqueue: {} clients, {} s per phase{}, raw pool {}, api pool {}",
        args.clients,
        args.seconds,
        args.requests
            .map(|n| format!(", at most {n} requests"))
            .unwrap_or_default(),
        args.pool,
        args.api_pool
    );
    let api_pool = PgPoolOptions::new()
        .max_connections(args.api_pool)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.clone())
        .await?;
    let api = bench_api(args, api_pool.clone(), tb).await?;
    let batches = if args.batch_jobs > 0 {
        Some(bench_batches(args, api_pool.clone(), tb).await?)
    } else {
        None
    };
    api_pool.close().await;
    let raw = bench_raw(args, pool.clone()).await?;
    pool.close().await;
    api.print("api POST /enqueue");
    if let Some(batches) = &batches {
        batches.print("api POST /v2/jobs (1,000)");
    }
    raw.print("raw INSERT+COMMIT");
    if let Some(batches) = &batches {
        println!(
            "batches: {} jobs in {:.1} s; {:.1}x the single-call rate",
            batches.latencies.len() * BATCH,
            batches.elapsed.as_secs_f64(),
            batches.rate() / api.rate()
        );
    }
    let ratio = api.rate() / raw.rate();
    let p99_ms = api.percentile(0.99).as_secs_f64() * 1e3;
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "target: api/raw rate >= {RATE_TARGET:.2}: {ratio:.2}, {}",
        verdict(ratio >= RATE_TARGET)
    );
    println!(
        "target: api p99 < 20 ms: {p99_ms:.2} ms, {}",
        verdict(p99_ms < 20.0)
    );
    Ok(())
}
