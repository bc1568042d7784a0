//! The transactional outbox: publishes the jobs of committed messages and marks each
//! message once the broker confirmed all of them; a reconciler republishes the pending
//! recipients of messages left unmarked (process crash, broker outage).
//!
//! Per message, not per recipient: a message is in the outbox (`message_outbox`) until all
//! its jobs are confirmed, and the row's lease says who is publishing them, so neither the
//! happy path nor the reconciler writes a row per recipient.

mod lane;
mod metrics;
mod repo;

pub use metrics::OutboxMetrics;

/// For writers that put a message back in the outbox inside their own transaction.
pub use repo::hold as hold_in_outbox;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smsgate_shared::config::QueueSettings;
use smsgate_shared::domain::MessageBody;
use smsgate_shared::queue::{
    declare_sim_queue, declare_topology, job_headers, routing, Broker, BrokerError,
    ConfirmedPublisher, Names, OutboundJob, OutgoingMessage,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

/// Cheap to clone; all clones share the task tracker and topology flag.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    broker: Broker,
    publisher: ConfirmedPublisher,
    queue: QueueSettings,
    lease: Duration,
    tasks: TaskTracker,
    /// Cleared after any publish failure, so the next attempt re-declares the topology
    /// (the broker may have come back empty).
    topology_ready: AtomicBool,
    /// Where single sends queue for a shared publish; taken (closed) by `drain`.
    lane: Mutex<Option<lane::LaneSender>>,
    metrics: OutboxMetrics,
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("broker")]
    Broker(#[from] BrokerError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Messages the reconciler claims per round; each one's pending recipients are published.
const RECONCILE_BATCH: i64 = 20;

impl Outbox {
    /// Must be called inside the tokio runtime: it starts the small-message lane.
    pub fn new(
        db: PgPool,
        broker: Broker,
        queue: QueueSettings,
        lease: Duration,
        metrics: OutboxMetrics,
    ) -> Outbox {
        let publisher = broker.publisher(Names::new(&queue.prefix).outbound_exchange());
        let (lane_sender, lane_receiver) = tokio::sync::mpsc::unbounded_channel();
        let outbox = Outbox {
            inner: Arc::new(Inner {
                db,
                broker,
                publisher,
                queue,
                lease,
                tasks: TaskTracker::new(),
                topology_ready: AtomicBool::new(false),
                lane: Mutex::new(Some(lane_sender)),
                metrics,
            }),
        };
        outbox
            .inner
            .tasks
            .spawn(lane::run(outbox.clone(), lane_receiver));
        outbox
    }

    /// How long a publisher owns a message before the reconciler may take it over.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// Publishes the jobs of a message that was just committed, off the request path.
    /// A failure only logs: the recipients are durable and the reconciler retries.
    pub fn publish_in_background(&self, message_id: i64, jobs: Vec<OutboundJob>) {
        self.publish_routed_in_background(message_id, routing::HKT.to_owned(), jobs)
    }

    /// As [`Outbox::publish_in_background`], for a message whose `route` is not `hkt`
    /// (`sim.<id>`: that SIM's queue).
    pub fn publish_routed_in_background(
        &self,
        message_id: i64,
        route: String,
        jobs: Vec<OutboundJob>,
    ) {
        if jobs.len() <= lane::MAX_JOBS {
            let messages = outgoing(&route, &jobs);
            let queued = lane::Queued {
                message_id,
                route,
                messages,
            };
            if let Some(sender) = self.inner.lane.lock().expect("lane lock").as_ref() {
                // A closed lane (shutting down) drops it: the lease runs out and the
                // reconciler publishes it.
                let _ = sender.send(queued);
            }
            return;
        }
        let outbox = self.clone();
        let span = info_span!("outbox.publish", message.id = message_id, jobs = jobs.len());
        self.inner.tasks.spawn(
            async move {
                if let Err(e) = outbox.publish_and_mark(message_id, &route, jobs).await {
                    warn!(error = %e, cause = ?std::error::Error::source(&e), "publishing failed; the reconciler will retry");
                    outbox.release_lease(message_id).await;
                }
            }
            .instrument(span),
        );
    }

    /// Publishes the jobs of a message that was just committed, reading its recipients back,
    /// off the request path. A failure only logs: the recipients are durable and the
    /// reconciler retries.
    pub fn publish_stored_in_background(&self, message_id: i64, route: String, body: MessageBody) {
        let outbox = self.clone();
        let span = info_span!("outbox.publish", message.id = message_id);
        self.inner.tasks.spawn(
            async move {
                if let Err(e) = outbox.publish_pending(message_id, &route, Some(body)).await {
                    warn!(error = %e, cause = ?std::error::Error::source(&e), "publishing failed; the reconciler will retry");
                    outbox.release_lease(message_id).await;
                }
            }
            .instrument(span),
        );
    }

    /// Publishes a job for every recipient of the message still pending, then takes the
    /// message out of the outbox. `body` is `None` only for a stored body that no longer
    /// parses, which publishes nothing and ends the message's outbox entry.
    async fn publish_pending(
        &self,
        message_id: i64,
        route: &str,
        body: Option<MessageBody>,
    ) -> Result<(), PublishError> {
        let pending = repo::pending_recipients(&self.inner.db, message_id).await?;
        let jobs = body
            .map(|body| OutboundJob::sends_of(message_id, &body, None, pending))
            .unwrap_or_default();
        info!(jobs = jobs.len(), "publishing pending recipients");
        self.publish_and_mark(message_id, route, jobs).await
    }

    async fn publish_and_mark(
        &self,
        message_id: i64,
        route: &str,
        jobs: Vec<OutboundJob>,
    ) -> Result<(), PublishError> {
        self.ensure_topology().await?;
        self.ensure_route(route).await?;
        self.publish_messages(outgoing(route, &jobs)).await?;
        repo::mark_enqueued(&self.inner.db, &[message_id]).await?;
        Ok(())
    }

    /// Publishes with confirms; a failure makes the next publish re-declare the topology.
    async fn publish_messages(&self, messages: Vec<OutgoingMessage>) -> Result<(), BrokerError> {
        let jobs = messages.len() as u64;
        let result = self.inner.publisher.publish_all(messages).await;
        if result.is_ok() {
            self.inner.metrics.jobs_confirmed.inc_by(jobs);
        } else {
            self.inner.metrics.jobs_failed.inc_by(jobs);
            self.inner.topology_ready.store(false, Ordering::Relaxed);
        }
        result
    }

    async fn ensure_topology(&self) -> Result<(), BrokerError> {
        if !self.inner.topology_ready.load(Ordering::Relaxed) {
            let channel = self.inner.broker.channel().await?;
            declare_topology(&channel, &self.inner.queue).await?;
            let _ = channel.close(200, "topology declared").await;
            self.inner.topology_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Declares a SIM's queue before jobs are published to it: a job routed to a queue that
    /// does not exist would be confirmed by the broker and dropped.
    async fn ensure_route(&self, route: &str) -> Result<(), BrokerError> {
        let Some(sim_id) = route.strip_prefix("sim.").and_then(|id| id.parse().ok()) else {
            return Ok(());
        };
        let channel = self.inner.broker.channel().await?;
        if let Err(e) = declare_sim_queue(&channel, &self.inner.queue, sim_id).await {
            self.inner.topology_ready.store(false, Ordering::Relaxed);
            return Err(e.into());
        }
        let _ = channel.close(200, "SIM queue declared").await;
        Ok(())
    }

    /// Gives the message back to the reconciler at once instead of after the lease.
    async fn release_lease(&self, message_id: i64) {
        if let Err(e) = repo::release_lease(&self.inner.db, message_id).await {
            warn!(error = %e, message.id = message_id, "could not release the publish lease");
        }
    }

    /// One reconciler round: claims unmarked messages whose lease ran out and republishes
    /// their still-pending recipients. Returns how many messages it marked.
    pub async fn reconcile_once(&self) -> Result<usize, sqlx::Error> {
        let claimed = repo::claim_unenqueued(
            &self.inner.db,
            RECONCILE_BATCH,
            self.inner.lease.as_secs_f64(),
        )
        .await?;
        let mut marked = 0;
        for message in claimed {
            let span = info_span!("outbox.reconcile", message.id = message.id);
            let body = MessageBody::parse(&message.content, u32::MAX).ok();
            let result = self
                .publish_pending(message.id, &message.route, body)
                .instrument(span)
                .await;
            match result {
                Ok(()) => {
                    marked += 1;
                    self.inner.metrics.reconciled_messages.inc();
                }
                Err(PublishError::Database(e)) => return Err(e),
                Err(PublishError::Broker(e)) => {
                    warn!(error = %e, message.id = message.id, "reconciler could not publish; will retry");
                    self.release_lease(message.id).await;
                    break; // the broker is down: the rest would fail the same way
                }
            }
        }
        Ok(marked)
    }

    /// Runs `reconcile_once` every `interval` until `shutdown` is cancelled.
    pub fn spawn_reconciler(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {
                        if let Err(e) = outbox.reconcile_once().await {
                            warn!(error = %e, "reconciler round failed");
                        }
                    }
                }
            }
        })
    }

    /// Waits (up to `grace`) for background publishes to finish, for a clean shutdown.
    pub async fn drain(&self, grace: Duration) {
        // Closing the lane lets its task publish what it holds and end.
        self.inner.lane.lock().expect("lane lock").take();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            warn!("shutting down with publishes in flight; the reconciler will finish them");
        }
    }
}

/// The persistent messages for `jobs`, first attempt, carrying the current span's trace.
fn outgoing(route: &str, jobs: &[OutboundJob]) -> Vec<OutgoingMessage> {
    jobs.iter()
        .map(|job| OutgoingMessage {
            routing_key: route.to_owned(),
            payload: job.to_json(),
            headers: job_headers(1),
        })
        .collect()
}
