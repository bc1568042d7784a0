//! The dispatcher's Prometheus metrics, served on `METRICS_BIND` (the dispatcher has no
//! other HTTP server): what it consumed, what the gateway answered and how fast, how
//! results were written, and the edge events it ingested.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use smsgate_shared::metrics::{
    self as shared, Histogram, IntCounter, MetricsRegistry, MetricsToken, LATENCY_BUCKETS,
};
use tokio_util::sync::CancellationToken;

/// What the dispatcher decided for one gateway attempt, counted when its batch commits.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Sent,
    /// Refused for good (4xx): the recipient failed after this attempt.
    PermanentFailure,
    /// Failed transiently; the job waits in a retry queue.
    Retry,
    /// Failed transiently with the schedule exhausted: the job went to the dead queue.
    Dead,
}

/// Why a job or event went to the dead queue.
#[derive(Debug, Clone, Copy)]
pub enum DeadReason {
    RetriesExhausted,
    UnparseableJob,
    UnparseableEvent,
}

/// How a webhook delivery attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum WebhookOutcome {
    Delivered,
    /// Failed; due again after the retry schedule's delay.
    Retry,
    /// Failed for good (schedule exhausted, 410 Gone, refused address, disabled webhook).
    Failed,
}

/// The kinds of edge event the modem agents publish.
#[derive(Debug, Clone, Copy)]
pub enum EdgeEventKind {
    SimSendResult,
    DeliveryReport,
    InboundSms,
    Heartbeat,
}

/// Every metric of one dispatcher. Cheap to clone; label values are resolved at start,
/// so recording is an atomic add (a few for a histogram).
#[derive(Clone)]
pub struct DispatcherMetrics {
    registry: MetricsRegistry,
    /// Deliveries taken from the HKT queue.
    pub jobs_consumed: IntCounter,
    /// Jobs whose recipient was already final (duplicates, redeliveries): acked unsent.
    pub jobs_skipped: IntCounter,
    /// Jobs whose validity ran out before their gateway request: recorded `expired`.
    pub jobs_expired: IntCounter,
    outcomes: [IntCounter; 4],
    /// By step of the retry schedule.
    retries: Vec<IntCounter>,
    dead_letters: [IntCounter; 3],
    pub hkt: HktMetrics,
    /// Results per committed batch.
    pub batch_size: Histogram,
    /// Time to commit a batch, retries while PostgreSQL is away included.
    pub batch_commit: Histogram,
    /// Time a send waited for its slot of the global rate limit.
    pub rate_limit_wait: Histogram,
    edge_events: [IntCounter; 4],
    edge_events_rejected: [IntCounter; 4],
    webhook_attempts: [IntCounter; 3],
    /// Time to POST a webhook delivery, whatever the answer.
    pub webhook_request: Histogram,
}

/// HKT request latency, by what came back.
#[derive(Clone)]
pub struct HktMetrics {
    /// `2xx`, `3xx`, `4xx`, `5xx`, then `error` (no HTTP answer: timeout, connection).
    by_answer: [Histogram; 5],
}

impl HktMetrics {
    /// Records one request that took `elapsed` and got `status` (`None`: no answer).
    pub fn answered(&self, status: Option<u16>, elapsed: Duration) {
        let index = match status {
            Some(status @ 200..=599) => usize::from(status / 100) - 2,
            _ => 4,
        };
        self.by_answer[index].observe(elapsed.as_secs_f64());
    }
}

impl DispatcherMetrics {
    /// Metrics for a dispatcher whose retry schedule has `retry_steps` steps.
    pub fn new(retry_steps: usize) -> DispatcherMetrics {
        let registry = MetricsRegistry::new();
        let retries = registry.counter_vec(
            "smsgate_dispatch_retries_scheduled_total",
            "Jobs queued for another attempt, by retry step (0 is RETRY_SCHEDULE's first delay).",
            &["step"],
        );
        DispatcherMetrics {
            jobs_consumed: registry.counter(
                "smsgate_dispatch_jobs_consumed_total",
                "Jobs taken from the HKT queue (first deliveries, retries and redeliveries).",
            ),
            jobs_skipped: registry.counter(
                "smsgate_dispatch_jobs_skipped_total",
                "Jobs acked without a send because their recipient was already final (duplicates, redeliveries, cancelled messages).",
            ),
            jobs_expired: registry.counter(
                "smsgate_dispatch_jobs_expired_total",
                "Jobs recorded expired without a send: their validity ran out before their gateway request.",
            ),
            outcomes: registry.counters(
                "smsgate_gateway_outcomes_total",
                "Gateway attempts by what was recorded: sent, permanent_failure, retry (queued for a later attempt) or dead (schedule exhausted).",
                "outcome",
                ["sent", "permanent_failure", "retry", "dead"],
            ),
            retries: (0..retry_steps)
                .map(|step| retries.with_label_values(&[&step.to_string()]))
                .collect(),
            dead_letters: registry.counters(
                "smsgate_dead_letters_total",
                "Jobs and edge events moved to the dead queue, by reason.",
                "reason",
                ["retries_exhausted", "unparseable_job", "unparseable_event"],
            ),
            hkt: HktMetrics {
                by_answer: registry.histograms(
                    "smsgate_hkt_request_duration_seconds",
                    "HKT gateway request latency, by answer: status class, or error when none came.",
                    "answer",
                    ["2xx", "3xx", "4xx", "5xx", "error"],
                    LATENCY_BUCKETS,
                ),
            },
            batch_size: registry.histogram(
                "smsgate_result_batch_size",
                "Results written per batch transaction.",
                &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
            ),
            batch_commit: registry.histogram(
                "smsgate_result_batch_commit_seconds",
                "Time to commit one result batch, retries included.",
                LATENCY_BUCKETS,
            ),
            rate_limit_wait: registry.histogram(
                "smsgate_rate_limit_wait_seconds",
                "Time a gateway request waited for its slot of the global rate limit (HKT_RATE_LIMIT).",
                LATENCY_BUCKETS,
            ),
            edge_events: registry.counters(
                "smsgate_edge_events_total",
                "Modem agent events written, by kind.",
                "kind",
                ["sim_send_result", "delivery_report", "inbound_sms", "heartbeat"],
            ),
            edge_events_rejected: registry.counters(
                "smsgate_edge_events_rejected_total",
                "Modem agent events refused, by reason: no_publisher (no user_id), wrong_publisher (not the SIM's own broker user), not_routed_here, not_pending (a send result for a recipient that is not the SIM's to report).",
                "reason",
                crate::ingest::Rejection::REASONS,
            ),
            webhook_attempts: registry.counters(
                "smsgate_webhook_attempts_total",
                "Webhook delivery attempts by how they ended: delivered, retry (due again later) or failed (for good).",
                "outcome",
                ["delivered", "retry", "failed"],
            ),
            webhook_request: registry.histogram(
                "smsgate_webhook_request_duration_seconds",
                "Time to POST one webhook delivery to its endpoint, whatever the answer.",
                LATENCY_BUCKETS,
            ),
            registry,
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].inc();
    }

    /// A retry queued in `step` of the schedule.
    pub fn retry_scheduled(&self, step: usize) {
        if let Some(counter) = self.retries.get(step) {
            counter.inc();
        }
    }

    pub fn dead_letter(&self, reason: DeadReason) {
        self.dead_letters[reason as usize].inc();
    }

    pub fn edge_event(&self, kind: EdgeEventKind) {
        self.edge_events[kind as usize].inc();
    }

    pub fn edge_event_rejected(&self, rejection: &crate::ingest::Rejection) {
        self.edge_events_rejected[rejection.index()].inc();
    }

    pub fn webhook_attempt(&self, outcome: WebhookOutcome) {
        self.webhook_attempts[outcome as usize].inc();
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}

/// Binds `bind` and serves `GET /metrics` there until `shutdown`, to scrapes that bear
/// `token` when one is set. Returns the bound address (port 0 picks one). A bind failure
/// is an error naming METRICS_BIND: two dispatchers on one host need a port each.
pub async fn serve(
    bind: SocketAddr,
    metrics: DispatcherMetrics,
    token: Option<MetricsToken>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("METRICS_BIND: cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| async move {
            let presented = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match token.as_ref().map(|t| t.check(presented)) {
                Some(Err(refusal)) => (
                    StatusCode::UNAUTHORIZED,
                    [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                    refusal.to_string(),
                ),
                None | Some(Ok(())) => (
                    StatusCode::OK,
                    [(CONTENT_TYPE, shared::CONTENT_TYPE)],
                    metrics.render(),
                ),
            }
        }),
    );
    let server = tokio::spawn(async move {
        let stopped = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(%addr, "metrics listening");
    Ok((addr, server))
}
