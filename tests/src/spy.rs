//! A spy on an exchange: an exclusive, server-named queue bound with a routing key, consumed
//! without acks, so a test sees a copy of every message routed that way.

use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};

/// Starts spying on `exchange` for `routing_key` (a binding pattern on a topic exchange).
/// The queue goes away with `channel`.
pub async fn spy_on(channel: &Channel, exchange: &str, routing_key: &str) -> Consumer {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let spy = channel
        .queue_declare("", exclusive, FieldTable::default())
        .await
        .expect("declaring the spy queue");
    channel
        .queue_bind(
            spy.name().as_str(),
            exchange,
            routing_key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("binding the spy queue");
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    channel
        .basic_consume(spy.name().as_str(), "spy", no_ack, FieldTable::default())
        .await
        .expect("consuming the spy queue")
}
