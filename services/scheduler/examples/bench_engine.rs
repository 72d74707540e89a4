//! The engine's capacity: the release api, worker and scheduler as their own processes on
//! the local Postgres (a throwaway database) and NATS (throwaway streams), serving a model
//! that finds nothing in microseconds, so that a job costs only the engine — enqueue,
//! dispatch, claim, result, webhook.
//!
//! Phases, in one run:
//! 1. raw single-row `INSERT` + `COMMIT` into the same Postgres from `--clients`
//!    connections (`--raw-seconds`): what one durable write per request costs here;
//! 2. peak: `--jobs` jobs from `--clients` keep-alive HTTP clients, each sending its next
//!    job as soon as the last was accepted; jobs/s from the first enqueue to the last
//!    webhook, enqueue/s, enqueue → webhook p50/p99;
//! 3. half of that peak, sent at a fixed rate for `--half-seconds`: enqueue → webhook
//!    p50/p99, timed from when each job was due to be sent;
//! 4. the raw INSERT rate again.
//!
//! Beside each phase, every process's share of one core over the phase, from
//! `/proc/<pid>/stat`: api, worker, scheduler, Postgres (every `postgres` process), NATS
//! (`nats-server`) and this benchmark (load, image server, webhook receiver); and what
//! Postgres wrote per job: write transactions (from the next transaction id) and bytes
//! of WAL.
//!
//! `just bench-engine [--jobs 6000] [--clients 32] [--half-seconds 10] [--raw-seconds 5]
//! [--worker-concurrency 64]` builds the services and the no-op model
//! (`scripts/yolov8_export.py synthetic --empty`), then runs
//! `cargo run --release -p foodseg-scheduler --example bench_engine -- --noop MODEL.onnx`.
//! The services are the release binaries beside this example's own (`target/release`).

#[path = "stack/mod.rs"]
mod stack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use foodseg_engine::Store;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use stack::{Arrivals, Receiver, percentile, verdict, with_throwaway};
use tokio::process::{Child, Command};

/// The no-op model's name in the registry.
const NOOP: &str = "engine-noop";
/// The photo every job fetches: small, so that decoding it costs next to nothing.
const IMAGE: &str = "tiny.jpg";
/// Targets on this machine (two cores shared by everything measured).
/// Each service's Postgres pool, and the raw INSERT baseline's connections: together
/// within Postgres' default `max_connections` (100, 3 of them reserved).
const SERVICE_CONNECTIONS: usize = 24;
const RAW_CONNECTIONS: usize = 16;
const TARGET_JOBS_PER_SECOND: f64 = 1000.0;
const TARGET_HALF_P99_MS: f64 = 100.0;

struct Args {
    noop: PathBuf,
    jobs: usize,
    clients: usize,
    half_seconds: f64,
    raw_seconds: f64,
    worker_concurrency: usize,
    /// The second phase's rate instead of half the peak, to compare builds at one load.
    paced_rate: Option<f64>,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        noop: PathBuf::new(),
        jobs: 6000,
        clients: 32,
        half_seconds: 10.0,
        raw_seconds: 5.0,
        worker_concurrency: 64,
        paced_rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--noop" => out.noop = value()?.into(),
            "--jobs" => out.jobs = value()?.parse().context("--jobs")?,
            "--clients" => out.clients = value()?.parse().context("--clients")?,
            "--half-seconds" => out.half_seconds = value()?.parse().context("--half-seconds")?,
            "--raw-seconds" => out.raw_seconds = value()?.parse().context("--raw-seconds")?,
            "--worker-concurrency" => {
                out.worker_concurrency = value()?.parse().context("--worker-concurrency")?
            }
            "--paced-rate" => out.paced_rate = Some(value()?.parse().context("--paced-rate")?),
            other => bail!(
                "unknown argument {other:?} (--noop MODEL.onnx, --jobs N, --clients C, \
                 --half-seconds S, --raw-seconds S, --worker-concurrency N, --paced-rate R)"
            ),
        }
    }
    ensure!(
        out.noop.is_file(),
        "--noop names the no-op model's ONNX file (`just bench-engine` makes it)"
    );
    ensure!(
        (1..=1_000_000).contains(&out.jobs) && (1..=1024).contains(&out.clients),
        "--jobs must be 1 to 1,000,000 and --clients 1 to 1,024"
    );
    ensure!(
        out.half_seconds > 0.0
            && out.raw_seconds > 0.0
            && out.worker_concurrency > 0
            && out.paced_rate.is_none_or(|r| r > 0.0 && r.is_finite()),
        "durations, the worker's concurrency and the paced rate must be positive"
    );
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .context("the example's directory")?
        .to_path_buf();
    for service in ["api", "worker", "scheduler"] {
        let bin = bin_dir.join(format!("foodseg-{service}"));
        ensure!(
            bin.is_file(),
            "{} is missing: `cargo build --release -p foodseg-api -p foodseg-worker \
             -p foodseg-scheduler` first (`just bench-engine` does)",
            bin.display()
        );
    }
    let work = std::env::temp_dir().join(format!("foodseg-bench-engine-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let (bin_dir, work_dir) = (&bin_dir, &work);
    let result = with_throwaway(|db, nats, subjects| async move {
        let work = work_dir;
        let pool = PgPoolOptions::new()
            .max_connections(RAW_CONNECTIONS as u32 + 4)
            .connect(&db)
            .await?;
        let store = Store::from_pool(pool.clone(), subjects.clone());
        store.migrate().await?;
        let models = models_dir(bin_dir, &args.noop, work).await?;
        let images = image_dir(work)?;
        let images = foodseg_testkit::FileServer::serve_dir(images).await?;
        let receiver = Receiver::start().await?;
        let services = Services::start(
            bin_dir,
            work,
            &[
                ("DATABASE_URL", db.clone()),
                ("NATS_URL", nats.clone()),
                ("FOODSEG_NATS_PREFIX", subjects.prefix.clone()),
                ("FOODSEG_MODELS_DIR", models.display().to_string()),
                ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8".into()),
                ("FOODSEG_WORKER_MODELS", NOOP.into()),
                (
                    "FOODSEG_WORKER_CONCURRENCY",
                    args.worker_concurrency.to_string(),
                ),
                ("FOODSEG_INTRA_THREADS", "1".into()),
                // Three pools and this benchmark's within Postgres' default 100 connections.
                (
                    "FOODSEG_DB_MAX_CONNECTIONS",
                    SERVICE_CONNECTIONS.to_string(),
                ),
                // The load comes from one loopback address, and every webhook goes to one
                // endpoint: the abuse limit and the endpoint's rate would measure
                // themselves.
                ("FOODSEG_LIMIT_ENQUEUE", "off".into()),
                ("FOODSEG_WEBHOOK_ENDPOINT_RATE", "1000000/1s".into()),
                ("FOODSEG_WEBHOOK_ENDPOINT_CONCURRENCY", "64".into()),
                ("FOODSEG_WEBHOOK_MAX_IN_FLIGHT", "64".into()),
            ],
        )
        .await?;
        let load = Load {
            clients: (0..args.clients)
                .map(|_| foodseg_http::client())
                .collect::<Result<_, _>>()?,
            enqueue_url: format!("{}/enqueue", services.api_url),
            body: serde_json::json!({
                "image_url": images.url(IMAGE), "model_id": NOOP, "webhook_url": receiver.hook_url
            })
            .to_string(),
            arrivals: receiver.arrivals.clone(),
        };
        let outcome = measure(&args, &pool, &store, &services, &load).await;
        services.stop().await;
        receiver.handle.stop_graceful(None);
        outcome
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn measure(
    args: &Args,
    pool: &PgPool,
    store: &Store,
    services: &Services,
    load: &Load,
) -> anyhow::Result<()> {
    eprintln!("warming up…");
    let warm = load.closed(args.clients * 4, args.clients).await?;
    load.webhooks(&warm).await?;

    println!(
        "bench-engine: the release api, worker (concurrency {}) and scheduler, {SERVICE_CONNECTIONS} \
         Postgres connections each; model {NOOP} (finds nothing); {} keep-alive clients",
        args.worker_concurrency, args.clients
    );
    let raw_before = raw_inserts(pool, RAW_CONNECTIONS, args.raw_seconds).await?;

    eprintln!("peak: {} jobs from {} clients…", args.jobs, args.clients);
    let cpu = Cpu::start(services)?;
    let writes = Writes::read(pool).await?;
    let began = Instant::now();
    let sent = load.closed(args.jobs, args.clients).await?;
    let enqueued = began.elapsed();
    let arrived = load.webhooks(&sent).await?;
    let cpu = cpu.finish()?;
    let writes = Writes::read(pool).await?.since(&writes, args.jobs);
    let last = arrived.iter().map(|a| a.1).max().context("no jobs")?;
    let wall = last.duration_since(began).as_secs_f64();
    let peak = args.jobs as f64 / wall;
    let latency = latencies(&arrived);
    println!(
        "  peak          {:7.0} jobs/s end to end ({} jobs, first enqueue → last webhook \
         {wall:.2} s), enqueue {:.0}/s",
        peak,
        args.jobs,
        args.jobs as f64 / enqueued.as_secs_f64()
    );
    println!(
        "                enqueue → webhook p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99)
    );
    println!("                CPU, % of one core: {cpu}");
    println!("                Postgres per job: {writes}");
    println!("                {}", stages(pool, &sent).await?);

    let rate = args.paced_rate.unwrap_or(peak / 2.0);
    let phase = if args.paced_rate.is_some() {
        "fixed rate"
    } else {
        "half of peak"
    };
    let count = ((rate * args.half_seconds).round() as usize).max(1);
    eprintln!("{phase}: {rate:.0} jobs/s for {:.0} s…", args.half_seconds);
    let cpu = Cpu::start(services)?;
    let writes = Writes::read(pool).await?;
    let sent = load.paced(count, args.clients, rate).await?;
    let arrived = load.webhooks(&sent).await?;
    let cpu = cpu.finish()?;
    let writes = Writes::read(pool).await?.since(&writes, count);
    let half = latencies(&arrived);
    println!(
        "  {phase:<12}  {rate:7.0} jobs/s sent ({count} jobs): enqueue → webhook p50 {:.1} \
         ms, p99 {:.1} ms (from when each job was due)",
        percentile(&half, 0.5),
        percentile(&half, 0.99)
    );
    println!("                CPU, % of one core: {cpu}");
    println!("                Postgres per job: {writes}");
    println!("                {}", stages(pool, &sent).await?);
    let raw_after = raw_inserts(pool, RAW_CONNECTIONS, args.raw_seconds).await?;

    let jobs = args.clients * 4 + args.jobs + count;
    let succeeded: i64 = store
        .state_counts()
        .await?
        .iter()
        .filter(|c| c.model == NOOP && c.status == foodseg_engine::JobStatus::Succeeded)
        .map(|c| c.jobs)
        .sum();
    ensure!(
        succeeded == jobs as i64,
        "{succeeded} of {jobs} jobs succeeded in Postgres"
    );
    println!("  every job succeeded in Postgres and its one webhook arrived: {jobs} of {jobs}");
    println!(
        "  raw INSERT+COMMIT, {RAW_CONNECTIONS} connections: {raw_before:.0}/s before, \
         {raw_after:.0}/s after (one durable write per request)"
    );
    println!(
        "  target: ≥ {TARGET_JOBS_PER_SECOND:.0} jobs/s end to end: {peak:.0}, {}",
        verdict(peak >= TARGET_JOBS_PER_SECOND)
    );
    let p99 = percentile(&half, 0.99);
    if args.paced_rate.is_none() {
        println!(
            "  target: p99 enqueue → webhook at half of peak < {TARGET_HALF_P99_MS:.0} ms: \
             {p99:.1} ms, {}",
            verdict(p99 < TARGET_HALF_P99_MS)
        );
    }
    Ok(())
}

/// Where the jobs of a phase spent their time, p50/p99 from their rows: enqueued →
/// dispatch message published by the relay → claimed by the worker → result committed →
/// webhook sent.
async fn stages(pool: &PgPool, sent: &[Sent]) -> anyhow::Result<String> {
    let ids: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
    let s = sqlx::query!(
        r#"WITH s AS (
             SELECT extract(epoch FROM o.published_at - j.created_at)::float8 * 1000 AS relayed,
                    extract(epoch FROM j.started_at - o.published_at)::float8 * 1000 AS queued,
                    extract(epoch FROM j.finished_at - j.started_at)::float8 * 1000 AS ran,
                    extract(epoch FROM a.started_at - j.finished_at)::float8 * 1000 AS sent
             FROM jobs j
             JOIN outbox o ON o.msg_id = j.id::text
             JOIN deliveries d ON d.job_id = j.id
             JOIN delivery_attempts a ON a.delivery_id = d.id AND a.attempt = 1
             WHERE j.id = ANY($1::text[]::uuid[]))
           SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY relayed) AS "p50!",
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY relayed) AS "p99!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY queued) AS "q50!",
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY queued) AS "q99!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY ran) AS "r50!",
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY ran) AS "r99!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY sent) AS "s50!",
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY sent) AS "s99!"
           FROM s"#,
        &ids as &[&str],
    )
    .fetch_one(pool)
    .await?;
    Ok(format!(
        "p50/p99 ms: enqueued → published {:.1}/{:.1}, → claimed {:.1}/{:.1}, \
         → result {:.1}/{:.1}, → webhook sent {:.1}/{:.1}",
        s.p50, s.p99, s.q50, s.q99, s.r50, s.r99, s.s50, s.s99
    ))
}

/// Enqueue → webhook of each job, milliseconds, sorted.
fn latencies(arrived: &[(Instant, Instant)]) -> Vec<f64> {
    let mut out: Vec<f64> = arrived
        .iter()
        .map(|(sent, at)| at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

/// The clients that send jobs, each on its own keep-alive connection.
struct Load {
    clients: Vec<reqwest::Client>,
    enqueue_url: String,
    body: String,
    arrivals: Arc<Arrivals>,
}

/// A job the api accepted: its id and when it was sent (or due).
type Sent = (String, Instant);

impl Load {
    /// Sends one job; `Ok(job id)`.
    async fn enqueue(&self, client: usize) -> anyhow::Result<String> {
        let res = self.clients[client]
            .post(&self.enqueue_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(self.body.clone())
            .send()
            .await?;
        let status = res.status();
        let doc: serde_json::Value = res.json().await?;
        ensure!(status.is_success(), "enqueue answered {status}: {doc}");
        Ok(doc["job_id"].as_str().context("no job_id")?.to_string())
    }

    /// `jobs` jobs from `clients` clients, each sending its next as soon as its last was
    /// accepted.
    async fn closed(&self, jobs: usize, clients: usize) -> anyhow::Result<Vec<Sent>> {
        let next = AtomicUsize::new(0);
        let per_client = futures::future::try_join_all((0..clients).map(|c| {
            let next = &next;
            async move {
                let mut out = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < jobs {
                    let sent = Instant::now();
                    out.push((self.enqueue(c).await?, sent));
                }
                anyhow::Ok(out)
            }
        }))
        .await?;
        Ok(per_client.into_iter().flatten().collect())
    }

    /// `jobs` jobs at `rate` a second, job `i` due `i / rate` seconds after the start,
    /// spread over `clients` clients; each is timed from when it was due.
    async fn paced(&self, jobs: usize, clients: usize, rate: f64) -> anyhow::Result<Vec<Sent>> {
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let per_client = futures::future::try_join_all((0..clients).map(|c| async move {
            let mut out = Vec::new();
            for i in (c..jobs).step_by(clients) {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
                out.push((self.enqueue(c).await?, due.into_std()));
            }
            anyhow::Ok(out)
        }))
        .await?;
        Ok(per_client.into_iter().flatten().collect())
    }

    /// Waits for the webhook of each of `sent` and answers (sent, arrived) of each; fails
    /// on a job that did not succeed.
    async fn webhooks(&self, sent: &[Sent]) -> anyhow::Result<Vec<(Instant, Instant)>> {
        let deadline = Duration::from_secs(60) + Duration::from_millis(sent.len() as u64 * 10);
        let mut out = Vec::with_capacity(sent.len());
        for (id, at) in sent {
            let arrival = self.arrivals.wait(id, deadline).await?;
            ensure!(
                arrival.status == "MFR.Job.SUCCESS",
                "job {id} ended {}",
                arrival.status
            );
            out.push((*at, arrival.at));
        }
        Ok(out)
    }
}

/// Single-row INSERT+COMMIT from `connections` connections for `seconds`: rows a second.
async fn raw_inserts(pool: &PgPool, connections: usize, seconds: f64) -> anyhow::Result<f64> {
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, payload jsonb)")
        .execute(pool)
        .await?;
    let payload = serde_json::json!({"image_url": "http://127.0.0.1/tiny.jpg", "model_id": NOOP});
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let began = Instant::now();
    let counts = futures::future::try_join_all((0..connections).map(|_| {
        let payload = &payload;
        async move {
            let mut n = 0u64;
            while Instant::now() < until {
                sqlx::query("INSERT INTO bench_raw (payload) VALUES ($1)")
                    .bind(payload)
                    .execute(pool)
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        }
    }))
    .await?;
    Ok(counts.iter().sum::<u64>() as f64 / began.elapsed().as_secs_f64())
}

/// A models directory with the shipped model and, beside it, the no-op model as
/// `foodseg-worker models import` writes it.
async fn models_dir(bin_dir: &Path, noop: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("models");
    std::fs::create_dir_all(&dir)?;
    std::os::unix::fs::symlink(
        stack::root().join("models/yolov5s-seg-coco"),
        dir.join("yolov5s-seg-coco"),
    )?;
    let out = Command::new(bin_dir.join("foodseg-worker"))
        .args(["models", "import"])
        .arg(noop)
        .args(["--name", NOOP, "--models-dir"])
        .arg(&dir)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "importing the no-op model failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(dir)
}

/// A directory with [`IMAGE`], a 32×32 JPEG.
fn image_dir(work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("images");
    std::fs::create_dir_all(&dir)?;
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 128])
    })
    .save(dir.join(IMAGE))?;
    Ok(dir)
}

/// The api, worker and scheduler processes.
struct Services {
    api_url: String,
    children: Vec<(&'static str, Child)>,
}

impl Services {
    /// Starts the three services with `vars` and waits until each reports ready.
    async fn start(
        bin_dir: &Path,
        work: &Path,
        vars: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        let mut ready = Vec::new();
        let mut api_url = String::new();
        for service in ["api", "worker", "scheduler"] {
            let addr = format!("127.0.0.1:{}", foodseg_testkit::free_port()?);
            let log = std::fs::File::create(work.join(format!("{service}.log")))?;
            let child = Command::new(bin_dir.join(format!("foodseg-{service}")))
                .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
                .env(format!("FOODSEG_{}_ADDR", service.to_uppercase()), &addr)
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting foodseg-{service}"))?;
            if service == "api" {
                api_url = format!("http://{addr}");
            }
            children.push((service, child));
            ready.push((service, format!("http://{addr}/health/ready")));
        }
        let services = Services { api_url, children };
        let http = foodseg_http::client()?;
        for (service, url) in ready {
            let waited = foodseg_testkit::wait_until(Duration::from_secs(120), || async {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
            if waited.is_err() {
                let log = std::fs::read_to_string(work.join(format!("{service}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                services.stop().await;
                bail!(
                    "foodseg-{service} was not ready within 120 s; its last lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(services)
    }

    fn pid(&self, service: &str) -> Option<i32> {
        self.children
            .iter()
            .find(|(name, _)| *name == service)
            .and_then(|(_, child)| child.id())
            .map(|pid| pid as i32)
    }

    async fn stop(mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill().await;
        }
    }
}

/// Postgres' write transactions (the next transaction id) and WAL position: both exact
/// at once, unlike the statistics views, and for the whole server (nothing else writes
/// to it during a run).
struct Writes {
    next_xid: i64,
    wal_bytes: i64,
}

impl Writes {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let row = sqlx::query!(
            r#"SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8 AS "next_xid!",
                      pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8 AS "wal_bytes!""#
        )
        .fetch_one(pool)
        .await?;
        Ok(Writes {
            next_xid: row.next_xid,
            wal_bytes: row.wal_bytes,
        })
    }

    /// Write transactions and WAL bytes per job of `jobs` since `before`, in one line.
    fn since(&self, before: &Writes, jobs: usize) -> String {
        let jobs = jobs.max(1) as f64;
        format!(
            "{:.1} write transactions, {:.1} KiB of WAL",
            (self.next_xid - before.next_xid) as f64 / jobs,
            (self.wal_bytes - before.wal_bytes) as f64 / jobs / 1024.0,
        )
    }
}

/// CPU time of each part of the run over a phase.
struct Cpu {
    groups: Vec<(&'static str, Vec<i32>)>,
    before: Vec<u64>,
    began: Instant,
}

impl Cpu {
    fn start(services: &Services) -> anyhow::Result<Self> {
        let mut by_name: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for process in procfs::process::all_processes()?.flatten() {
            if let Ok(stat) = process.stat() {
                match stat.comm.as_str() {
                    "postgres" => by_name.entry("postgres").or_default().push(stat.pid),
                    "nats-server" => by_name.entry("nats").or_default().push(stat.pid),
                    _ => {}
                }
            }
        }
        let mut groups = Vec::new();
        for service in ["api", "worker", "scheduler"] {
            groups.push((service, services.pid(service).into_iter().collect()));
        }
        groups.push(("postgres", by_name.remove("postgres").unwrap_or_default()));
        groups.push(("nats", by_name.remove("nats").unwrap_or_default()));
        groups.push(("bench", vec![std::process::id() as i32]));
        let before = groups.iter().map(|(_, pids)| ticks(pids)).collect();
        Ok(Cpu {
            groups,
            before,
            began: Instant::now(),
        })
    }

    /// Each group's share of one core since [`Cpu::start`], printed in one line.
    fn finish(self) -> anyhow::Result<String> {
        let wall = self.began.elapsed().as_secs_f64();
        let per_second = procfs::ticks_per_second() as f64;
        let mut parts = Vec::new();
        let mut total = 0.0;
        for ((name, pids), before) in self.groups.iter().zip(&self.before) {
            let share = ticks(pids).saturating_sub(*before) as f64 / per_second / wall * 100.0;
            total += share;
            parts.push(format!("{name} {share:.0}"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(format!(
            "{} (all {total:.0} of {})",
            parts.join(", "),
            cores * 100
        ))
    }
}

/// User + system ticks of `pids` (processes that have gone count nothing).
fn ticks(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| procfs::process::Process::new(*pid).ok()?.stat().ok())
        .map(|stat| stat.utime + stat.stime)
        .sum()
}
