//! `init` with an OTLP/HTTP endpoint exports spans, with the service name, parent links
//! and attributes, and flushes them on shutdown; the exporter finds the collector through
//! the standard endpoint variables.

use std::process::Stdio;
use std::time::Duration;

use foodseg_telemetry::receiver::{OtlpReceiver, trace_problems};
use foodseg_telemetry::{OtlpProtocol, OtlpTarget, TelemetryConfig, init, trace};

/// Generous bound for conditions; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

/// Set for a copy of this test binary that exports one span configured by the
/// environment alone (the exporter reads the process environment, which tests in one
/// process share).
const CHILD: &str = "FOODSEG_TELEMETRY_TEST_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_are_flushed_on_shutdown() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let mut config = TelemetryConfig::from_lookup("foodseg-test", |k| match k {
        "FOODSEG_LOG_FORMAT" => Some("json".into()),
        _ => None,
    });
    config.otlp = Some(OtlpTarget {
        protocol: OtlpProtocol::HttpProtobuf,
        endpoint: Some(receiver.traces_url()),
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

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is the collector's base URL (`/v1/traces` appended), and
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, the full URL, wins over it. Each case runs in a
/// child process that reads nothing but its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_reads_the_endpoint_variables() -> anyhow::Result<()> {
    if std::env::var_os(CHILD).is_some() {
        return export_one_span_as_configured_by_the_environment();
    }
    let receiver = OtlpReceiver::start().await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let nowhere = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let cases = [
        (
            "from-base-url",
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())],
        ),
        (
            "traces-url-wins",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.traces_url()),
            ],
        ),
    ];
    for (service, vars) in cases {
        let mut child = tokio::process::Command::new(std::env::current_exe()?);
        child
            .args([
                "export_http::the_exporter_reads_the_endpoint_variables",
                "--exact",
                "--nocapture",
            ])
            .stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") {
                child.env_remove(key);
            }
        }
        let out = child
            .env(CHILD, "1")
            .env("OTEL_SERVICE_NAME", service)
            .envs(vars)
            .output()
            .await?;
        let log = || {
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        assert!(out.status.success(), "{service}: {}", log());
        let spans = receiver
            .wait_for(DEADLINE, |spans| {
                spans.iter().any(|s| s.service_name == service)
            })
            .await;
        assert!(
            spans
                .iter()
                .any(|s| s.service_name == service && s.name == "from-env"),
            "{service}: no span received\n{}",
            log()
        );
    }
    Ok(())
}

/// The child's side: telemetry exactly as a service starts it, one span, a flush that
/// must succeed.
fn export_one_span_as_configured_by_the_environment() -> anyhow::Result<()> {
    let guard = init(&TelemetryConfig::from_env("foodseg-test"))?;
    anyhow::ensure!(guard.exporting(), "the environment names no collector");
    tracing::info_span!("from-env").in_scope(|| tracing::info!("exported"));
    anyhow::ensure!(guard.shutdown(), "flush reported failure");
    Ok(())
}
