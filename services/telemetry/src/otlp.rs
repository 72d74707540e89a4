//! The OpenTelemetry tracer provider: an OTLP exporter (HTTP/protobuf or gRPC) behind the
//! SDK's batch span processor, which exports from a thread of its own.
//!
//! The exporter reads its standard variables itself: the endpoint
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
//! `/v1/traces` for HTTP), `OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT`, `_HEADERS` and
//! `_COMPRESSION`; the processor reads `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`
//! and `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
//!
//! A collector that is down or slow costs dropped spans only: ending a span is a
//! non-blocking `try_send` into a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048,
//! overflow dropped and counted), each export is bounded by the exporter timeout
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s), and shutdown waits at most [`SHUTDOWN_TIMEOUT`].
//!
//! OTLP/HTTP uses a blocking HTTP client (from foodseg-http) on the processor's thread,
//! so exporting never depends on the service's runtime; the OTLP/gRPC channel runs on the
//! Tokio runtime [`crate::init`] was called in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_otlp::{
    OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, Protocol, SpanExporter, WithExportConfig, WithHttpConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::config::{OtlpProtocol, OtlpTarget};
use crate::error::TelemetryError;

/// How long a graceful shutdown waits for buffered spans to reach the collector.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A tracer provider and, when it exports, whether its latest export failed.
#[derive(Debug)]
pub(crate) struct Provider {
    pub(crate) sdk: SdkTracerProvider,
    export_failed: Option<Arc<AtomicBool>>,
}

/// Builds the provider for `service_name`, exporting to `target` when there is one.
pub(crate) fn provider(
    service_name: &str,
    target: Option<&OtlpTarget>,
) -> Result<Provider, TelemetryError> {
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
        return Ok(Provider {
            sdk: builder.build(),
            export_failed: None,
        });
    };
    if target.protocol == OtlpProtocol::Grpc && Handle::try_current().is_err() {
        return Err(TelemetryError::NoRuntime);
    }
    let exporter = Reporting {
        inner: exporter(target)?,
        failed: Arc::new(AtomicBool::new(false)),
    };
    let export_failed = Some(exporter.failed.clone());
    Ok(Provider {
        sdk: builder.with_batch_exporter(exporter).build(),
        export_failed,
    })
}

fn exporter(target: &OtlpTarget) -> Result<SpanExporter, TelemetryError> {
    let built = match target.protocol {
        OtlpProtocol::HttpProtobuf => {
            let timeout = http_export_timeout();
            let builder = SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(timeout)
                .with_http_client(blocking_http_client(timeout)?);
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

/// The OTLP/HTTP export timeout, by the exporter's own rule: milliseconds in
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else in `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s. It
/// bounds both the exporter's retries and each request of its HTTP client.
fn http_export_timeout() -> Duration {
    [
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        OTEL_EXPORTER_OTLP_TIMEOUT,
    ]
    .iter()
    .find_map(|var| std::env::var(var).ok()?.parse().ok())
    .map(Duration::from_millis)
    .unwrap_or(OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT)
}

/// The blocking client the OTLP/HTTP exporter sends with, from the batch processor's
/// thread. It is built on a short-lived thread of its own: a blocking client cannot be
/// built on a thread that runs async tasks, which [`crate::init`]'s caller may be.
fn blocking_http_client(timeout: Duration) -> Result<reqwest::blocking::Client, TelemetryError> {
    let build = move || -> Result<_, foodseg_http::Error> {
        Ok(foodseg_http::blocking_client_builder()?
            .timeout(timeout)
            .build()?)
    };
    std::thread::scope(|scope| scope.spawn(build).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        .map_err(TelemetryError::HttpClient)
}

/// Passes spans to the OTLP exporter and remembers whether the latest export failed: the
/// batch processor's shutdown reports only whether it finished in time, not whether its
/// final export reached the collector.
#[derive(Debug)]
struct Reporting {
    inner: SpanExporter,
    failed: Arc<AtomicBool>,
}

impl opentelemetry_sdk::trace::SpanExporter for Reporting {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.failed.store(result.is_err(), Ordering::Release);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Flushes buffered spans and shuts the provider down, waiting at most `timeout`: the
/// batch processor stops waiting for its thread then, however long a dead collector
/// keeps the export hanging. Returns whether the spans reached the collector in time.
/// Never panics, also when called from inside a Tokio runtime.
pub(crate) fn shutdown(provider: &Provider, timeout: Duration) -> bool {
    let flush = || provider.sdk.shutdown_with_timeout(timeout).is_ok();
    let finished = match Handle::try_current() {
        // The wait blocks this thread: on a worker of a multi-thread runtime, its other
        // tasks (the gRPC channel among them) move to another worker meanwhile.
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(flush)
        }
        _ => flush(),
    };
    finished
        && !provider
            .export_failed
            .as_ref()
            .is_some_and(|failed| failed.load(Ordering::Acquire))
}
