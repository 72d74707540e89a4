//! Test kit for foodseg's test suites and benches, all against the real Postgres and NATS:
//! [`wait_until`] polls a condition with a deadline (never sleep to sequence a test),
//! [`TestBus`] gives each test its own JetStream streams, [`TestApi`] runs the api
//! in-process on `127.0.0.1:0`, [`FileServer`] serves fixture files over HTTP on loopback,
//! [`NatsServer`] and [`PostgresServer`] run a throwaway NATS or Postgres to stop and
//! restart, [`NatsCluster`] a throwaway 3-node JetStream cluster whose nodes can be
//! killed, and [`TestModels`] writes a unique models directory.

mod api;
mod bus;
mod files;
mod jobs;
mod models;
mod nats;
mod postgres;
mod serve;
mod wait;

pub use api::{TestApi, api_key, api_parts, start_api, start_api_with};
pub use bus::{TestBus, nats_url, unique_subjects};
pub use files::FileServer;
pub use jobs::{finished_job, new_job};
pub use models::{TestModels, repo_models_dir};
pub use nats::{NatsCluster, NatsServer, free_port};
pub use postgres::PostgresServer;
pub use serve::serve_router;
pub use wait::{Check, wait_until};
