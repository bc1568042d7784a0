//! Live status: each API instance binds its own exclusive, auto-delete queue to the events
//! exchange (`status.*`) and fans what arrives out to the browsers watching, through a
//! broadcast channel. Also reads the dispatch queue's depth for the dashboard.
//!
//! Events are a live view, not a record: they are consumed without acks, and a lost one is
//! corrected by the next (they carry absolute counters) or by the snapshot a page takes
//! when it (re)connects.

pub mod repo;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use smsgate_shared::metrics::IntGauge;
use smsgate_shared::queue::{routing, Broker, Names, StatusEvent};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use watch::{snapshot, watch, Progress, RecipientState};

/// Events buffered per watcher; one that falls further behind gets a fresh snapshot.
const BUFFER: usize = 1024;
/// Longest wait between reconnection attempts while the broker is away.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The fan-out point for status events. Cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Arc<StatusEvent>>,
    closed: CancellationToken,
    /// Event streams open now (`smsgate_live_connections{kind="sse"}`).
    streams: IntGauge,
}

/// One open event stream, counted while it lives.
pub struct OpenStream(IntGauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl LiveHub {
    /// A hub whose watchers all end when `closed` is cancelled (server shutdown: an open
    /// event stream would otherwise hold graceful shutdown forever). `streams` counts the
    /// streams open.
    pub fn new(closed: CancellationToken, streams: IntGauge) -> LiveHub {
        let (sender, _) = broadcast::channel(BUFFER);
        LiveHub {
            sender,
            closed,
            streams,
        }
    }

    /// Counts one open stream until the returned guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.streams.inc();
        OpenStream(self.streams.clone())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StatusEvent>> {
        self.sender.subscribe()
    }

    /// Cancelled when the server shuts down.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Hands an event to every watcher (the consumer calls this; tests may too).
    pub fn publish(&self, event: StatusEvent) {
        // No watcher is not an error: nobody has a detail page open.
        let _ = self.sender.send(Arc::new(event));
    }

    /// Consumes the events exchange until shutdown, reconnecting with backoff.
    pub fn spawn_consumer(&self, broker: Broker, names: Names) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let session = hub.consume(&broker, &names);
                tokio::select! {
                    _ = hub.closed.cancelled() => return,
                    result = session => match result {
                        Ok(()) => debug!("event stream ended; reconnecting"),
                        Err(e) => warn!(error = %e, "live events unavailable; retrying in {backoff:?}"),
                    },
                }
                tokio::select! {
                    _ = hub.closed.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        })
    }

    async fn consume(&self, broker: &Broker, names: &Names) -> anyhow::Result<()> {
        let channel = broker.channel().await?;
        // Same declaration as the topology's, so it is a no-op when the exchange exists and
        // lets the API watch even if it started while the broker was down.
        channel
            .exchange_declare(
                &names.events_exchange(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        // Server-named, exclusive and auto-delete: one queue per API instance that
        // disappears with its connection, so no instance ever steals another's events.
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().as_str(),
                &names.events_exchange(),
                routing::ALL_STATUS,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.name().as_str(),
                "smsgate-api-live",
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        info!(queue = %queue.name(), "watching status events");
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            match StatusEvent::from_json(&delivery.data) {
                Ok(event) => self.publish(event),
                Err(e) => debug!(error = %e, "ignoring an event this version does not know"),
            }
        }
        Ok(())
    }
}

/// Jobs waiting in the HKT dispatch queue, by a passive declare (which never creates the
/// queue). `None` when the broker cannot say within two seconds.
pub async fn hkt_queue_depth(broker: &Broker, names: &Names) -> Option<u32> {
    let read = async {
        let channel = broker.channel().await.ok()?;
        let queue = channel
            .queue_declare(
                &names.hkt_queue(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok();
        let _ = channel.close(200, "depth read").await;
        queue.map(|q| q.message_count())
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()
        .flatten()
}
