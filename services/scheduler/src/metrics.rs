//! The scheduler's Prometheus metrics beyond the shared ones of `foodseg_telemetry`.

use std::time::Duration;

use foodseg_engine::store::{EndpointHealthCounts, ReconciliationReport};
use foodseg_engine::{AttemptOutcome, JobStatus};

/// Deliveries that failed for good (schedule exhausted, 410, refused URL).
pub const DELIVERIES_FAILED_TOTAL: &str = "foodseg_webhook_deliveries_failed_total";
/// Duration of one delivery attempt.
pub const ATTEMPT_SECONDS: &str = "foodseg_webhook_attempt_seconds";
/// Jobs created on the last reconciled day, by state.
pub const RECONCILE_JOBS: &str = "foodseg_reconcile_jobs";
/// Other counts of the last reconciliation, by `count`.
pub const RECONCILE_COUNTS: &str = "foodseg_reconcile_counts";
/// When the last daily reconciliation succeeded (Unix time).
pub const RECONCILE_LAST_SUCCESS: &str = "foodseg_reconcile_last_success_timestamp_seconds";
/// Outbox rows not yet published to JetStream.
pub const OUTBOX_PENDING: &str = "foodseg_outbox_pending_messages";
/// Webhook deliveries not yet delivered nor given up.
pub const WEBHOOKS_PENDING: &str = "foodseg_webhook_deliveries_pending";
/// Pending webhook deliveries whose next attempt is already due (paused endpoints'
/// deliveries wait by design and are not counted).
pub const WEBHOOKS_OVERDUE: &str = "foodseg_webhook_deliveries_overdue";

/// Webhook endpoints paused now (by failures, `Retry-After` or by hand).
pub const ENDPOINTS_PAUSED: &str = "foodseg_webhook_endpoints_paused";
/// How long the longest-paused endpoint has been paused.
pub const ENDPOINT_LONGEST_PAUSE: &str = "foodseg_webhook_endpoint_longest_pause_seconds";
/// Pending webhook deliveries by the state of their endpoint.
pub const DELIVERIES_WAITING: &str = "foodseg_webhook_deliveries_waiting";
/// Pauses and resumes of endpoints this scheduler's attempts caused, by `action`.
pub const ENDPOINT_CHANGES_TOTAL: &str = "foodseg_webhook_endpoint_changes_total";
/// Deliveries that failed because they waited past `FOODSEG_WEBHOOK_MAX_AGE`.
pub const DELIVERIES_EXPIRED_TOTAL: &str = "foodseg_webhook_deliveries_expired_total";

const STATES: [JobStatus; 4] = [
    JobStatus::Queued,
    JobStatus::Running,
    JobStatus::Succeeded,
    JobStatus::Failed,
];

/// Registers descriptions so `/metrics` explains each series.
pub fn describe() {
    crate::maintenance::uploads::describe();
    crate::maintenance::idempotency::describe();
    crate::maintenance::workers::describe();
    crate::maintenance::retention::describe();
    metrics::describe_counter!(
        DELIVERIES_FAILED_TOTAL,
        "Webhook deliveries that failed for good (schedule exhausted, 410 Gone, refused URL)"
    );
    metrics::describe_histogram!(
        ATTEMPT_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one webhook delivery attempt"
    );
    metrics::describe_gauge!(
        RECONCILE_JOBS,
        "Jobs created on the day the last daily reconciliation counted, by their state when it ran"
    );
    metrics::describe_gauge!(
        RECONCILE_COUNTS,
        "Recoveries and failed deliveries of the day the last daily reconciliation counted, and the webhook and outbox backlogs when it ran"
    );
    metrics::describe_gauge!(
        RECONCILE_LAST_SUCCESS,
        metrics::Unit::Seconds,
        "Unix time of the last daily reconciliation that completed (any scheduler's, as stored)"
    );
    metrics::describe_gauge!(
        OUTBOX_PENDING,
        "Dispatch messages written to the outbox and not yet published to JetStream"
    );
    metrics::describe_gauge!(
        WEBHOOKS_PENDING,
        "Webhook deliveries pending (not yet delivered nor given up)"
    );
    metrics::describe_gauge!(
        WEBHOOKS_OVERDUE,
        "Pending webhook deliveries whose next attempt is already due (no scheduler keeps up), those of paused endpoints not counted"
    );
    metrics::describe_gauge!(
        ENDPOINTS_PAUSED,
        "Webhook endpoints paused now: after failed attempts in a row, by Retry-After, or by hand"
    );
    metrics::describe_gauge!(
        ENDPOINT_LONGEST_PAUSE,
        metrics::Unit::Seconds,
        "How long the longest-paused webhook endpoint has been paused (0 when none is)"
    );
    metrics::describe_gauge!(
        DELIVERIES_WAITING,
        "Pending webhook deliveries, by the state of their endpoint (active or paused)"
    );
    metrics::describe_counter!(
        ENDPOINT_CHANGES_TOTAL,
        "Webhook endpoints paused or resumed by this scheduler's attempts, by action"
    );
    metrics::describe_counter!(
        DELIVERIES_EXPIRED_TOTAL,
        "Webhook deliveries failed because they were still pending after FOODSEG_WEBHOOK_MAX_AGE"
    );
    // Registered at zero so alerts and dashboards see the series before the first event.
    metrics::counter!(DELIVERIES_FAILED_TOTAL).increment(0);
    metrics::counter!(DELIVERIES_EXPIRED_TOTAL).increment(0);
    for action in ["paused", "resumed"] {
        metrics::counter!(ENDPOINT_CHANGES_TOTAL, "action" => action).increment(0);
    }
    endpoint_health(&EndpointHealthCounts::default());
    for kind in [
        "lease_expired",
        "republished",
        "failed_exhausted",
        "unserved",
    ] {
        let name = foodseg_telemetry::metrics::names::SWEEP_RECOVERIES;
        metrics::counter!(name, "kind" => kind).increment(0);
    }
    let _ = metrics::histogram!(ATTEMPT_SECONDS);
}

/// The last daily reconciliation completed at `at`.
pub fn reconcile_succeeded(at: chrono::DateTime<chrono::Utc>) {
    metrics::gauge!(RECONCILE_LAST_SUCCESS).set(at.timestamp() as f64);
}

/// Outbox rows waiting to be published.
pub fn outbox_pending(rows: i64) {
    metrics::gauge!(OUTBOX_PENDING).set(rows as f64);
}

/// The webhook backlog now.
pub fn webhook_backlog(pending: i64, overdue: i64) {
    metrics::gauge!(WEBHOOKS_PENDING).set(pending as f64);
    metrics::gauge!(WEBHOOKS_OVERDUE).set(overdue as f64);
}

/// One attempt finished with `outcome`.
pub fn attempt(outcome: AttemptOutcome, took: Duration) {
    foodseg_telemetry::metrics::webhook_attempt(outcome.as_str());
    metrics::histogram!(ATTEMPT_SECONDS).record(took.as_secs_f64());
}

/// Endpoint health now.
pub fn endpoint_health(h: &EndpointHealthCounts) {
    metrics::gauge!(ENDPOINTS_PAUSED).set(h.paused as f64);
    metrics::gauge!(ENDPOINT_LONGEST_PAUSE).set(h.longest_pause_secs as f64);
    metrics::gauge!(DELIVERIES_WAITING, "endpoint_state" => "active").set(h.waiting_active as f64);
    metrics::gauge!(DELIVERIES_WAITING, "endpoint_state" => "paused").set(h.waiting_paused as f64);
}

/// This scheduler's attempt paused an endpoint.
pub fn endpoint_paused() {
    metrics::counter!(ENDPOINT_CHANGES_TOTAL, "action" => "paused").increment(1);
}

/// This scheduler's attempt resumed an endpoint.
pub fn endpoint_resumed() {
    metrics::counter!(ENDPOINT_CHANGES_TOTAL, "action" => "resumed").increment(1);
}

/// `n` deliveries failed past the maximum age.
pub fn deliveries_expired(n: u64) {
    metrics::counter!(DELIVERIES_EXPIRED_TOTAL).increment(n);
}

pub fn delivery_failed() {
    metrics::counter!(DELIVERIES_FAILED_TOTAL).increment(1);
}

/// The sweeper recovered `n` jobs of `kind`.
pub fn recovered(kind: &'static str, n: usize) {
    if n > 0 {
        let name = foodseg_telemetry::metrics::names::SWEEP_RECOVERIES;
        metrics::counter!(name, "kind" => kind).increment(n as u64);
    }
}

/// Exports a reconciliation report as gauges (every state, zero when absent).
pub fn reconciled(report: &ReconciliationReport) {
    for status in STATES {
        let count = report
            .jobs
            .iter()
            .find(|c| c.status == status)
            .map_or(0, |c| c.count);
        metrics::gauge!(RECONCILE_JOBS, "status" => status.as_str()).set(count as f64);
    }
    for (name, value) in [
        ("redriven_24h", report.redriven_24h),
        ("lost_failed_24h", report.lost_failed_24h),
        ("republished_24h", report.republished_24h),
        ("deliveries_failed_24h", report.deliveries_failed_24h),
        ("deliveries_pending", report.deliveries_pending),
        ("outbox_unpublished", report.outbox_unpublished),
    ] {
        metrics::gauge!(RECONCILE_COUNTS, "count" => name).set(value as f64);
    }
}
