//! Prometheus metrics: one recorder per process, rendered by each service's own
//! `/metrics` route (the exporter opens no listener of its own).
//!
//! Metric names are the contract with dashboards and alerts; emit them through the
//! helpers below so names, labels and units stay consistent:
//!
//! | metric | type | labels | emitted by |
//! |---|---|---|---|
//! | `foodseg_job_transitions_total` | counter | `from`, `to` (job statuses) | whoever performs the transition (worker, sweeper) |
//! | `foodseg_queue_oldest_queued_seconds` | gauge | `priority` (`interactive`, `bulk`) | scheduler (periodic Postgres scan) |
//! | `foodseg_queue_depth` | gauge | `priority` | scheduler (periodic Postgres scan) |
//! | `foodseg_stream_pending_messages` | gauge | `stream`, `consumer` | scheduler (JetStream consumer info) |
//! | `foodseg_queue_wait_seconds` | histogram | `model`, `priority` | worker (enqueue → claim) |
//! | `foodseg_worker_stage_seconds` | histogram | `stage` (`claim`, `fetch`, `decode`, `preprocess`, `inference`, `postprocess`, `write`) | worker |
//! | `foodseg_webhook_attempts_total` | counter | `outcome` (`delivered`, `retry`, `gone`, `failed`) | scheduler |
//! | `foodseg_sweep_recoveries_total` | counter | `kind` (`lease_expired`, `republished`, `failed_exhausted`) | scheduler |
//! | `foodseg_http_server_request_duration_seconds` | histogram | `http_route`, `http_request_method`, `http_response_status_code` | api (request hoop) |
//!
//! Conventions: counters end in `_total`, durations are in seconds (`_seconds`), sizes in
//! bytes, timestamps are `_timestamp_seconds` (Unix time); every series has HELP text,
//! registered at startup by the service that records it, and label values are bounded
//! sets (route templates, not paths).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Metric names (see the module docs for labels and emitters).
pub mod names {
    pub const JOB_TRANSITIONS: &str = "foodseg_job_transitions_total";
    pub const QUEUE_OLDEST_QUEUED: &str = "foodseg_queue_oldest_queued_seconds";
    pub const QUEUE_DEPTH: &str = "foodseg_queue_depth";
    pub const STREAM_PENDING: &str = "foodseg_stream_pending_messages";
    pub const QUEUE_WAIT: &str = "foodseg_queue_wait_seconds";
    pub const WORKER_STAGE: &str = "foodseg_worker_stage_seconds";
    pub const WEBHOOK_ATTEMPTS: &str = "foodseg_webhook_attempts_total";
    pub const SWEEP_RECOVERIES: &str = "foodseg_sweep_recoveries_total";
    pub const HTTP_SERVER_DURATION: &str = "foodseg_http_server_request_duration_seconds";
}

/// Buckets for pipeline stage latencies: milliseconds (decode of a small photo) to tens
/// of seconds (CPU inference on a large model, slow image hosts).
pub const STAGE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets for queue lag: from an idle system (tens of ms) to a backlog of an hour.
pub const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Buckets for HTTP server latency: the api answers most requests in milliseconds; an
/// upload of a large image takes seconds.
pub const HTTP_SERVER_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the Prometheus metrics recorder")]
    Install(#[source] Arc<BuildError>),
}

/// Renders the process's metrics in the Prometheus text format. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    inner: PrometheusHandle,
}

impl Handle {
    /// The current metrics, Prometheus text exposition format (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        self.inner.render()
    }
}

/// Content type of [`Handle::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process-wide recorder (the `metrics` facade is itself process-global).
static RECORDER: OnceLock<Result<Handle, Arc<BuildError>>> = OnceLock::new();

/// Installs the Prometheus recorder, or returns the one already installed: services
/// started side by side in one process (tests) share it.
pub fn install() -> Result<Handle, MetricsError> {
    RECORDER
        .get_or_init(|| {
            let handle = builder()
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(Arc::new)?;
            describe();
            Ok(Handle { inner: handle })
        })
        .clone()
        .map_err(MetricsError::Install)
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(names::WORKER_STAGE.into()), STAGE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(names::QUEUE_WAIT.into()), QUEUE_WAIT_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(names::HTTP_SERVER_DURATION.into()),
            HTTP_SERVER_BUCKETS,
        )
}

fn describe() {
    metrics::describe_counter!(
        names::JOB_TRANSITIONS,
        "Job state transitions, by from and to status."
    );
    metrics::describe_gauge!(
        names::QUEUE_OLDEST_QUEUED,
        Unit::Seconds,
        "Age of the oldest job still QUEUED, per priority (0 when none)."
    );
    metrics::describe_gauge!(names::QUEUE_DEPTH, "Jobs QUEUED, per priority.");
    metrics::describe_gauge!(
        names::STREAM_PENDING,
        "Messages in a JetStream consumer not yet delivered or not yet acknowledged."
    );
    metrics::describe_histogram!(
        names::QUEUE_WAIT,
        Unit::Seconds,
        "Time from enqueue to a worker claiming the job."
    );
    metrics::describe_histogram!(
        names::WORKER_STAGE,
        Unit::Seconds,
        "Duration of one pipeline stage."
    );
    metrics::describe_counter!(
        names::WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts, by outcome."
    );
    metrics::describe_counter!(
        names::SWEEP_RECOVERIES,
        "Jobs recovered by the sweeper, by kind."
    );
    metrics::describe_histogram!(
        names::HTTP_SERVER_DURATION,
        Unit::Seconds,
        "Duration of HTTP requests served, by route template, method and status code."
    );
}

/// A job moved from status `from` to `to` (e.g. `queued` → `in_progress`).
pub fn job_transition(from: &str, to: &str) {
    metrics::counter!(names::JOB_TRANSITIONS, "from" => from.to_owned(), "to" => to.to_owned())
        .increment(1);
}

/// `count` jobs moved from `from` to `to` at once (a sweep).
pub fn job_transitions(from: &str, to: &str, count: u64) {
    if count > 0 {
        metrics::counter!(names::JOB_TRANSITIONS, "from" => from.to_owned(), "to" => to.to_owned())
            .increment(count);
    }
}

/// Jobs QUEUED with `priority`, and the age of the oldest of them (0 when none).
pub fn queue_by_priority(priority: &str, queued: i64, oldest: Duration) {
    metrics::gauge!(names::QUEUE_OLDEST_QUEUED, "priority" => priority.to_owned())
        .set(oldest.as_secs_f64());
    metrics::gauge!(names::QUEUE_DEPTH, "priority" => priority.to_owned()).set(queued as f64);
}

/// Pending messages of a JetStream consumer.
pub fn stream_pending(stream: &str, consumer: &str, pending: u64) {
    metrics::gauge!(names::STREAM_PENDING, "stream" => stream.to_owned(), "consumer" => consumer.to_owned())
        .set(pending as f64);
}

/// Time a job of `priority` waited between enqueue and claim.
pub fn queue_wait(model: &str, priority: &str, waited: Duration) {
    metrics::histogram!(names::QUEUE_WAIT, "model" => model.to_owned(), "priority" => priority.to_owned())
        .record(waited.as_secs_f64());
}

/// Duration of one pipeline stage (`fetch`, `decode`, `preprocess`, `inference`, `postprocess`).
pub fn worker_stage(stage: &str, took: Duration) {
    metrics::histogram!(names::WORKER_STAGE, "stage" => stage.to_owned())
        .record(took.as_secs_f64());
}

/// One webhook delivery attempt finished with `outcome`
/// (`delivered`, `retry`, `gone`, `failed`).
pub fn webhook_attempt(outcome: &str) {
    metrics::counter!(names::WEBHOOK_ATTEMPTS, "outcome" => outcome.to_owned()).increment(1);
}

/// One HTTP request served: `route` is the matched route template (a bounded set).
pub fn http_server_request(route: &str, method: &str, status: u16, took: Duration) {
    metrics::histogram!(
        names::HTTP_SERVER_DURATION,
        "http_route" => route.to_owned(),
        "http_request_method" => method.to_owned(),
        "http_response_status_code" => status.to_string(),
    )
    .record(took.as_secs_f64());
}
