//! Test support: a per-test environment (own database, own NATS subjects), schedulers
//! started in-process, finished jobs made through the store, and a webhook receiver that
//! parses requests the way Rails does.
#![allow(dead_code)]

pub mod receiver;
pub mod stack;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use foodseg_engine::store::{ClaimOutcome, DeliveryView, NewJob};
use foodseg_engine::{Attempt, Bus, DeliveryStatus, Fence, Job, JobId, Store, Subjects};
use foodseg_scheduler::{Config, Parts};
pub use foodseg_testkit::wait_until;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a condition may take before a test fails: generous, never a timing assertion.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// One test's database and NATS subjects.
pub struct Env {
    pub pool: PgPool,
    pub store: Store,
    pub bus: Bus,
    pub subjects: Subjects,
}

impl Env {
    pub async fn new(pool: PgPool) -> anyhow::Result<Env> {
        let subjects = Subjects::with_prefix(&format!("t{}", Uuid::new_v4().simple()));
        let store = Store::from_pool(pool.clone(), subjects.clone());
        let bus = Bus::connect(&nats_url(), subjects.clone()).await?;
        bus.ensure_streams().await?;
        Ok(Env {
            pool,
            store,
            bus,
            subjects,
        })
    }

    /// A scheduler configuration for tests: loopback webhooks allowed, fast loops and a
    /// fast retry schedule, no HTTP listener.
    pub fn config(&self) -> Config {
        self.config_with(&[])
    }

    /// [`Env::config`] with these variables set as well (or instead).
    pub fn config_with(&self, more: &[(&str, &str)]) -> Config {
        let mut vars: HashMap<&str, &str> = [
            ("FOODSEG_SCHEDULER_ADDR", "off"),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8"),
            ("FOODSEG_WEBHOOK_RETRY_SCHEDULE", "20ms,20ms,20ms"),
            ("FOODSEG_WEBHOOK_TIMEOUT", "5s"),
            ("FOODSEG_SCHEDULER_POLL", "200ms"),
            ("FOODSEG_SWEEP_INTERVAL", "100ms"),
        ]
        .into_iter()
        .collect();
        vars.extend(more.iter().copied());
        let mut config =
            Config::load(&foodseg_runtime::Env::from_pairs(vars)).expect("test config");
        config.common.subjects = self.subjects.clone();
        // Lapsed leases are re-driven at once (no grace after an outage or start).
        config.redrive_grace = Duration::ZERO;
        config.scheduler_id = format!(
            "scheduler-test-{}",
            &Uuid::new_v4().simple().to_string()[..6]
        );
        config
    }

    /// Starts a scheduler with its own connection pool to this test's database (as a
    /// separate process would have).
    pub async fn start(&self, config: Config) -> anyhow::Result<Running> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with((*self.pool.connect_options()).clone())
            .await?;
        let parts = Parts {
            store: Store::from_pool(pool, self.subjects.clone()),
            bus: Bus::connect(&nats_url(), self.subjects.clone()).await?,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(foodseg_scheduler::serve(
            config,
            parts,
            None,
            shutdown.clone(),
        ));
        Ok(Running { shutdown, task })
    }

    /// A new QUEUED job.
    pub async fn enqueue(
        &self,
        webhook_url: Option<&str>,
        max_attempts: i32,
    ) -> anyhow::Result<Job> {
        let job = NewJob {
            id: JobId::new(),
            model_id: "124096".into(),
            model_name: "test-model".into(),
            image_url: "https://images.example/dish.jpeg".into(),
            webhook_url: webhook_url.map(str::to_string),
            max_attempts: Attempt::new(max_attempts),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            owner: None,
            priority: Default::default(),
            batch_id: None,
        };
        Ok(self.store.enqueue(&job, "test").await?)
    }

    /// A job that reached SUCCESS with one item, without a real worker.
    pub async fn succeeded_job(&self, webhook_url: &str) -> anyhow::Result<Job> {
        let job = self.enqueue(Some(webhook_url), 3).await?;
        let (_, fence) = self.claim(job.id).await?;
        let items = serde_json::json!([{
            "id": 0, "image_id": "dish.jpeg", "category_id": 53, "category_name": "apple",
            "score": 0.94, "bbox": [10, 20, 30, 40], "area": 900, "iscrowd": 0,
            "polygons": [[[10, 20], [40, 20], [40, 60]]], "size": [640, 480]
        }]);
        Ok(self.store.succeed(&fence, &items, "test-version").await?)
    }

    /// A job that reached ERROR, without a real worker.
    pub async fn failed_job(&self, webhook_url: &str, reason: &str) -> anyhow::Result<Job> {
        let job = self.enqueue(Some(webhook_url), 3).await?;
        let (_, fence) = self.claim(job.id).await?;
        Ok(self.store.fail(&fence, reason).await?)
    }

    /// Claims a queued job as a worker would (60 s lease).
    pub async fn claim(&self, id: JobId) -> anyhow::Result<(Job, Fence)> {
        self.claim_for(id, Duration::from_secs(60)).await
    }

    pub async fn claim_for(&self, id: JobId, lease: Duration) -> anyhow::Result<(Job, Fence)> {
        match self.store.claim(id, "test-worker", lease).await? {
            ClaimOutcome::Claimed { job, fence } => Ok((job, fence)),
            other => anyhow::bail!("cannot claim {id}: {other:?}"),
        }
    }

    /// The job's first delivery once it is no longer pending.
    pub async fn settled_delivery(&self, job_id: JobId) -> anyhow::Result<DeliveryView> {
        wait_until(DEADLINE, || async {
            let deliveries = self.store.deliveries(job_id).await?;
            anyhow::Ok(
                deliveries
                    .into_iter()
                    .next()
                    .filter(|d| d.delivery.status != DeliveryStatus::Pending),
            )
        })
        .await
        .context("the delivery to settle")
    }

    /// Deletes this test's streams.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        for name in [&self.subjects.jobs_stream, &self.subjects.events_stream] {
            self.bus
                .jetstream()
                .delete_stream(name)
                .await
                .with_context(|| format!("deleting stream {name}"))?;
        }
        Ok(())
    }
}

/// A scheduler running in this process.
pub struct Running {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), foodseg_scheduler::Error>>,
}

impl Running {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

fn nats_url() -> String {
    foodseg_testkit::nats_url()
}
