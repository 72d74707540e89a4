//! Telemetry for the foodseg services: structured logs (text or JSON) stamped with trace
//! ids, OpenTelemetry traces exported over OTLP, W3C trace-context propagation through
//! HTTP and NATS headers, span constructors following the OpenTelemetry semantic
//! conventions, Prometheus metrics, and links from a trace id to Jaeger.
//!
//! Each service's `main` calls [`init`] once with [`TelemetryConfig::from_env`] and keeps
//! the returned [`TelemetryGuard`] until it has shut down; dropping the guard (or calling
//! [`TelemetryGuard::shutdown`]) flushes buffered spans; [`build`] makes the same pipeline
//! without installing it, for code that scopes it to a thread (tests). Configuration is
//! the standard OpenTelemetry environment: `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`
//! or `grpc`), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`. With no
//! endpoint nothing is exported, but spans and trace ids still exist and propagate, so
//! logs of one job stay correlated across services.

pub mod config;
mod error;
pub mod jaeger;
mod logfmt;
pub mod metrics;
mod otlp;
#[cfg(feature = "test-receiver")]
pub mod receiver;
pub mod spans;
pub mod trace;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Dispatch;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Layer, Registry, fmt};

pub use config::{LogFormat, OtlpProtocol, OtlpTarget, TelemetryConfig};
pub use error::TelemetryError;
pub use jaeger::JaegerLinks;
pub use logfmt::WithTraceIds;
pub use otlp::SHUTDOWN_TIMEOUT;

/// Keeps telemetry alive; dropping it (or [`shutdown`](Self::shutdown)) flushes buffered
/// spans to the collector, waiting at most [`SHUTDOWN_TIMEOUT`].
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<otlp::Provider>,
    exporting: bool,
}

impl TelemetryGuard {
    /// Whether spans are being exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes buffered spans and stops exporting. Returns whether everything buffered
    /// was handed to the collector in time.
    pub fn shutdown(mut self) -> bool {
        self.shutdown_provider()
    }

    fn shutdown_provider(&mut self) -> bool {
        match self.provider.take() {
            Some(provider) => otlp::shutdown(&provider, SHUTDOWN_TIMEOUT),
            None => true,
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_provider();
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber (logs + OpenTelemetry layer), the tracer provider and
/// the W3C TraceContext propagator. Call once, from `main`, inside the Tokio runtime.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (dispatch, guard) = build(config)?;
    dispatch
        .try_init()
        .map_err(TelemetryError::AlreadyInitialized)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(provider) = &guard.provider {
        opentelemetry::global::set_tracer_provider(provider.sdk.clone());
    }
    tracing::debug!(
        service.name = %config.service_name,
        exporting = guard.exporting,
        protocol = config.otlp.as_ref().map(|t| t.protocol.as_str()),
        endpoint = config.otlp.as_ref().and_then(|t| t.endpoint.as_deref()),
        "telemetry initialised"
    );
    Ok(guard)
}

/// Builds what [`init`] installs, without installing anything process-wide: the
/// subscriber (logs + OpenTelemetry layer) as a [`Dispatch`], and the guard owning the
/// tracer provider. Scope the subscriber with [`tracing::dispatcher::set_default`] (one
/// thread) or [`tracing::dispatcher::with_default`]; the helpers in [`trace`] bring their
/// own propagator, so they work there as they do after `init`.
pub fn build(config: &TelemetryConfig) -> Result<(Dispatch, TelemetryGuard), TelemetryError> {
    if let Some(protocol) = &config.invalid_protocol {
        return Err(TelemetryError::UnsupportedProtocol(protocol.clone()));
    }
    let log_filter =
        EnvFilter::try_new(&config.log_filter).map_err(|source| TelemetryError::LogFilter {
            directives: config.log_filter.clone(),
            source,
        })?;
    let mut layers: Vec<BoxedLayer> = vec![log_layer(config.log_format, log_filter)];

    let provider = if config.tracing_enabled {
        let trace_filter = EnvFilter::try_new(&config.trace_filter).map_err(|source| {
            TelemetryError::TraceFilter {
                directives: config.trace_filter.clone(),
                source,
            }
        })?;
        let provider = otlp::provider(&config.service_name, config.otlp.as_ref())?;
        let tracer = provider.sdk.tracer("foodseg");
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(trace_filter)
                .boxed(),
        );
        Some(provider)
    } else {
        None
    };

    let exporting = provider.is_some() && config.otlp.is_some();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layers));
    Ok((
        dispatch,
        TelemetryGuard {
            provider,
            exporting,
        },
    ))
}

/// The log output layer: text or JSON lines on stdout, each stamped with the active
/// trace and span id.
fn log_layer(format: LogFormat, filter: EnvFilter) -> BoxedLayer {
    match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(false)
            .event_format(WithTraceIds::text(fmt::format().with_ansi(false)))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds::json(
                fmt::format().json().with_current_span(true),
            ))
            .with_filter(filter)
            .boxed(),
    }
}
