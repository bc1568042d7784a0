//! Progress the API side makes on messages, announced as the dispatchers announce theirs:
//! a scheduled message released, unsent recipients expired, a message cancelled. Webhook
//! deliveries are written in the transaction of the change (so none is lost), and a status
//! event goes to the events exchange after the commit for live status.
//!
//! These changes touch many recipients at once (a cancel may end 100,000), so their events
//! carry the message's counters and no recipient list; receivers read the recipients if
//! they need them. docs/webhooks.md describes both kinds.

pub mod repo;

use lapin::types::FieldTable;
use smsgate_shared::queue::{routing, ConfirmedPublisher, OutgoingMessage, StatusEvent};
use smsgate_shared::webhook_events::MessageStatusData;
use sqlx::PgConnection;
use tracing::warn;

pub use repo::MessageTally;

/// Queues a `message.status` delivery for each message whose owner has an active webhook.
pub async fn enqueue_webhooks(
    conn: &mut PgConnection,
    messages: &[MessageTally],
) -> Result<(), sqlx::Error> {
    let with_hooks: Vec<&MessageTally> = messages.iter().filter(|m| m.has_webhooks).collect();
    if with_hooks.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = with_hooks.iter().map(|m| m.id).collect();
    let payloads: Vec<serde_json::Value> = with_hooks
        .iter()
        .map(|m| webhook_data(m).to_value())
        .collect();
    repo::insert_status_deliveries(conn, &ids, &payloads).await
}

fn webhook_data(m: &MessageTally) -> MessageStatusData<'static> {
    MessageStatusData {
        message_id: m.id,
        status: m.status,
        total: m.total_count,
        sent: m.sent_count,
        failed: m.failed_count,
        cancelled: m.cancelled_count,
        expired: m.expired_count,
        opted_out: m.opted_out_count,
        recipients: Vec::new(),
    }
}

/// The status event of each message, for the events exchange.
pub fn status_event(m: &MessageTally) -> StatusEvent {
    StatusEvent::MessageProgressV1 {
        message_id: m.id,
        status: m.status,
        total: i64::from(m.total_count),
        sent: i64::from(m.sent_count),
        failed: i64::from(m.failed_count),
        cancelled: i64::from(m.cancelled_count),
        expired: i64::from(m.expired_count),
        opted_out: i64::from(m.opted_out_count),
        recipients: Vec::new(),
    }
}

/// Publishes the messages' status events after their change committed. Best effort, like
/// the dispatchers' events: live views re-read the message when they (re)subscribe, and
/// webhooks do not depend on it.
pub async fn publish_events(events: &ConfirmedPublisher, messages: &[MessageTally]) {
    if messages.is_empty() {
        return;
    }
    let outgoing = messages
        .iter()
        .map(|m| OutgoingMessage {
            routing_key: routing::status(m.id),
            payload: status_event(m).to_json(),
            headers: FieldTable::default(),
        })
        .collect();
    if let Err(e) = events.publish_all(outgoing).await {
        warn!(error = %e, messages = messages.len(), "could not publish status events");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsgate_shared::domain::MessageStatus;

    #[test]
    fn a_bulk_change_is_announced_with_counters_and_no_recipient_list() {
        let tally = MessageTally {
            id: 7,
            status: MessageStatus::Cancelled,
            total_count: 10,
            sent_count: 3,
            failed_count: 1,
            cancelled_count: 6,
            expired_count: 0,
            opted_out_count: 0,
            has_webhooks: true,
        };
        let json = webhook_data(&tally).to_value();
        assert_eq!(json["status"], "cancelled");
        assert_eq!(json["cancelled"], 6);
        assert_eq!(json["recipients"], serde_json::json!([]));
        let StatusEvent::MessageProgressV1 {
            cancelled, sent, ..
        } = status_event(&tally);
        assert_eq!((cancelled, sent), (6, 3));
    }
}
