//! The dispatcher: consumes HKT jobs, calls the gateway, retries on a schedule and writes
//! results in batches. Run any number of them; they compete for the same queue.

pub mod acks;
mod consumer;
mod gate;
pub mod hkt;
pub mod ingest;
pub mod job;
pub mod metrics;
pub mod rate_limit;
mod repo;
pub mod retry;
pub mod settings;
pub mod webhooks;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use smsgate_shared::queue::{declare_central, Broker, Names, TopologyError};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::gate::SendGate;
use crate::hkt::HktClient;
use crate::metrics::DispatcherMetrics;
use crate::rate_limit::{GlobalRateLimiter, HKT_LIMIT};
use crate::retry::RetryPolicy;
use crate::settings::Settings;

/// Connections of the webhook delivery loop: claims and records are short statements, a
/// few at a time.
const WEBHOOK_DB_CONNECTIONS: u32 = 2;

/// Everything the consumer and the writer share.
pub(crate) struct Context {
    settings: Settings,
    db: PgPool,
    broker: Broker,
    names: Names,
    hkt: HktClient,
    /// The rate limit's slot and the last look before each request.
    gate: SendGate,
    retry_policy: RetryPolicy,
    concurrency: Arc<Semaphore>,
    metrics: DispatcherMetrics,
}

/// A running dispatcher.
pub struct RunningDispatcher {
    /// Where `GET /metrics` answers, if METRICS_BIND is not `off`.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    kill: CancellationToken,
    broker: Broker,
    consumer: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    /// One per broker session; each writes its last acks once the writer is done.
    ack_tasks: TaskTracker,
    /// Edge events from the modem agents (issue #4).
    ingest: tokio::task::JoinHandle<()>,
    /// Webhook deliveries.
    webhooks: tokio::task::JoinHandle<()>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
}

impl RunningDispatcher {
    /// Graceful stop (SIGTERM): stop consuming, finish in-flight sends, flush, ack, close.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.consumer.await;
        let _ = self.writer.await;
        self.ack_tasks.close();
        self.ack_tasks.wait().await;
        let _ = self.ingest.await;
        let _ = self.webhooks.await;
        if let Some(server) = self.metrics_server {
            let _ = server.await;
        }
        self.broker.close().await;
    }

    /// A crash, for tests: drop the connection at once; results not yet committed are
    /// lost and their jobs return to the queue unacked.
    pub async fn kill(self) {
        self.kill.cancel();
        self.broker.close().await;
        self.consumer.abort();
        self.writer.abort();
        self.ingest.abort();
        let _ = self.webhooks.await; // abandons its attempts on `kill`, unrecorded
        if let Some(server) = self.metrics_server {
            server.abort();
        }
    }

    /// Resolves when the dispatcher has stopped by itself (it only does on `stop`).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Connects and starts consuming. Fails only on bad configuration or an unreachable
/// database; an unreachable broker is retried in the background.
pub async fn start(settings: Settings) -> anyhow::Result<RunningDispatcher> {
    let db = PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        // No ping round trip per acquire (sqlx's default); a broken connection fails its
        // query, the batch is retried and the connection replaced.
        .test_before_acquire(false)
        .connect(&settings.database_url)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    let broker = Broker::new(&settings.queue.amqp_url);
    // A queue setting changed since the queues were declared (QUORUM_QUEUES, ...) fails
    // the start with one line saying what to do, instead of consumers that warn forever.
    // An unreachable broker is not an error: the consumers retry in the background.
    if let Ok(channel) = broker.channel().await {
        match declare_central(&channel, &settings.queue).await {
            Err(e @ TopologyError::Mismatch(_)) => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, "declaring the queue topology failed; retrying in the background")
            }
            Ok(()) => {}
        }
        let _ = channel.close(200, "declared").await;
    }
    let metrics = DispatcherMetrics::new(settings.queue.retry_schedule.len());
    let client = HktClient::new(
        settings.hkt.clone(),
        settings.concurrency,
        metrics.hkt.clone(),
    )
    .context("building the HTTP client")?;
    let webhook_client = webhooks::WebhookClient::new(
        settings.webhooks.timeout,
        settings.webhooks.allow_internal_targets,
    )
    .context("building the webhook HTTP client")?;
    let limiter = settings.hkt_rate_limit.map(|rate| {
        GlobalRateLimiter::new(db.clone(), HKT_LIMIT, rate, metrics.rate_limit_wait.clone())
    });
    let shutdown = CancellationToken::new();
    let (metrics_addr, metrics_server) = match settings.metrics_bind {
        Some(bind) => {
            let (addr, server) = metrics::serve(
                bind,
                metrics.clone(),
                settings.metrics_token.clone(),
                shutdown.clone(),
            )
            .await?;
            (Some(addr), Some(server))
        }
        None => (None, None),
    };
    let gate = SendGate::new(db.clone(), limiter);
    let ctx = Arc::new(Context {
        names: Names::new(&settings.queue.prefix),
        retry_policy: RetryPolicy::new(settings.queue.retry_schedule.clone()),
        concurrency: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        metrics,
        settings,
        db,
        broker: broker.clone(),
        hkt: client,
        gate,
    });
    let kill = CancellationToken::new();
    let (results, receiver) = mpsc::unbounded_channel();
    let writer = tokio::spawn(writer::run(ctx.clone(), receiver, kill.clone()));
    let ingest = tokio::spawn(ingest::run(ctx.clone(), shutdown.clone(), kill.clone()));
    // Deliveries get a small pool of their own: slow endpoints must not hold the result
    // writer's connections, nor the writer's batches delay recording deliveries.
    let webhook_db = PgPoolOptions::new()
        .max_connections(WEBHOOK_DB_CONNECTIONS)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .test_before_acquire(false)
        .connect_lazy(&ctx.settings.database_url)
        .context("DATABASE_URL is not a valid URL")?;
    let webhooks = tokio::spawn(webhooks::deliver::run(
        webhook_db,
        webhook_client,
        ctx.settings.webhooks.clone(),
        ctx.metrics.clone(),
        shutdown.clone(),
        kill.clone(),
    ));
    let ack_tasks = TaskTracker::new();
    let consumer = tokio::spawn(consumer::run(
        ctx,
        results,
        ack_tasks.clone(),
        shutdown.clone(),
        kill.clone(),
    ));
    Ok(RunningDispatcher {
        metrics_addr,
        metrics_server,
        shutdown,
        kill,
        broker,
        consumer,
        writer,
        ack_tasks,
        ingest,
        webhooks,
    })
}
