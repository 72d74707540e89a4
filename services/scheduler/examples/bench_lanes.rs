//! Backfills that never delay a person, measured as clients see it (HTTP enqueue to
//! webhook) on the real model, api → worker → scheduler → a local webhook receiver:
//!
//! 1. **A person behind a backfill.** Two keys queue `--bulk` bulk jobs between them
//!    through `POST /v2/jobs`; then an interactive job goes through `POST /enqueue` every
//!    `--every` seconds (`--interactive` of them). Each interactive job's wait (enqueue →
//!    webhook minus its own processing time) is printed beside what first-in-first-out
//!    would have made it wait: the bulk jobs queued ahead of it times their mean
//!    processing time over the worker's concurrency.
//! 2. **Two keys, one backfill each.** Each key sends `--fair` bulk jobs (the first key
//!    first); their last jobs should finish within 10 % of the run of each other.
//!
//! `cargo run --release -p foodseg-scheduler --example bench_lanes -- [--bulk 300]
//! [--interactive 10] [--every 2] [--fair 500] [--concurrency 2]`

#[path = "stack/mod.rs"]
mod stack;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use foodseg_engine::Scope;
use serde_json::{Value, json};
use stack::{Stack, on_stack, percentile, verdict};

const FIXTURE: &str = "fruits.jpg";
/// The longest an interactive job may wait beyond its own processing time.
const TARGET_WAIT_S: f64 = 5.0;

struct Args {
    bulk: usize,
    interactive: usize,
    every: f64,
    fair: usize,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        bulk: 300,
        interactive: 10,
        every: 2.0,
        fair: 500,
        concurrency: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bulk" => out.bulk = value.parse()?,
            "--interactive" => out.interactive = value.parse()?,
            "--every" => out.every = value.parse()?,
            "--fair" => out.fair = value.parse()?,
            "--concurrency" => out.concurrency = value.parse()?,
            other => bail!("unknown flag {other}; see the example's header"),
        }
    }
    anyhow::ensure!(
        out.interactive > 0 && out.every > 0.0,
        "values must be positive"
    );
    out.concurrency = out.concurrency.clamp(1, 16);
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    on_stack(args.concurrency, async |stack| run(&args, stack).await).await
}

/// Sends `n` bulk jobs for `token` in batches of up to 1,000; returns their job ids.
async fn backfill(
    http: &reqwest::Client,
    stack: &Stack,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let image_url = stack.images.url(FIXTURE);
    for start in (0..n).step_by(1000) {
        let jobs: Vec<Value> = (start..n.min(start + 1000))
            .map(|_| {
                json!({
                    "image_url": image_url,
                    "webhook_url": stack.hook_url,
                })
            })
            .collect();
        let res = http
            .post(stack.api.url("/v2/jobs"))
            .bearer_auth(token)
            .json(&json!({ "jobs": jobs, "priority": "bulk" }))
            .send()
            .await?;
        anyhow::ensure!(
            res.status().is_success(),
            "batch refused: {}",
            res.text().await?
        );
        let answer: Value = res.json().await?;
        for doc in answer["jobs"].as_array().context("no jobs")? {
            ids.push(doc["job_id"].as_str().context("no job_id")?.to_string());
        }
    }
    Ok(ids)
}

/// Enqueues one interactive job as MFR does; returns its id and when it was sent.
async fn interactive(http: &reqwest::Client, stack: &Stack) -> anyhow::Result<(String, Instant)> {
    let body = json!({ "image_url": stack.images.url(FIXTURE), "webhook_url": stack.hook_url });
    let sent = Instant::now();
    let res = http
        .post(stack.api.url("/enqueue"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await?;
    let doc: Value = res.json().await?;
    Ok((
        doc["job_id"].as_str().context("no job_id")?.to_string(),
        sent,
    ))
}

async fn bulk_queued(stack: &Stack) -> anyhow::Result<i64> {
    // Dynamic SQL: a bench's count, not a service query.
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE priority = 'bulk' AND status IN ('queued', 'running')",
    )
    .fetch_one(&stack.pool)
    .await?)
}

async fn run(args: &Args, stack: &Stack) -> anyhow::Result<()> {
    let http = foodseg_http::client()?;
    let a = foodseg_api::local::api_key(&stack.api.store, "backfill-a", &[Scope::Submit]).await?;
    let b = foodseg_api::local::api_key(&stack.api.store, "backfill-b", &[Scope::Submit]).await?;
    eprintln!("warming up…");
    for _ in 0..args.concurrency {
        let (id, _) = interactive(&http, stack).await?;
        stack.arrivals.wait(&id, Duration::from_secs(120)).await?;
    }
    let warm = stack.arrivals.count();

    // 1. A person behind a backfill.
    let half = args.bulk / 2;
    let mut bulk = backfill(&http, stack, &a, half).await?;
    bulk.extend(backfill(&http, stack, &b, args.bulk - half).await?);
    eprintln!(
        "{} bulk jobs queued; an interactive job every {} s…",
        bulk.len(),
        args.every
    );
    let mut people = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.every));
    for _ in 0..args.interactive {
        tick.tick().await;
        let ahead = bulk_queued(stack).await?;
        let (id, sent) = interactive(&http, stack).await?;
        people.push((id, sent, ahead));
    }
    let timeout = Duration::from_secs(60 + 2 * args.bulk as u64);
    stack
        .arrivals
        .wait_count(warm + bulk.len() + people.len(), timeout)
        .await?;
    let succeeded = |ids: &[String]| {
        ids.iter()
            .filter(|id| {
                stack
                    .arrivals
                    .get(id)
                    .is_some_and(|a| a.status == "MFR.Job.SUCCESS")
            })
            .count()
    };
    let mut processing: Vec<f64> = bulk
        .iter()
        .filter_map(|id| stack.arrivals.get(id).map(|a| a.processing))
        .collect();
    processing.sort_by(f64::total_cmp);
    let mean_bulk = processing.iter().sum::<f64>() / processing.len().max(1) as f64;
    println!(
        "bench-lanes: {} bulk jobs from two keys, then {} interactive jobs every {} s \
         ({FIXTURE}, default model, CPU, worker concurrency {})",
        bulk.len(),
        people.len(),
        args.every,
        args.concurrency
    );
    println!("  job  bulk ahead  enqueue→webhook s  processing s  wait s  FIFO wait s");
    let mut waits = Vec::new();
    for (n, (id, sent, ahead)) in people.iter().enumerate() {
        let arrival = stack.arrivals.get(id).context("no webhook")?;
        let latency = arrival.at.duration_since(*sent).as_secs_f64();
        let wait = latency - arrival.processing;
        let fifo = *ahead as f64 * mean_bulk / args.concurrency as f64;
        println!(
            "  {n:>3}  {ahead:>10}  {latency:>17.2}  {:>12.2}  {wait:>6.2}  {fifo:>11.1}",
            arrival.processing
        );
        waits.push(wait);
    }
    waits.sort_by(f64::total_cmp);
    let (median, max) = (percentile(&waits, 0.5), waits[waits.len() - 1]);
    println!("  interactive wait beyond processing: median {median:.2} s, max {max:.2} s");
    println!(
        "  target: every interactive job waits at most {TARGET_WAIT_S} s beyond its processing: \
         {max:.2} s, {}",
        verdict(max <= TARGET_WAIT_S)
    );
    let done = succeeded(&bulk);
    println!(
        "  target: every bulk job finishes: {done} of {}, {}",
        bulk.len(),
        verdict(done == bulk.len())
    );

    // 2. Two keys, one backfill each.
    if args.fair > 0 {
        let before = stack.arrivals.count();
        let began = Instant::now();
        let first = backfill(&http, stack, &a, args.fair).await?;
        let second = backfill(&http, stack, &b, args.fair).await?;
        stack
            .arrivals
            .wait_count(
                before + 2 * args.fair,
                Duration::from_secs(60 + 2 * args.fair as u64),
            )
            .await?;
        let last = |ids: &[String]| {
            ids.iter()
                .filter_map(|id| stack.arrivals.get(id))
                .map(|a| a.at.duration_since(began).as_secs_f64())
                .fold(0.0, f64::max)
        };
        let (last_a, last_b) = (last(&first), last(&second));
        let run = last_a.max(last_b);
        let gap = (last_a - last_b).abs() / run;
        println!(
            "bench-lanes fairness: two keys with {} bulk jobs each, the first key's sent first",
            args.fair
        );
        println!("  last job of the first key  {last_a:8.1} s");
        println!("  last job of the second key {last_b:8.1} s");
        println!(
            "  target: last jobs within 10 % of the run: {:.1} %, {}",
            gap * 100.0,
            verdict(gap <= 0.10)
        );
        let done = succeeded(&first) + succeeded(&second);
        println!(
            "  target: every job finishes: {done} of {}, {}",
            2 * args.fair,
            verdict(done == 2 * args.fair)
        );
    }
    Ok(())
}
