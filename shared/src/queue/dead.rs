//! Parking messages that can never be processed.

use lapin::message::Delivery;
use lapin::options::BasicAckOptions;

use super::{Broker, BrokerError, Names, OutgoingMessage};

/// Moves a delivery that can never succeed (it does not parse) to the dead queue, with
/// its payload and headers as received, and acks it: kept for a human instead of being
/// redelivered forever. The ack happens only once the dead queue confirmed the copy.
pub async fn bury_in_dead_queue(
    broker: &Broker,
    names: &Names,
    delivery: Delivery,
) -> Result<(), BrokerError> {
    copy_to_dead_queue(broker, names, &delivery).await?;
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// The copy half of [`bury_in_dead_queue`], for a consumer that settles its deliveries
/// itself: returns once the dead queue confirmed the copy; the caller then acks.
pub async fn copy_to_dead_queue(
    broker: &Broker,
    names: &Names,
    delivery: &Delivery,
) -> Result<(), BrokerError> {
    let copy = OutgoingMessage {
        routing_key: names.dead_queue(),
        payload: delivery.data.clone(),
        headers: delivery.properties.headers().clone().unwrap_or_default(),
    };
    // The default exchange routes by queue name.
    broker.publisher(String::new()).publish_one(copy).await
}
