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
    self as shared, IntCounter, IntGauge, MetricsRefusal, MetricsRegistry, LATENCY_BUCKETS,
};
use socketioxide::SocketIo;

pub use http::{HttpMetrics, RecordHttpLayer, UNMATCHED};

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

/// Where an accepted send goes out.
#[derive(Debug, Clone, Copy)]
pub enum SendRoute {
    Hkt,
    Sim,
}

/// Which entry point accepted a send.
#[derive(Debug, Clone, Copy)]
pub enum SendKind {
    /// `POST /api/sms`.
    Single,
    /// `POST /api/sms/send-bulk`.
    Bulk,
    /// The web panel's compose form.
    Panel,
}

/// `smsgate_messages_accepted_total` and `smsgate_recipients_accepted_total`.
#[derive(Clone)]
pub struct SendMetrics {
    /// Indexed `[route][kind]`, resolved at start so a send costs two atomic adds.
    messages: [[IntCounter; 3]; 2],
    recipients: [[IntCounter; 3]; 2],
}

impl SendMetrics {
    /// Counts one accepted message of `recipients` recipients.
    pub fn accepted(&self, route: SendRoute, kind: SendKind, recipients: usize) {
        self.messages[route as usize][kind as usize].inc();
        self.recipients[route as usize][kind as usize].inc_by(recipients as u64);
    }
}

/// The outbox's publishes, confirmed or not, and the reconciler's work.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// Jobs the broker confirmed.
    pub jobs_confirmed: IntCounter,
    /// Jobs whose publish failed; their messages are left to the reconciler.
    pub jobs_failed: IntCounter,
    /// Messages the reconciler took over and published.
    pub reconciled_messages: IntCounter,
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
        let messages = registry.counter_vec(
            "smsgate_messages_accepted_total",
            "Messages stored and answered 202, by route (hkt, sim) and entry point (single, bulk, panel).",
            &["route", "kind"],
        );
        let recipients = registry.counter_vec(
            "smsgate_recipients_accepted_total",
            "Recipients of the accepted messages, by route and entry point.",
            &["route", "kind"],
        );
        let by_route_and_kind = |vec: &shared::IntCounterVec| {
            ["hkt", "sim"].map(|route| {
                ["single", "bulk", "panel"].map(|kind| vec.with_label_values(&[route, kind]))
            })
        };
        let [jobs_confirmed, jobs_failed] = registry.counters(
            "smsgate_outbox_jobs_total",
            "Send jobs the outbox published, by outcome: confirmed by the broker, or failed (left to the reconciler).",
            "outcome",
            ["confirmed", "failed"],
        );
        let [live_streams, live_sockets] = registry.gauges(
            "smsgate_live_connections",
            "Live status connections open now: the panel's event streams (sse) and Socket.IO sockets (socketio).",
            "kind",
            ["sse", "socketio"],
        );
        ApiMetrics {
            http,
            sends: SendMetrics {
                messages: by_route_and_kind(&messages),
                recipients: by_route_and_kind(&recipients),
            },
            outbox: OutboxMetrics {
                jobs_confirmed,
                jobs_failed,
                reconciled_messages: registry.counter(
                    "smsgate_outbox_reconciled_messages_total",
                    "Messages whose jobs the reconciler published after their publisher failed or died.",
                ),
            },
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
