//! The scheduler against the real Postgres (a database per test) and NATS (streams per
//! test): webhook delivery as MFR's Rails app receives it, recovery sweeps, uploads purge, retention,
//! operator routes, and one trace per job across the three services as processes.

mod args;
mod common;
mod console;
mod endpoints;
mod operator;
mod recovery;
mod retention;
mod trace_e2e;
mod uploads;
mod webhooks;
