//! Test kit for foodseg's test suites and benches, all against the real Postgres and NATS:
//! [`wait_until`] polls a condition with a deadline (never sleep to sequence a test),
//! [`TestBus`] gives each test its own JetStream streams, [`FileServer`] serves fixture files over HTTP on loopback,
//! [`NatsServer`] and [`PostgresServer`] run a throwaway NATS or Postgres to stop and
//! restart, [`NatsCluster`] a throwaway 3-node JetStream cluster whose nodes can be
//! killed, [`TestModels`] writes a unique models directory, and
//! [`check_service_command_line`] holds a service binary to its command line. It depends on no service
//! crate: the api in-process is `foodseg_api::local`.

mod bus;
mod command_line;
mod database;
mod files;
mod jobs;
mod models;
mod nats;
mod postgres;
mod serve;
mod wait;

pub use bus::{TestBus, nats_url, unique_subjects};
pub use command_line::check_service_command_line;
pub use database::database_url_of;
pub use files::FileServer;
pub use jobs::{finished_job, new_job};
pub use models::{TestModels, repo_models_dir};
pub use nats::{NatsCluster, NatsServer, free_port};
pub use postgres::PostgresServer;
pub use serve::serve_router;
pub use wait::{Check, wait_until};
