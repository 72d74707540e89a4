//! Shared set-up of the worker's integration tests: a per-test database (from
//! `#[sqlx::test]`), per-test NATS streams, the outbox relay, the image server and workers.
#![allow(dead_code)]

pub mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use foodseg_engine::relay::{Relay, RelayConfig};
use foodseg_engine::store::{Job, NewJob};
use foodseg_engine::{
    Attempt, Backoff, Bus, JobId, JobStatus, Priority, RetryPolicy, Store, Subjects,
};
use foodseg_testkit::wait_until;
use foodseg_worker::Config;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const MODEL_NAME: &str = "yolov5s-seg-coco";
pub const MODEL_ID: &str = "124096";

/// One test's world: its database, its streams and a relay publishing the outbox.
pub struct Env {
    pub store: Store,
    pub bus: Bus,
    pub subjects: Subjects,
    pub database_url: String,
    /// Stops the outbox relay (the production one, as the api runs it).
    relay: CancellationToken,
}

impl Env {
    pub async fn new(pool: PgPool) -> anyhow::Result<Self> {
        Self::build(pool, true).await
    }

    /// Without an outbox relay (when the test runs the api, whose relay publishes).
    pub async fn without_relay(pool: PgPool) -> anyhow::Result<Self> {
        Self::build(pool, false).await
    }

    async fn build(pool: PgPool, with_relay: bool) -> anyhow::Result<Self> {
        let database_url = foodseg_testkit::database_url_of(&pool)?;
        Self::on(pool, database_url, with_relay).await
    }

    /// On a database of another server (a throwaway one the test stops and starts).
    pub async fn on(pool: PgPool, database_url: String, with_relay: bool) -> anyhow::Result<Self> {
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let subjects = Subjects::with_prefix(&prefix);
        let store = Store::from_pool(pool, subjects.clone());
        let nats = foodseg_testkit::nats_url();
        let bus = Bus::connect(&nats, subjects.clone()).await?;
        bus.ensure_streams().await?;
        let relay = CancellationToken::new();
        if with_relay {
            let config = RelayConfig {
                poll_interval: Duration::from_millis(20),
                ..RelayConfig::default()
            };
            tokio::spawn(Relay::new(store.clone(), bus.clone(), config).run(relay.clone()));
        }
        Ok(Env {
            store,
            bus,
            subjects,
            database_url,
            relay,
        })
    }

    /// A worker configuration for this test's database and streams.
    pub fn config(&self, worker_id: &str, lease_secs: f64) -> Config {
        let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
        let vars: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", self.database_url.clone()),
            ("NATS_URL", foodseg_testkit::nats_url()),
            ("FOODSEG_NATS_PREFIX", self.subjects.prefix.clone()),
            ("FOODSEG_MODELS_DIR", models.display().to_string()),
            ("FOODSEG_URL_ALLOW_CIDRS", "127.0.0.0/8".into()),
            ("FOODSEG_WORKER_ADDR", "off".into()),
            ("FOODSEG_WORKER_ID", worker_id.into()),
            ("FOODSEG_WORKER_LEASE_SECS", lease_secs.to_string()),
            ("FOODSEG_IMAGE_FETCH_TIMEOUT_SECS", "60".into()),
            ("FOODSEG_WORKER_DRAIN_SECS", "5".into()),
        ]);
        let mut config = Config::load(&foodseg_runtime::Env::from_pairs(vars))
            .expect("test configuration is valid");
        config.retry = RetryPolicy {
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_millis(200)),
        };
        config
    }

    /// Starts a worker on this runtime; stop it with [`Worker::stop`].
    pub fn start_worker(&self, config: Config) -> Worker {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(foodseg_worker::run(config, shutdown.clone()));
        Worker { shutdown, task }
    }

    /// Enqueues a job the way the api does (job row, event and outbox row in one statement).
    pub async fn enqueue(&self, image_url: &str, max_attempts: i32) -> anyhow::Result<Job> {
        self.enqueue_in(image_url, max_attempts, Priority::Interactive)
            .await
    }

    /// Like [`Env::enqueue`], in the lane of `priority`.
    pub async fn enqueue_in(
        &self,
        image_url: &str,
        max_attempts: i32,
        priority: Priority,
    ) -> anyhow::Result<Job> {
        let job = NewJob {
            id: JobId::new(),
            model_id: MODEL_ID.into(),
            model_name: MODEL_NAME.into(),
            image_url: image_url.into(),
            webhook_url: None,
            max_attempts: Attempt::new(max_attempts),
            trace_id: None,
            traceparent: None,
            owner: None,
            priority,
            batch_id: None,
        };
        Ok(self.store.enqueue(&job, "test").await?)
    }

    /// Polls until the job is finished or `timeout` passes.
    pub async fn wait_finished(&self, id: JobId, timeout: Duration) -> anyhow::Result<Job> {
        self.wait_for(id, timeout, |j| j.status.is_terminal()).await
    }

    /// Polls until `cond` holds for the job or `timeout` passes.
    pub async fn wait_for(
        &self,
        id: JobId,
        timeout: Duration,
        cond: impl Fn(&Job) -> bool,
    ) -> anyhow::Result<Job> {
        let waited = wait_until(timeout, || async {
            let job = self.store.get(id).await?.context("job vanished")?;
            anyhow::Ok(cond(&job).then_some(job))
        })
        .await;
        match waited {
            Ok(job) => Ok(job),
            Err(e) => {
                let now = self.store.get(id).await?.context("job vanished")?;
                Err(e.context(format!("job {id} still {} ({})", now.status, now.message)))
            }
        }
    }

    /// Count of a job's events that reached `status`.
    pub async fn events_to(&self, id: JobId, status: JobStatus) -> anyhow::Result<usize> {
        Ok(self
            .store
            .events(id)
            .await?
            .iter()
            .filter(|e| e.to_status == status)
            .count())
    }

    /// Deletes this test's streams.
    pub async fn cleanup(self) {
        self.relay.cancel();
        let js = self.bus.jetstream();
        let _ = js.delete_stream(&self.subjects.jobs_stream).await;
        let _ = js.delete_stream(&self.subjects.events_stream).await;
    }
}

/// A worker running on the test's runtime.
pub struct Worker {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), foodseg_worker::WorkerError>>,
}

impl Worker {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}
