//! Logging and tracing setup, and W3C trace-context propagation through AMQP headers.
//!
//! Spans are named after operations (`sms.accept`, `dispatch.job`, `hkt.submit`). Every
//! span gets an OpenTelemetry context, so the `traceparent` injected on publish and
//! extracted on consume ties a message's whole journey into one trace.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::TracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Flushes pending spans when dropped; keep it alive for the whole of `main`.
pub struct TelemetryGuard {
    provider: TracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber: `RUST_LOG` filtering (default `info`), JSON lines when
/// `LOG_FORMAT=json`, and the OpenTelemetry layer. Safe to call more than once (tests):
/// later calls keep the first subscriber.
pub fn init(service_name: &'static str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = TracerProvider::builder()
        .with_resource(opentelemetry_sdk::Resource::new([
            opentelemetry::KeyValue::new("service.name", service_name),
        ]))
        .build();
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
    TelemetryGuard { provider }
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
