//! The OTLP span exporter: protobuf over HTTP, sent with reqwest (rustls), batched on the
//! tokio runtime. Behind the `otlp` cargo feature, which the modem agent leaves off.
//!
//! HTTP rather than gRPC: every collector (OpenTelemetry Collector, Jaeger, Tempo) takes
//! OTLP/HTTP on 4318, and reqwest is already the dispatcher's client, where tonic would
//! add a gRPC and HTTP/2 stack for one background request every few seconds.

use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};

use super::TelemetryError;

/// Longest one export may take, connection included. The exporter crate does not apply its
/// own timeout to HTTP, so the client carries it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A batch processor exporting to `endpoint` (the full `…/v1/traces` URL).
///
/// A collector that is down or slow never holds up a request: a finished span is handed
/// to the processor with a non-blocking send into a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`,
/// 2,048 spans by default) and dropped when the queue is full; the export runs in a task
/// of its own, one batch at a time, and gives up after [`EXPORT_TIMEOUT`].
/// The other `OTEL_BSP_*` variables (batch size, delay, default 5 s) tune it as usual.
pub(super) fn batch_processor(
    endpoint: &str,
) -> Result<BatchSpanProcessor<runtime::Tokio>, TelemetryError> {
    let http = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(Box::new(e)))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter(Box::new(e)))?;
    let config = BatchConfigBuilder::default()
        .with_max_export_timeout(EXPORT_TIMEOUT)
        .build();
    Ok(BatchSpanProcessor::builder(exporter, runtime::Tokio)
        .with_batch_config(config)
        .build())
}
