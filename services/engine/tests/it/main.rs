//! The engine against a real Postgres and NATS: one database per test
//! (`#[sqlx::test]`), own JetStream streams per test.

mod cluster;
mod enqueuer;
mod finisher;
mod lanes;
mod operator;
mod plans;
mod reconcile;
mod recorder;
mod relay;
mod retention;
mod shadow;
mod store;
mod uploads;
