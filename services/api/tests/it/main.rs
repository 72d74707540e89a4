//! The api over HTTP against the real Postgres (a database per test) and NATS (streams
//! per test).

mod batches;
mod batches_console;
mod common;
mod console;
mod endpoints;
mod exposure;
mod feed;
mod idempotency;
mod keys;
mod metrics;
mod models;
mod shadow;
mod uploads;
mod v1;
