//! A reconnecting handle on the broker and a publisher that pipelines confirms.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
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
    /// The pool of confirm channels failed for a reason of its own (never expected: it has
    /// no timeouts and is never closed).
    #[error("confirm channel pool: {0}")]
    ChannelPool(String),
}

/// One message to publish; the exchange is given per batch.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub headers: FieldTable,
}

/// A shared, lazily (re)connecting broker connection with a pool of confirm-mode
/// channels. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    link: Arc<Link>,
    confirm_channels: ConfirmChannels,
}

/// The connection, opened on first use and again after it is lost.
struct Link {
    url: String,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

type ConfirmChannels = managed::Pool<ConfirmChannelManager>;

/// Opens channels in confirm mode on the current connection, and hands a pooled one out
/// again only while it is still open: channels of a lost connection are dropped at their
/// next checkout, so a reconnect needs no bookkeeping.
struct ConfirmChannelManager {
    link: Arc<Link>,
}

impl managed::Manager for ConfirmChannelManager {
    type Type = Channel;
    type Error = BrokerError;

    async fn create(&self) -> Result<Channel, BrokerError> {
        let channel = self.link.connect().await?.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    async fn recycle(&self, channel: &mut Channel, _: &Metrics) -> RecycleResult<BrokerError> {
        if channel.status().connected() {
            Ok(())
        } else {
            Err(RecycleError::message("channel closed"))
        }
    }
}

/// Confirm channels open at once, per process. A bulk publishes over [`PUBLISH_CHANNELS`]
/// of them; beyond this many concurrent publishers, the next one waits for a channel to be
/// returned instead of opening more (RabbitMQ's default limit is 2,047 per connection).
const MAX_CONFIRM_CHANNELS: usize = 64;

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
        let link = Arc::new(Link {
            url: with_frame_max(url, DEFAULT_FRAME_MAX),
            connection: tokio::sync::Mutex::new(None),
        });
        let confirm_channels = managed::Pool::builder(ConfirmChannelManager { link: link.clone() })
            .max_size(MAX_CONFIRM_CHANNELS)
            .build()
            .expect("a pool without timeouts needs no runtime");
        Broker {
            link,
            confirm_channels,
        }
    }

    /// The current connection, reconnecting if it was lost.
    pub async fn connection(&self) -> Result<Arc<Connection>, BrokerError> {
        self.link.connect().await
    }

    /// True when a connection exists and is open (does not try to connect).
    pub async fn is_connected(&self) -> bool {
        self.link
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
        self.confirm_channels.retain(|_, _| false);
        if let Some(conn) = self.link.connection.lock().await.take() {
            let _ = conn.close(200, "closing").await;
        }
    }

    async fn take_confirm_channel(&self) -> Result<Object<ConfirmChannelManager>, BrokerError> {
        self.confirm_channels.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            other => BrokerError::ChannelPool(other.to_string()),
        })
    }

    /// A publisher for `exchange` that returns only once the broker confirmed every message.
    pub fn publisher(&self, exchange: String) -> ConfirmedPublisher {
        ConfirmedPublisher {
            broker: self.clone(),
            exchange,
            user_id: None,
        }
    }

    /// The user name this broker connects as (from its URL), `None` when the URL has none.
    pub fn username(&self) -> Option<String> {
        let uri: lapin::uri::AMQPUri = self.link.url.parse().ok()?;
        Some(uri.authority.userinfo.username).filter(|name| !name.is_empty())
    }
}

impl Link {
    /// The open connection, or a new one if there is none or it was lost.
    async fn connect(&self) -> Result<Arc<Connection>, BrokerError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.status().connected() {
                return Ok(conn.clone());
            }
        }
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio)
            .with_connection_name("smsgate".into());
        let conn =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, properties))
                .await
                .map_err(|_| BrokerError::ConnectTimeout(CONNECT_TIMEOUT))??;
        let conn = Arc::new(conn);
        *slot = Some(conn.clone());
        Ok(conn)
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
    user_id: Option<String>,
}

impl ConfirmedPublisher {
    /// Stamps every message with the AMQP `user_id` property. RabbitMQ refuses a message
    /// whose `user_id` is not the connection's user, so consumers can trust it to name the
    /// publisher (the edge ingest does).
    pub fn with_user_id(mut self, user_id: String) -> ConfirmedPublisher {
        self.user_id = Some(user_id);
        self
    }

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
        let published = self.publish_windows(&channel, &messages).await;
        if published.is_err() {
            // A channel that failed mid-publish may still owe confirms: it leaves the pool
            // rather than serving the next publisher, as before the pool was deadpool's.
            drop(Object::take(channel));
        }
        published
    }

    async fn publish_windows(
        &self,
        channel: &Channel,
        messages: &[OutgoingMessage],
    ) -> Result<(), BrokerError> {
        for window in messages.chunks(CONFIRM_WINDOW) {
            // lapin's publish future resolves once its I/O thread has written the frames.
            // Awaiting them one by one was a wake-up of that thread and back per message (a
            // quarter of the API's CPU under single-send load, perf); polled together they
            // are queued in order on the first poll and written in one go.
            let confirms = try_join_all(window.iter().map(|message| {
                let mut properties = BasicProperties::default()
                    .with_delivery_mode(2) // persistent: survives a broker restart
                    .with_content_type("application/json".into())
                    .with_headers(message.headers.clone());
                if let Some(user_id) = &self.user_id {
                    properties = properties.with_user_id(user_id.as_str().into());
                }
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
