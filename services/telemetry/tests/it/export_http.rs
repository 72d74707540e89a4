//! `init` with an OTLP/HTTP endpoint exports spans, with the service name, parent links
//! and attributes, and flushes them on shutdown.

use foodseg_telemetry::receiver::{OtlpReceiver, trace_problems};
use foodseg_telemetry::{TelemetryConfig, init, trace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_are_flushed_on_shutdown() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let endpoint = receiver.endpoint();
    let config = TelemetryConfig::from_lookup("foodseg-test", |k| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
        "FOODSEG_LOG_FORMAT" => Some("json".into()),
        _ => None,
    });
    // The only test of this binary installing the process-wide subscriber.
    let guard = init(&config)?;
    assert!(guard.exporting());

    let trace_id = {
        let root = tracing::info_span!("enqueue", otel.kind = "server");
        let _root = root.enter();
        let trace_id = trace::current_trace_id().expect("trace id");
        let child = tracing::info_span!("inference", job.id = "j-1", detections = 3_i64);
        let _child = child.enter();
        tracing::info!("inside the child");
        trace_id
    };
    // Spans not exported yet (the batch delay is 5 s) must be flushed by shutdown.
    assert!(guard.shutdown(), "flush reported failure");

    let spans = receiver.trace(&trace_id);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(
        trace_problems(&spans).is_empty(),
        "{:?}",
        trace_problems(&spans)
    );
    let root = spans.iter().find(|s| s.name == "enqueue").expect("root");
    let child = spans.iter().find(|s| s.name == "inference").expect("child");
    assert_eq!(root.kind, "server");
    assert_eq!(child.parent_span_id.as_deref(), Some(root.span_id.as_str()));
    assert_eq!(child.attr("job.id"), Some("j-1"));
    assert_eq!(child.attr("detections"), Some("3"));
    assert!(spans.iter().all(|s| s.service_name == "foodseg-test"));
    Ok(())
}
