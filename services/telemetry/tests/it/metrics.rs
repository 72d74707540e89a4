//! The Prometheus recorder installs once per process, renders what the helpers record,
//! and uses bucketed histograms for stage latency and queue lag.

use std::time::Duration;

use foodseg_telemetry::metrics;

#[test]
fn install_is_idempotent_and_renders_recorded_metrics() {
    let first = metrics::install().expect("install");
    let second = metrics::install().expect("second install returns the same recorder");

    metrics::job_transition("queued", "in_progress");
    metrics::job_transition("queued", "in_progress");
    metrics::job_transition("in_progress", "succeeded");
    metrics::webhook_attempt("delivered");
    metrics::queue_by_priority("interactive", 3, Duration::from_secs(42));
    metrics::stream_pending("FOODSEG_JOBS", "worker-m", 7);
    metrics::worker_stage("inference", Duration::from_millis(300));
    metrics::queue_wait("m", "bulk", Duration::from_millis(20));

    let text = second.render();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(r#"foodseg_job_transitions_total{from="queued",to="in_progress"} 2"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_job_transitions_total{from="in_progress",to="succeeded"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_webhook_attempts_total{outcome="delivered"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_queue_oldest_queued_seconds{priority="interactive"} 42"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_queue_depth{priority="interactive"} 3"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_stream_pending_messages{stream="FOODSEG_JOBS",consumer="worker-m"} 7"#),
        "{text}"
    );
    // Histograms, not summaries: 0.3 s falls in the 0.5 bucket but not the 0.25 one.
    assert!(
        has(r#"foodseg_worker_stage_seconds_bucket{stage="inference",le="0.25"} 0"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_worker_stage_seconds_bucket{stage="inference",le="0.5"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_worker_stage_seconds_count{stage="inference"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"foodseg_queue_wait_seconds_bucket{model="m",priority="bulk",le="0.05"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("# HELP foodseg_job_transitions_total"),
        "{text}"
    );
    // Both handles read the same recorder (render order is not stable, so compare sorted).
    let sorted = |t: String| {
        let mut lines: Vec<String> = t.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(first.render()), sorted(second.render()));
}
