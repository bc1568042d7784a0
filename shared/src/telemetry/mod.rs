//! Logging and tracing setup, OTLP export of spans, and W3C trace-context propagation
//! through AMQP headers.
//!
//! Spans are named after operations (`sms.accept`, `dispatch.job`, `hkt.submit`). Every
//! span gets an OpenTelemetry context, so the `traceparent` injected on publish and
//! extracted on consume ties a message's whole journey into one trace. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set (and the `otlp` feature built in), finished spans are
//! sent to that collector; without it they are only used for propagation.

#[cfg(feature = "otlp")]
mod otlp;
mod settings;

pub use settings::{Sampling, TelemetrySettings};

use std::sync::OnceLock;

use lapin::types::{AMQPValue, FieldTable, ShortString};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, TracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::ConfigError;

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the OTLP span exporter")]
    Exporter(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Flushes pending spans when dropped; keep it alive for the whole of `main`.
///
/// With an exporter, dropping it blocks until the last batch is sent (at most the export
/// timeout): drop it on the thread running `main` of a multi-thread runtime, as
/// `#[tokio::main]` does, never inside a task of a current-thread runtime, where the
/// exporting task could not run.
pub struct TelemetryGuard {
    /// Only when spans are exported; without an exporter there is nothing to flush.
    provider: Option<TracerProvider>,
}

impl TelemetryGuard {
    /// Exports every span finished so far and waits for the collector's answer. Blocks the
    /// calling thread: from async code, call it through `spawn_blocking`.
    pub fn flush(&self) -> Result<(), opentelemetry::trace::TraceError> {
        let Some(provider) = &self.provider else {
            return Ok(());
        };
        provider.force_flush().into_iter().collect()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Set by the first [`init_with`]; later calls change nothing.
static INSTALLED: OnceLock<()> = OnceLock::new();

/// [`init_with`] the settings of the `OTEL_*` variables (see [`TelemetrySettings`]).
pub fn init(service_name: &'static str) -> Result<TelemetryGuard, TelemetryError> {
    init_with(service_name, TelemetrySettings::from_env()?)
}

/// Installs the global subscriber: `RUST_LOG` filtering (default `info`), JSON lines when
/// `LOG_FORMAT=json`, and the OpenTelemetry layer, exporting to the settings' endpoint if
/// there is one (and the `otlp` feature is built in). `service_name` is the `service.name`
/// unless the settings override it.
///
/// Safe to call more than once (tests): the first call installs everything, later calls
/// return a guard that owns nothing.
pub fn init_with(
    service_name: &'static str,
    settings: TelemetrySettings,
) -> Result<TelemetryGuard, TelemetryError> {
    #[cfg(feature = "otlp")]
    let exporter = match &settings.traces_endpoint {
        Some(endpoint) if INSTALLED.get().is_none() => Some(otlp::batch_processor(endpoint)?),
        _ => None,
    };
    #[cfg(not(feature = "otlp"))]
    let exporter = None;
    install(service_name, settings, exporter)
}

/// As [`init`], but never exports: for the modem agent. Its binary then holds no exporter
/// code even where Cargo builds `shared` with `otlp` for the other crates of a workspace
/// build (the Pi's idle budget is 8 MB).
pub fn init_without_export(service_name: &'static str) -> Result<TelemetryGuard, TelemetryError> {
    install(service_name, TelemetrySettings::from_env()?, None)
}

fn install(
    service_name: &'static str,
    settings: TelemetrySettings,
    exporter: Option<BatchSpanProcessor<runtime::Tokio>>,
) -> Result<TelemetryGuard, TelemetryError> {
    let mut first = false;
    INSTALLED.get_or_init(|| first = true);
    if !first {
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let name = settings
        .service_name
        .clone()
        .unwrap_or_else(|| service_name.to_owned());
    // The SDK's default resource adds `telemetry.sdk.*` and OTEL_RESOURCE_ATTRIBUTES.
    let resource = Resource::default().merge(&Resource::new([KeyValue::new("service.name", name)]));
    let builder = TracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler(settings.sampling));
    let exporting = exporter.is_some();
    let provider = match exporter {
        Some(processor) => builder.with_span_processor(processor).build(),
        None => builder.build(),
    };
    let tracer = provider.tracer(service_name);
    // Each layer filters on its own: RUST_LOG quiets the logs, but spans still reach the
    // OpenTelemetry layer, so `traceparent` propagation never depends on the log level.
    let log_filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let json = crate::config::var("LOG_FORMAT").is_some_and(|f| f == "json");
    let registry = tracing_subscriber::registry().with(otel);
    let _ = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_filter(log_filter()),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_filter(log_filter()),
            )
            .try_init()
    };
    if settings.traces_endpoint.is_some() && !exporting {
        tracing::warn!(
            "{service_name} does not export spans (built without the `otlp` feature, or \
             the modem agent); OTEL_EXPORTER_OTLP_ENDPOINT is ignored"
        );
    }
    Ok(TelemetryGuard {
        provider: exporting.then_some(provider),
    })
}

fn sampler(sampling: Sampling) -> Sampler {
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match sampling {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        Sampling::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        Sampling::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        Sampling::ParentBasedTraceIdRatio(ratio) => parent_based(Sampler::TraceIdRatioBased(ratio)),
    }
}

struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(
            ShortString::from(key.to_owned()),
            AMQPValue::LongString(value.into()),
        );
    }
}

struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key) {
            Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes()).ok(),
            Some(AMQPValue::ShortString(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's `traceparent` (and `tracestate`) into AMQP headers.
pub fn inject_current_context(headers: &mut FieldTable) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace whose context the headers carry, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: Option<&FieldTable>) {
    if let Some(headers) = headers {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        span.set_parent(parent);
    }
}

/// The trace id of `span` as 32 hex digits, for logs and tests.
pub fn trace_id(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    span.context().span().span_context().trace_id().to_string()
}
