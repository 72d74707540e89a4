//! A Postgres outage longer than a lease costs a job nothing: the worker keeps its result
//! and writes it when Postgres is back, and the scheduler's sweeper does not re-drive the
//! lapsed lease in between — even for a job with a single attempt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use foodseg_engine::JobStatus;
use foodseg_engine::store::REDRIVE_DETAIL;
use foodseg_testkit::{PostgresServer, wait_until};
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::common::Env;
use crate::common::server::ImageServer;

/// The workers' lease (and the scheduler's re-drive grace) in this test.
const LEASE_SECS: u64 = 5;
/// How long Postgres stays down: several leases.
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_result_finished_while_postgres_is_down_is_written_when_it_returns() -> anyhow::Result<()>
{
    let mut pg = PostgresServer::start().await?;
    let url = pg.url("foodseg");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&url)
        .await?;
    foodseg_engine::store::MIGRATOR.run(&pool).await?;
    let env = Env::on(pool, url.clone(), false).await?;
    let server = ImageServer::start(0).await;

    let scheduler_stop = CancellationToken::new();
    let scheduler = tokio::spawn(foodseg_scheduler::run(
        scheduler_config(&env, &url),
        scheduler_stop.clone(),
    ));
    let worker = env.start_worker(env.config("w-outage", LEASE_SECS as f64));

    let job = env.enqueue(&server.url("/gated/fruits.jpg"), 1).await?;
    wait_until(Duration::from_secs(60), || async {
        server.gate_hits.load(Ordering::SeqCst) > 0
    })
    .await
    .context("the worker never fetched the image")?;

    // The job is claimed and its image on the way: Postgres goes away, the worker runs
    // the inference and finds nobody to write to, and stays away for several leases.
    pg.halt().await?;
    server.open_gate();
    let down = tokio::time::Instant::now();
    tokio::time::sleep(OUTAGE).await; // the fault itself is timed, not a sequencing wait
    pg.resume().await?;
    assert!(down.elapsed() >= OUTAGE);

    let done = env.wait_finished(job.id, Duration::from_secs(120)).await?;
    assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);
    assert_eq!(done.attempt.get(), 1, "the outage spent no attempt");
    assert_eq!(env.events_to(job.id, JobStatus::Succeeded).await?, 1);
    let events = env.store.events(job.id).await?;
    assert!(
        events
            .iter()
            .all(|e| e.detail.as_deref() != Some(REDRIVE_DETAIL)),
        "the lapsed lease was not re-driven: {events:?}"
    );
    let items = done.response.context("a result")?;
    assert!(
        items.to_string().contains("orange"),
        "the fruits are found: {items}"
    );

    worker.stop().await?;
    scheduler_stop.cancel();
    scheduler.await??;
    env.cleanup().await;
    Ok(())
}

fn scheduler_config(env: &Env, database_url: &str) -> foodseg_scheduler::Config {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let nats = foodseg_testkit::nats_url();
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", database_url.to_string()),
        ("NATS_URL", nats),
        ("FOODSEG_NATS_PREFIX", env.subjects.prefix.clone()),
        ("FOODSEG_MODELS_DIR", models.display().to_string()),
        ("FOODSEG_SCHEDULER_ADDR", "off".into()),
        ("FOODSEG_SWEEP_INTERVAL", "200ms".into()),
        ("FOODSEG_SCHEDULER_POLL", "200ms".into()),
        ("FOODSEG_WORKER_LEASE_SECS", LEASE_SECS.to_string()),
        ("FOODSEG_DB_MAX_CONNECTIONS", "4".into()),
    ]);
    foodseg_scheduler::Config::load(&foodseg_runtime::Env::from_pairs(vars))
        .expect("test configuration is valid")
}

/// A worker started while Postgres is down does not fail: it answers its liveness probe,
/// reports not ready, and once Postgres is up applies the migrations and runs jobs.
#[tokio::test]
async fn a_worker_started_before_postgres_waits_for_it() -> anyhow::Result<()> {
    let mut pg = PostgresServer::start().await?;
    let url = pg.url("foodseg");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&url)?;
    pg.halt().await?;
    let env = Env::on(pool, url.clone(), true).await?;
    let mut config = env.config("w-early", LEASE_SECS as f64);
    let ops = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    config.http_addr = Some(ops);
    let worker = env.start_worker(config);

    let http = foodseg_http::client()?;
    let probe = |path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://{ops}{path}"))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    wait_until(Duration::from_secs(60), || async {
        (probe("/health/live").await == Some(200)).then_some(())
    })
    .await
    .context("the worker's liveness probe never answered")?;
    assert_eq!(
        probe("/health/ready").await,
        Some(503),
        "not ready without Postgres"
    );
    assert!(
        !worker.task.is_finished(),
        "the worker waits rather than failing"
    );

    pg.resume().await?;
    wait_until(Duration::from_secs(60), || async {
        (probe("/health/ready").await == Some(200)).then_some(())
    })
    .await
    .context("the worker never became ready once Postgres was up")?;
    let server = ImageServer::start(0).await;
    let job = env.enqueue(&server.url("/img/fruits.jpg"), 1).await?;
    let done = env.wait_finished(job.id, Duration::from_secs(120)).await?;
    assert_eq!(done.status, JobStatus::Succeeded, "{}", done.message);

    worker.stop().await?;
    env.cleanup().await;
    Ok(())
}
