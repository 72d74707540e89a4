//! The worker on the real Postgres, NATS, ONNX Runtime and model: jobs enqueued as the
//! api does (or through the api), images served from 127.0.0.1, results read back from
//! the store.

mod args;
mod common;
mod e2e;
mod import;
mod lanes;
mod lifecycle;
mod outage;
mod redrive;
mod shadow;
mod swap;
mod uploads;
mod via_api;
