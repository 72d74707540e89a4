//! End-to-end latency: N jobs through api → worker (real model, fixture image served on
//! loopback) → scheduler → a local webhook receiver, all in this process against the
//! real Postgres (a throwaway database) and NATS (throwaway streams).
//!
//! Jobs run closed-loop at the worker's concurrency, so none waits in a queue: the
//! enqueue-to-webhook latency minus the job's `processing_time` is the engine's own
//! overhead (HTTP enqueue, outbox relay, JetStream, claim, result commit, delivery).
//!
//! `cargo run --release -p foodseg-scheduler --example bench_e2e -- [--jobs N] [--concurrency C] [--shadow SHARE]`
//!
//! With `--shadow SHARE` the worker also runs that share of the jobs on the shipped model
//! as its own candidate (`FOODSEG_SHADOW`): the overhead shows whether shadow runs delay
//! anyone's result.

#[path = "stack/mod.rs"]
mod stack;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use stack::{Arrivals, Stack, on_stack_with, percentile, verdict};

const MAX_JOBS: usize = 1000;
const FIXTURE: &str = "fruits.jpg";

struct Args {
    jobs: usize,
    concurrency: usize,
    /// `FOODSEG_SHADOW` share of the worker, with the shipped model as its own candidate.
    shadow: Option<f64>,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        jobs: 50,
        concurrency: 2,
        shadow: None,
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
            "--shadow" => {
                let share: f64 = it.next().context("missing value")?.parse()?;
                if !(share > 0.0 && share <= 1.0) {
                    bail!("--shadow takes a share in (0, 1]");
                }
                out.shadow = Some(share);
            }
            other => {
                bail!("unknown argument {other:?} (use --jobs N, --concurrency C, --shadow SHARE)")
            }
        }
    }
    if out.jobs == 0 || out.jobs > MAX_JOBS {
        bail!("--jobs must be between 1 and {MAX_JOBS}");
    }
    out.concurrency = out.concurrency.clamp(1, 16);
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut vars = vec![("FOODSEG_WORKER_CONCURRENCY", args.concurrency.to_string())];
    let candidate_dir =
        std::env::temp_dir().join(format!("foodseg-bench-shadow-{}", std::process::id()));
    if let Some(share) = args.shadow {
        candidate_models(&candidate_dir)?;
        vars.push(("FOODSEG_MODELS_DIR", candidate_dir.display().to_string()));
        vars.push(("FOODSEG_SHADOW", format!("{CANDIDATE}:{share}")));
        // The candidate is only shadowed: the worker serves the shipped model alone.
        vars.push(("FOODSEG_WORKER_MODELS", "yolov5s-seg-coco".to_owned()));
    }
    let result = on_stack_with(&vars, async |stack| run(&args, stack).await).await;
    let _ = std::fs::remove_dir_all(&candidate_dir);
    result
}

/// The shadow candidate: the shipped model's file under another name.
const CANDIDATE: &str = "shadow-candidate";

/// A models directory with the shipped model and, beside it, the same ONNX file as the
/// model [`CANDIDATE`]: a shadow run then costs what a real one does.
fn candidate_models(dir: &std::path::Path) -> anyhow::Result<()> {
    let shipped = stack::root().join("models/yolov5s-seg-coco");
    std::fs::create_dir_all(dir.join(CANDIDATE))?;
    std::os::unix::fs::symlink(&shipped, dir.join("yolov5s-seg-coco"))?;
    std::os::unix::fs::symlink(
        shipped.join("model.onnx"),
        dir.join(CANDIDATE).join("model.onnx"),
    )?;
    // The manifest's first `name` and `aliases` are the model's (`[input]` has a `name` too).
    let manifest = std::fs::read_to_string(shipped.join("model.toml"))?
        .replacen(
            "name = \"yolov5s-seg-coco\"",
            &format!("name = {CANDIDATE:?}"),
            1,
        )
        .replacen("aliases = [\"124096\", \"yolov5s-seg\"]", "aliases = []", 1);
    std::fs::write(dir.join(CANDIDATE).join("model.toml"), manifest)?;
    Ok(())
}

async fn run(args: &Args, stack: &Stack) -> anyhow::Result<()> {
    let pool = &stack.pool;
    let ctx = Arc::new(Client {
        http: foodseg_http::client()?,
        enqueue_url: stack.api.url("/enqueue"),
        image_url: stack.images.url(FIXTURE),
        hook_url: stack.hook_url.clone(),
        arrivals: stack.arrivals.clone(),
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
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.claim, r.send, r.latency_ms))
    .collect();

    let mut latency: Vec<f64> = samples.iter().map(|(l, _)| l * 1000.0).collect();
    let mut processing: Vec<f64> = samples.iter().map(|(_, p)| p * 1000.0).collect();
    let mut overhead: Vec<f64> = samples.iter().map(|(l, p)| (l - p) * 1000.0).collect();
    for v in [&mut latency, &mut processing, &mut overhead] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "bench-e2e: {} jobs ({FIXTURE}, default model, CPU), concurrency {}{}",
        samples.len(),
        args.concurrency,
        args.shadow
            .map(|s| format!(", shadow share {s} (the model's file as the candidate)"))
            .unwrap_or_default()
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
    if let Some(share) = args.shadow {
        shadow_report(stack, measured_from, share).await?;
    }
    Ok(())
}

/// How many of the measured jobs the worker had shadowed by the time the last one's
/// webhook came, how long the rest took (the shadow runs get the CPU the jobs leave idle),
/// and the comparison the operators read (`GET /shadow`).
async fn shadow_report(
    stack: &Stack,
    since: chrono::DateTime<chrono::Utc>,
    share: f64,
) -> anyhow::Result<()> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM jobs WHERE created_at >= $1"#,
        since
    )
    .fetch_all(&stack.pool)
    .await?;
    let expected = ids
        .iter()
        .filter(|id| {
            foodseg_worker::shadow::selected(foodseg_engine::JobId::from_uuid(**id), share)
        })
        .count() as i64;
    let compared = async || {
        stack
            .api
            .store
            .shadow_comparison("yolov5s-seg-coco", CANDIDATE, since)
            .await
    };
    let during = compared().await?.jobs;
    let began = Instant::now();
    let all = foodseg_testkit::wait_until(Duration::from_secs(120), || async {
        let comparison = compared().await.ok()?;
        (comparison.jobs >= expected).then_some(comparison)
    })
    .await?;
    println!(
        "  shadow runs: {} of the {expected} jobs selected ({during} done while the jobs ran, \
         the rest {:.1} s after); candidate p50 {:.0} ms per image, agreement {:.2}",
        all.jobs,
        began.elapsed().as_secs_f64(),
        all.candidate_seconds.p50.unwrap_or_default() * 1000.0,
        all.overall.agreement.unwrap_or_default(),
    );
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
        let arrival = self.arrivals.wait(&id, Duration::from_secs(120)).await?;
        Ok((
            arrival.at.duration_since(start).as_secs_f64(),
            arrival.processing,
        ))
    }
}
