//! A collector that accepts connections but never answers costs dropped spans only:
//! recording spans never blocks, and shutdown gives up after its bound.

use std::net::TcpListener;

use foodseg_telemetry::{OtlpProtocol, OtlpTarget, TelemetryConfig, trace};

/// OTLP/HTTP export to `blackhole`, which accepts TCP connections and never reads or
/// answers.
fn exporting_to(blackhole: &TcpListener) -> anyhow::Result<TelemetryConfig> {
    let mut config = TelemetryConfig::from_lookup("foodseg-test", |_| None);
    config.otlp = Some(OtlpTarget {
        protocol: OtlpProtocol::HttpProtobuf,
        endpoint: Some(format!("http://{}/v1/traces", blackhole.local_addr()?)),
    });
    Ok(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_collector_never_blocks_the_service() -> anyhow::Result<()> {
    let blackhole = TcpListener::bind("127.0.0.1:0")?;
    let (_subscriber, guard) = crate::scoped(&exporting_to(&blackhole)?)?;
    assert!(guard.exporting());

    // Far more spans than the bounded queue holds: the overflow is dropped, not waited on.
    let mut ids = std::collections::HashSet::new();
    for i in 0..20_000 {
        let span = tracing::info_span!("work", i);
        let _e = span.enter();
        ids.insert(trace::current_trace_id().expect("trace ids still exist"));
    }
    assert_eq!(ids.len(), 20_000);

    // The service keeps doing async work meanwhile.
    let answer = tokio::spawn(async { 6 * 7 }).await?;
    assert_eq!(answer, 42);

    // Nothing could be delivered; shutdown says so instead of hanging.
    assert!(!guard.shutdown());
    drop(blackhole);
    Ok(())
}

/// Shutting down from the only thread of a current-thread runtime returns too.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_returns_on_a_current_thread_runtime() -> anyhow::Result<()> {
    let blackhole = TcpListener::bind("127.0.0.1:0")?;
    let (_subscriber, guard) = crate::scoped(&exporting_to(&blackhole)?)?;
    tracing::info_span!("work").in_scope(|| tracing::info!("recorded"));
    assert!(!guard.shutdown());
    drop(blackhole);
    Ok(())
}
