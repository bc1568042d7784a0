//! Delivery webhooks, the dispatcher's side: status changes become `webhook_deliveries` rows
//! in the transaction that commits them ([`enqueue_status`]), and a delivery loop in every
//! dispatcher POSTs them, signed, to their endpoints and retries on a schedule
//! ([`deliver::run`]). The API registers the endpoints; `docs/webhooks.md` is the contract.
//!
//! Because the rows are written with the change, an event can't be lost between the commit
//! and its delivery: a crash, a broker outage or an unreachable endpoint only delays it.
//! Delivery is at-least-once (a dispatcher dying after the POST and before recording it
//! retries it once its lease runs out); receivers deduplicate by the delivery id.

mod client;
pub mod deliver;
pub mod repo;

use std::collections::HashMap;

use smsgate_shared::domain::RecipientStatus;
pub use smsgate_shared::webhook_events::{MessageStatusData, RecipientState};
use sqlx::{Postgres, Transaction};

pub use client::{sign, WebhookClient};
pub use repo::sweep_finished;

use crate::repo::{ChangedRecipient, MessageProgress};

/// The `message.status` events of a committed change: one per message whose owner has an
/// active webhook and which has recipients that reached a final state (`sent`, `failed`,
/// `delivered`). A recipient left `pending` for a retry is not news to a receiver, and a
/// batch of duplicate jobs changed nothing.
pub fn status_data<'a>(
    messages: &'a [MessageProgress],
    changed: &'a [ChangedRecipient],
) -> Vec<MessageStatusData<'a>> {
    let mut by_message: HashMap<i64, Vec<RecipientState<'a>>> = HashMap::new();
    for r in changed
        .iter()
        .filter(|r| r.status != RecipientStatus::Pending)
    {
        by_message
            .entry(r.message_id)
            .or_default()
            .push(RecipientState {
                id: r.id,
                phone: &r.phone,
                status: r.status,
                attempts: r.attempts,
                error: r.last_error.as_deref(),
            });
    }
    messages
        .iter()
        .filter(|m| m.has_webhooks)
        .filter_map(|m| {
            let recipients = by_message.remove(&m.id)?;
            Some(MessageStatusData {
                message_id: m.id,
                status: m.status,
                total: m.total_count,
                sent: m.sent_count,
                failed: m.failed_count,
                cancelled: m.cancelled_count,
                expired: m.expired_count,
                opted_out: m.opted_out_count,
                recipients,
            })
        })
        .collect()
}

/// Queues a `message.status` delivery for every active webhook of each message's owner,
/// inside the transaction that commits the change. One statement for the batch, and none
/// at all when no owner in it has a webhook.
pub async fn enqueue_status(
    tx: &mut Transaction<'_, Postgres>,
    messages: &[MessageProgress],
    changed: &[ChangedRecipient],
) -> Result<(), sqlx::Error> {
    let events = status_data(messages, changed);
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = events.iter().map(|e| e.message_id).collect();
    let payloads: Vec<serde_json::Value> = events.iter().map(MessageStatusData::to_value).collect();
    repo::insert_status_deliveries(tx, &ids, &payloads).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsgate_shared::domain::MessageStatus;

    fn progress(id: i64, sent: i32) -> MessageProgress {
        MessageProgress {
            id,
            status: MessageStatus::Sending,
            total_count: 3,
            sent_count: sent,
            failed_count: 0,
            cancelled_count: 0,
            expired_count: 0,
            opted_out_count: 0,
            has_webhooks: true,
        }
    }

    fn changed(id: i64, message_id: i64, phone: &str) -> ChangedRecipient {
        ChangedRecipient {
            id,
            message_id,
            phone: phone.into(),
            status: RecipientStatus::Sent,
            attempts: 1,
            last_error: None,
        }
    }

    #[test]
    fn retries_owners_without_webhooks_and_unchanged_messages_make_no_event() {
        let mut waiting = changed(30, 3, "+85244444444");
        waiting.status = RecipientStatus::Pending;
        let mut no_hooks = progress(4, 1);
        no_hooks.has_webhooks = false;
        let messages = [progress(3, 0), no_hooks, progress(5, 2)];
        let recipients = [waiting, changed(40, 4, "+85255555555")];
        assert!(status_data(&messages, &recipients).is_empty());
    }

    #[test]
    fn each_message_gets_its_own_recipients_with_their_numbers() {
        let messages = [progress(1, 2), progress(2, 1)];
        let recipients = [
            changed(10, 1, "+85211111111"),
            changed(20, 2, "+85222222222"),
            changed(11, 1, "+85233333333"),
        ];
        let data = status_data(&messages, &recipients);
        assert_eq!(data.len(), 2);
        assert_eq!(
            data[0].recipients.iter().map(|r| r.id).collect::<Vec<_>>(),
            [10, 11]
        );
        assert_eq!(data[1].recipients[0].phone, "+85222222222");
        let json = serde_json::to_value(&data[0]).unwrap();
        assert_eq!(json["status"], "sending");
        assert_eq!(json["recipients"][0]["status"], "sent");
        assert_eq!(json["recipients"][0]["error"], serde_json::Value::Null);
    }
}
