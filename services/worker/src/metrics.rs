//! The worker's Prometheus metrics. Shared series (stage latency, transitions, queue
//! wait) go through `foodseg_telemetry::metrics` so names and buckets match the other
//! services; the ones below are the worker's own.

use std::time::Duration;

use foodseg_engine::JobStatus;

/// Jobs finished by this worker, by model and outcome.
pub const JOBS_TOTAL: &str = "foodseg_worker_jobs_total";
/// Jobs this worker holds right now.
pub const JOBS_IN_FLIGHT: &str = "foodseg_worker_jobs_in_flight";
/// Dispatch messages handled without running a job, by reason.
pub const MESSAGES_SKIPPED_TOTAL: &str = "foodseg_worker_messages_skipped_total";
/// Jobs this worker may hold at once (`FOODSEG_WORKER_CONCURRENCY`).
pub const CONCURRENCY: &str = "foodseg_worker_concurrency";
/// Failed attempts, by model and class (`permanent`, `transient`).
pub const FAILURES_TOTAL: &str = "foodseg_worker_failures_total";

/// How a claimed job ended on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Permanent failure, or transient failures with no attempt left.
    Failed,
    /// Transient failure, requeued.
    Retried,
    /// Handed back on shutdown.
    Released,
    /// Another attempt took over (lease lost).
    Abandoned,
}

impl Outcome {
    /// The status the job moved to, when this worker moved it.
    pub fn status(self) -> Option<JobStatus> {
        match self {
            Outcome::Succeeded => Some(JobStatus::Succeeded),
            Outcome::Failed => Some(JobStatus::Failed),
            Outcome::Retried | Outcome::Released => Some(JobStatus::Queued),
            Outcome::Abandoned => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Retried => "retried",
            Outcome::Released => "released",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// Registers descriptions so `/metrics` explains each series, and the series of the
/// served `models` at zero, so dashboards and alerts see them before the first job.
pub fn register(models: &[&str], concurrency: usize) {
    describe();
    metrics::gauge!(CONCURRENCY).set(concurrency as f64);
    metrics::gauge!(JOBS_IN_FLIGHT).increment(0.0);
    for model in models {
        for class in ["permanent", "transient"] {
            metrics::counter!(FAILURES_TOTAL, "model" => model.to_string(), "class" => class)
                .increment(0);
        }
    }
}

fn describe() {
    metrics::describe_counter!(
        JOBS_TOTAL,
        "Jobs finished by this worker, by model and outcome"
    );
    metrics::describe_gauge!(JOBS_IN_FLIGHT, "Jobs this worker holds right now");
    metrics::describe_counter!(
        MESSAGES_SKIPPED_TOTAL,
        "Dispatch messages handled without running a job, by reason"
    );
    metrics::describe_gauge!(
        CONCURRENCY,
        "Jobs this worker may hold at once (FOODSEG_WORKER_CONCURRENCY)"
    );
    metrics::describe_counter!(
        FAILURES_TOTAL,
        "Failed attempts, by model and class (permanent: not retried; transient: retried while attempts remain)"
    );
}

/// An attempt failed; `permanent` failures are not retried.
pub fn failure(model: &str, permanent: bool) {
    let class = if permanent { "permanent" } else { "transient" };
    metrics::counter!(FAILURES_TOTAL, "model" => model.to_string(), "class" => class).increment(1);
}

pub fn job_finished(model: &str, outcome: Outcome) {
    metrics::counter!(JOBS_TOTAL, "model" => model.to_string(), "outcome" => outcome.as_str())
        .increment(1);
}

/// `foodseg_worker_stage_seconds{stage}`.
pub fn stage(stage: &'static str, elapsed: Duration) {
    foodseg_telemetry::metrics::worker_stage(stage, elapsed);
}

/// `foodseg_job_transitions_total{from,to}` for a transition this worker made.
pub fn transition(from: JobStatus, to: JobStatus) {
    foodseg_telemetry::metrics::job_transition(from.as_str(), to.as_str());
}

pub fn message_skipped(reason: &'static str) {
    metrics::counter!(MESSAGES_SKIPPED_TOTAL, "reason" => reason).increment(1);
}

pub fn in_flight(delta: f64) {
    metrics::gauge!(JOBS_IN_FLIGHT).increment(delta);
}
