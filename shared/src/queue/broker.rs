//! A reconnecting handle on the broker and a publisher that pipelines confirms.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::try_join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// Why a broker operation did not complete. Callers treat every variant as "not published".
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("could not connect to the broker within {0:?}")]
    ConnectTimeout(Duration),
    #[error("broker protocol error")]
    Protocol(#[from] lapin::Error),
    #[error("the broker refused {0} message(s) (negative confirm)")]
    Nacked(usize),
}

/// One message to publish; the exchange is given per batch.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub headers: FieldTable,
}

/// A shared, lazily (re)connecting broker connection with a small pool of confirm-mode
/// channels. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<BrokerInner>,
}

struct BrokerInner {
    url: String,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    confirm_channels: Mutex<Vec<Channel>>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest AMQP frame a connection negotiates unless its URL says otherwise. lapin keeps a
/// receive and a send buffer of 32 frames each, resident from the start: at RabbitMQ's
/// default 128 KiB frames that is 8 MB per process (`pmap`: two 4 MiB regions), the whole
/// idle budget of a Pi's modem agent and a third of the dispatcher's. Jobs are under 1 KiB
/// and a batch's status event some tens of KiB, which simply takes a few frames.
/// `make bench`: API idle RSS 25.0 -> 16.8 MB, end to end and single sends unchanged.
pub const DEFAULT_FRAME_MAX: u32 = 16_384;
/// Messages published on one channel before awaiting their confirms. Large enough to keep
/// the pipe full, small enough that a failure re-publishes little.
const CONFIRM_WINDOW: usize = 2_000;
/// Channels used in parallel for one large batch: the broker confirms per channel, so a
/// few channels overlap their round trips.
const PUBLISH_CHANNELS: usize = 4;

impl Broker {
    /// A handle on the broker at `url` (not connected until first used), asking for
    /// [`DEFAULT_FRAME_MAX`] frames unless the URL sets `frame_max` itself.
    pub fn new(url: &str) -> Broker {
        Broker {
            inner: Arc::new(BrokerInner {
                url: with_frame_max(url, DEFAULT_FRAME_MAX),
                connection: tokio::sync::Mutex::new(None),
                confirm_channels: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The current connection, reconnecting if it was lost.
    pub async fn connection(&self) -> Result<Arc<Connection>, BrokerError> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.status().connected() {
                return Ok(conn.clone());
            }
        }
        self.inner
            .confirm_channels
            .lock()
            .expect("pool lock")
            .clear();
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio)
            .with_connection_name("smsgate".into());
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(&self.inner.url, properties),
        )
        .await
        .map_err(|_| BrokerError::ConnectTimeout(CONNECT_TIMEOUT))??;
        let conn = Arc::new(conn);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// True when a connection exists and is open (does not try to connect).
    pub async fn is_connected(&self) -> bool {
        self.inner
            .connection
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| c.status().connected())
    }

    /// A new plain channel on the current connection.
    pub async fn channel(&self) -> Result<Channel, BrokerError> {
        Ok(self.connection().await?.create_channel().await?)
    }

    /// Closes the connection, if any. Unacked deliveries on it return to their queues.
    pub async fn close(&self) {
        self.inner
            .confirm_channels
            .lock()
            .expect("pool lock")
            .clear();
        if let Some(conn) = self.inner.connection.lock().await.take() {
            let _ = conn.close(200, "closing").await;
        }
    }

    async fn take_confirm_channel(&self) -> Result<Channel, BrokerError> {
        let pooled = self.inner.confirm_channels.lock().expect("pool lock").pop();
        if let Some(channel) = pooled.filter(|c| c.status().connected()) {
            return Ok(channel);
        }
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    fn return_confirm_channel(&self, channel: Channel) {
        if channel.status().connected() {
            self.inner
                .confirm_channels
                .lock()
                .expect("pool lock")
                .push(channel);
        }
    }

    /// A publisher for `exchange` that returns only once the broker confirmed every message.
    pub fn publisher(&self, exchange: String) -> ConfirmedPublisher {
        ConfirmedPublisher {
            broker: self.clone(),
            exchange,
        }
    }
}

/// `url` with `frame_max` set to `frame_max` when it does not choose one itself.
fn with_frame_max(url: &str, frame_max: u32) -> String {
    if url.contains("frame_max=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}frame_max={frame_max}")
}

/// Publishes persistent messages to one exchange and awaits the broker's confirms,
/// pipelined: a window of messages goes out before any confirm is awaited, over a few
/// channels at once.
#[derive(Clone)]
pub struct ConfirmedPublisher {
    broker: Broker,
    exchange: String,
}

impl ConfirmedPublisher {
    /// Publishes every message; `Ok` means all were confirmed (persisted by the broker).
    /// On `Err` some may have been published: callers rely on consumers being idempotent.
    pub async fn publish_all(&self, messages: Vec<OutgoingMessage>) -> Result<(), BrokerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let per_channel = messages
            .len()
            .div_ceil(PUBLISH_CHANNELS)
            .max(CONFIRM_WINDOW);
        let mut chunks = Vec::new();
        let mut rest = messages;
        while rest.len() > per_channel {
            let tail = rest.split_off(per_channel);
            chunks.push(rest);
            rest = tail;
        }
        chunks.push(rest);
        try_join_all(
            chunks
                .into_iter()
                .map(|chunk| self.publish_on_one_channel(chunk)),
        )
        .await?;
        Ok(())
    }

    async fn publish_on_one_channel(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), BrokerError> {
        let channel = self.broker.take_confirm_channel().await?;
        for window in messages.chunks(CONFIRM_WINDOW) {
            // lapin's publish future resolves once its I/O thread has written the frames.
            // Awaiting them one by one was a wake-up of that thread and back per message (a
            // quarter of the API's CPU under single-send load, perf); polled together they
            // are queued in order on the first poll and written in one go.
            let confirms = try_join_all(window.iter().map(|message| {
                let properties = BasicProperties::default()
                    .with_delivery_mode(2) // persistent: survives a broker restart
                    .with_content_type("application/json".into())
                    .with_headers(message.headers.clone());
                channel.basic_publish(
                    &self.exchange,
                    &message.routing_key,
                    BasicPublishOptions::default(),
                    &message.payload,
                    properties,
                )
            }))
            .await?;
            let mut nacked = 0;
            for confirm in confirms {
                if let Confirmation::Nack(_) = confirm.await? {
                    nacked += 1;
                }
            }
            if nacked > 0 {
                return Err(BrokerError::Nacked(nacked));
            }
        }
        self.broker.return_confirm_channel(channel);
        Ok(())
    }

    /// Publishes one message and awaits its confirm.
    pub async fn publish_one(&self, message: OutgoingMessage) -> Result<(), BrokerError> {
        self.publish_on_one_channel(vec![message]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_ask_for_small_frames_unless_the_url_chooses() {
        assert_eq!(
            with_frame_max("amqp://guest:guest@host:5672/%2f", 16_384),
            "amqp://guest:guest@host:5672/%2f?frame_max=16384"
        );
        assert_eq!(
            with_frame_max("amqps://h/%2f?heartbeat=30", 16_384),
            "amqps://h/%2f?heartbeat=30&frame_max=16384"
        );
        assert_eq!(
            with_frame_max("amqp://h/%2f?frame_max=4096", 16_384),
            "amqp://h/%2f?frame_max=4096"
        );
    }
}
