//! With OTLP/gRPC pointed at a closed port the service runs normally and shutdown
//! reports the failed flush instead of hanging.

use foodseg_telemetry::{OtlpProtocol, TelemetryConfig, trace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_to_a_closed_port_is_harmless() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let mut config = TelemetryConfig::from_lookup("foodseg-test", |k| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".into()),
        _ => None,
    });
    let target = config.otlp.as_mut().expect("an endpoint turns export on");
    assert_eq!(target.protocol, OtlpProtocol::Grpc);
    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT from the process environment, which
    // tests running side by side share: name the port in code instead.
    target.endpoint = Some(endpoint);

    let (_subscriber, guard) = crate::scoped(&config)?;
    assert!(guard.exporting());
    for _ in 0..100 {
        let span = tracing::info_span!("work");
        let _e = span.enter();
        assert!(trace::current_traceparent().is_some());
    }
    assert!(!guard.shutdown());
    Ok(())
}
