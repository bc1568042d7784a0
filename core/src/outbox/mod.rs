//! The outbox, now a release queue: every committed recipient reaches the broker, at the
//! pace the gateways can take and in the order traffic control asks for.
//!
//! Accepting a send writes the message, its recipients and a `message_outbox` row in one
//! transaction and wakes the releaser; nothing is published on the request path. One
//! process per database is the releaser (an advisory lock elects it; any API instance can
//! be it, and another takes over within a second when it dies). Each round it:
//! 1. marks scheduled messages whose time came `pending`;
//! 2. expires the unreleased recipients of messages whose validity ran out;
//! 3. measures the room on each route (how far the queue is below its target depth: about
//!    half a second of the gateway's rate for HKT, a few jobs for a SIM);
//! 4. fills that room by priority and fair share ([`plan`]), places SIM jobs on SIMs
//!    within their carrier caps ([`pool`]), publishes the jobs with confirms, and then
//!    records how far each message got.
//!
//! Once a second it also empties the queues of SIMs gone offline back into the release
//! queue, and moves SIM work that may fall back to HKT there when no SIM can take it.
//!
//! So the broker holds only a short window of work: an OTP sent behind a 100,000-recipient
//! campaign waits for that window, not for the campaign, and a cancel or expiry reaches
//! everything not yet in it. A releaser that dies between publishing and recording leaves
//! the row as it was, and the next one publishes those recipients again: duplicates the
//! dispatchers skip once a result is recorded (at-least-once, as before).

mod metrics;
pub mod plan;
pub mod pool;
mod pool_repo;
mod release;
mod repo;

pub use metrics::OutboxMetrics;
pub use release::{ReleaseSettings, DEFAULT_SIM_OFFLINE_AFTER};

/// For writers that put a message back in the release queue inside their own transaction.
pub use repo::hold as hold_in_outbox;

use std::sync::Arc;

use smsgate_shared::config::QueueSettings;
use smsgate_shared::queue::Broker;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Cheap to clone; all clones wake the same releaser.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    broker: Broker,
    queue: QueueSettings,
    settings: ReleaseSettings,
    metrics: OutboxMetrics,
    /// Rung when this process committed new work, so that its releaser (if it is the one)
    /// does not wait for its next tick.
    wake: Notify,
}

impl Outbox {
    pub fn new(
        db: PgPool,
        broker: Broker,
        queue: QueueSettings,
        settings: ReleaseSettings,
        metrics: OutboxMetrics,
    ) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                db,
                broker,
                queue,
                settings,
                metrics,
                wake: Notify::new(),
            }),
        }
    }

    /// New work was committed: release it now rather than at the next tick.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Publishes status events of changes committed outside the releaser (a cancel).
    pub async fn announce(&self, changed: &[crate::progress::MessageTally]) {
        let events = self.inner.broker.publisher(
            smsgate_shared::queue::Names::new(&self.inner.queue.prefix).events_exchange(),
        );
        crate::progress::publish_events(&events, changed).await;
    }

    /// How the releaser paces itself.
    pub fn settings(&self) -> &ReleaseSettings {
        &self.inner.settings
    }

    /// Runs the releaser (standing by while another process holds the lead) until
    /// `shutdown` is cancelled.
    pub fn spawn_releaser(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(release::run(self.clone(), shutdown))
    }
}
