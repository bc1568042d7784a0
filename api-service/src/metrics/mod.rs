//! The API's Prometheus metrics and `GET /metrics`.
//!
//! Aggregate counters only: no label carries a user, a message, a number or a raw path,
//! so the page shows nobody's data. Operators who still want it private set
//! `METRICS_TOKEN`, and the bundled nginx does not expose it.

mod http;

use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequestParts, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use smsgate_shared::metrics::{
    self as shared, IntGauge, MetricsRefusal, MetricsRegistry, LATENCY_BUCKETS,
};
use socketioxide::SocketIo;

pub use http::{HttpMetrics, RecordHttpLayer, UNMATCHED};

pub use smsgate_core::outbox::OutboxMetrics;
pub use smsgate_core::sms::{SendKind, SendMetrics, SendRoute};

use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::state::AppState;

/// Every metric of one API process. Cheap to clone.
#[derive(Clone)]
pub struct ApiMetrics {
    registry: MetricsRegistry,
    pub http: HttpMetrics,
    pub sends: SendMetrics,
    pub outbox: OutboxMetrics,
    /// Server-sent-event streams of the panel's live pages, open now.
    pub live_streams: IntGauge,
    live_sockets: IntGauge,
    /// Set once the Socket.IO server exists; its sockets are counted when scraped.
    sockets: Arc<OnceLock<SocketIo>>,
}

impl ApiMetrics {
    pub fn new() -> ApiMetrics {
        let registry = MetricsRegistry::new();
        let http = HttpMetrics::new(
            registry.counter_vec(
                "smsgate_http_requests_total",
                "HTTP requests answered, by method, route template and status class.",
                &["method", "route", "status"],
            ),
            registry.histogram_vec(
                "smsgate_http_request_duration_seconds",
                "Time from receiving a request to its response head, by method and route template.",
                &["method", "route"],
                LATENCY_BUCKETS,
            ),
        );
        let [live_streams, live_sockets] = registry.gauges(
            "smsgate_live_connections",
            "Live status connections open now: the panel's event streams (sse) and Socket.IO sockets (socketio).",
            "kind",
            ["sse", "socketio"],
        );
        ApiMetrics {
            http,
            sends: SendMetrics::register(&registry),
            outbox: OutboxMetrics::register(&registry),
            live_streams,
            live_sockets,
            sockets: Arc::default(),
            registry,
        }
    }

    /// Counts the sockets of `io` at every scrape.
    pub fn count_sockets(&self, io: SocketIo) {
        let _ = self.sockets.set(io);
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        if let Some(io) = self.sockets.get() {
            self.live_sockets.set(io.sockets().len() as i64);
        }
        self.registry.render()
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics::new()
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render_metrics))
}

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    <Api as utoipa::OpenApi>::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(render_metrics))]
struct Api;

/// Prometheus metrics. Public unless `METRICS_TOKEN` is set; then only with
/// `Authorization: Bearer <METRICS_TOKEN>` (not a user's token).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "`UNAUTHORIZED`, `INVALID_TOKEN`: `METRICS_TOKEN` is set and was not sent", body = crate::error::ErrorBody),
    ),
)]
async fn render_metrics(State(app): State<AppState>, _: MetricsReader) -> impl IntoResponse {
    ([(CONTENT_TYPE, shared::CONTENT_TYPE)], app.metrics.render())
}

/// A caller allowed to read the metrics: anyone, unless `METRICS_TOKEN` is set; then only
/// a request with `Authorization: Bearer <that token>`.
struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(token) = &app.settings.metrics_token else {
            return Ok(MetricsReader);
        };
        match token.check(bearer_token(parts)) {
            Ok(()) => Ok(MetricsReader),
            Err(MetricsRefusal::Missing) => Err(ApiError::Unauthorized {
                code: "UNAUTHORIZED",
                message: "Authentication required: send `Authorization: Bearer <METRICS_TOKEN>`",
            }),
            Err(MetricsRefusal::Wrong) => Err(ApiError::Unauthorized {
                code: "INVALID_TOKEN",
                message: "The metrics token is not valid",
            }),
        }
    }
}
