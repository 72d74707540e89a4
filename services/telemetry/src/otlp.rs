//! The OpenTelemetry tracer provider: OTLP exporter (HTTP/protobuf or gRPC) behind a
//! batch span processor running on Tokio.
//!
//! A collector that is down or slow costs dropped spans only: ending a span is a
//! non-blocking `try_send` into a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048,
//! overflow dropped and counted), and each export is bounded by the exporter timeout
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s) and the processor's export timeout
//! (`OTEL_BSP_EXPORT_TIMEOUT`).
//!
//! The exporter reads its endpoint itself: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is,
//! else `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces` for HTTP.

use std::sync::mpsc;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, SdkTracerProvider, TracerProviderBuilder};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::TelemetryError;
use crate::config::{OtlpProtocol, OtlpTarget};

/// How long a graceful shutdown waits for buffered spans to reach the collector.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the provider for `service_name`, exporting to `target` when there is one.
pub(crate) fn provider(
    service_name: &str,
    target: Option<&OtlpTarget>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    // The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    // (default: parent-based, always on).
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(target) = target else {
        return Ok(builder.build());
    };
    let on_multi_thread_runtime =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if target.protocol == OtlpProtocol::Grpc && Handle::try_current().is_err() {
        return Err(TelemetryError::NoRuntime);
    }
    let exporter = exporter(target)?;
    Ok(with_batch(builder, exporter, on_multi_thread_runtime).build())
}

fn exporter(target: &OtlpTarget) -> Result<SpanExporter, TelemetryError> {
    let built = match target.protocol {
        OtlpProtocol::HttpProtobuf => {
            let builder = SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary);
            match &target.endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint.clone()).build(),
                None => builder.build(),
            }
        }
        OtlpProtocol::Grpc => {
            let builder = SpanExporter::builder().with_tonic();
            match &target.endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint.clone()).build(),
                None => builder.build(),
            }
        }
    };
    built.map_err(|source| TelemetryError::Exporter {
        protocol: target.protocol,
        source,
    })
}

/// On the service's multi-thread runtime the processor is one more Tokio task; on a
/// current-thread runtime (or none) it gets a thread with its own runtime, because a
/// flush blocks the caller's thread until the processor answers.
fn with_batch(
    builder: TracerProviderBuilder,
    exporter: SpanExporter,
    on_multi_thread_runtime: bool,
) -> TracerProviderBuilder {
    // BatchConfigBuilder reads OTEL_BSP_* (queue size, delay, batch size, timeout).
    let config = BatchConfigBuilder::default().build();
    if on_multi_thread_runtime {
        builder.with_span_processor(
            BatchSpanProcessor::builder(exporter, runtime::Tokio)
                .with_batch_config(config)
                .build(),
        )
    } else {
        builder.with_span_processor(
            BatchSpanProcessor::builder(exporter, runtime::TokioCurrentThread)
                .with_batch_config(config)
                .build(),
        )
    }
}

/// Flushes buffered spans and shuts the provider down, waiting at most `timeout` (the
/// SDK's own shutdown waits for the exporter, which a dead collector would stretch).
/// Never panics, also when called from inside a Tokio runtime.
pub(crate) fn shutdown(provider: SdkTracerProvider, timeout: Duration) -> bool {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("otel-shutdown".into())
        .spawn(move || {
            let _ = tx.send(provider.shutdown().is_ok());
        });
    if spawned.is_err() {
        return false;
    }
    let wait = move || rx.recv_timeout(timeout).unwrap_or(false);
    match Handle::try_current() {
        // Lets the runtime keep running the processor task while this thread waits.
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
