//! The opt-out list: numbers that must not get SMS, from everyone (`user_id` NULL, e.g. a
//! recipient who replied STOP to one of our SIMs) or from one user. Sends are checked
//! against it when they are accepted ([`repo::mark_opted_out`]): a listed recipient ends
//! `opted_out` in the message's own transaction and never reaches a gateway. Replies are
//! matched by [`Keywords`] in the dispatcher's edge ingest (docs/edge-gateway.md, "Inbound
//! SMS: webhooks and opt-out by reply"). Users and administrators manage the lists through
//! [`service`], shared by `/api/opt-outs` and the panel's `/opt-outs` (docs/opt-outs.md).

mod import;
mod keywords;
pub mod repo;
pub mod service;

pub use import::{BadLine, CsvError, MAX_IMPORT_BYTES, MAX_IMPORT_LINES};
pub use keywords::{KeywordError, Keywords, Reply, DEFAULT_OPT_IN, DEFAULT_OPT_OUT};
pub use repo::OptedOut;
pub use service::{Actor, DigitSearch, Entry, Imported, OptOutError, Scope};

use std::collections::BTreeMap;

use smsgate_shared::domain::{MessageStatus, RecipientStatus};
use smsgate_shared::webhook_events::{MessageStatusData, RecipientState};
use sqlx::PgConnection;

/// Up to this many recipients a send's numbers are each looked up in the list; above it
/// the list is walked and each listed number looked up among the send's recipients (see
/// [`repo::mark_listed_in_bulk`]). Either way it is one statement.
const PROBE_EACH_RECIPIENT_UP_TO: usize = 1_000;

/// Ends the recipients of a message just stored (in its transaction, before the commit)
/// whose number is on the opt-out list: `opted_out`, counted, off the release queue, and
/// announced to the owner's `message.status` webhooks. Returns the message's status when
/// any was opted out (a send of only listed numbers is final at once).
pub async fn mark_accepted(
    conn: &mut PgConnection,
    message_id: i64,
    user_id: i64,
    recipients: usize,
) -> Result<Option<MessageStatus>, sqlx::Error> {
    let opted = if recipients <= PROBE_EACH_RECIPIENT_UP_TO {
        repo::mark_listed_recipients(conn, &[message_id]).await?
    } else {
        repo::mark_listed_in_bulk(conn, message_id, user_id).await?
    };
    let status = opted.first().map(|o| o.status);
    announce(conn, &opted).await?;
    Ok(status)
}

/// [`mark_accepted`] for many small messages stored by one statement; the statuses of
/// those that had listed recipients, by message id.
pub async fn mark_accepted_small(
    conn: &mut PgConnection,
    message_ids: &[i64],
) -> Result<BTreeMap<i64, MessageStatus>, sqlx::Error> {
    let opted = repo::mark_listed_recipients(conn, message_ids).await?;
    announce(conn, &opted).await?;
    Ok(opted.iter().map(|o| (o.message_id, o.status)).collect())
}

/// The `message.status` events of opted-out recipients, one per message whose owner has a
/// webhook, listing those recipients (so that a sender learns which numbers were dropped).
fn status_data(opted: &[OptedOut]) -> Vec<MessageStatusData<'_>> {
    let mut by_message: BTreeMap<i64, MessageStatusData<'_>> = BTreeMap::new();
    for o in opted.iter().filter(|o| o.has_webhooks) {
        by_message
            .entry(o.message_id)
            .or_insert_with(|| MessageStatusData {
                message_id: o.message_id,
                status: o.status,
                total: o.total_count,
                sent: o.sent_count,
                failed: o.failed_count,
                cancelled: o.cancelled_count,
                expired: o.expired_count,
                opted_out: o.opted_out_count,
                recipients: Vec::new(),
            })
            .recipients
            .push(RecipientState {
                id: o.recipient_id,
                phone: &o.phone,
                status: RecipientStatus::OptedOut,
                attempts: 0,
                error: None,
            });
    }
    by_message.into_values().collect()
}

async fn announce(conn: &mut PgConnection, opted: &[OptedOut]) -> Result<(), sqlx::Error> {
    let events = status_data(opted);
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = events.iter().map(|e| e.message_id).collect();
    let payloads: Vec<serde_json::Value> = events.iter().map(MessageStatusData::to_value).collect();
    crate::progress::repo::insert_status_deliveries(conn, &ids, &payloads).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opted(recipient_id: i64, message_id: i64, has_webhooks: bool) -> OptedOut {
        OptedOut {
            recipient_id,
            phone: format!("+8529000000{recipient_id}"),
            message_id,
            status: MessageStatus::Pending,
            total_count: 3,
            sent_count: 0,
            failed_count: 0,
            cancelled_count: 0,
            expired_count: 0,
            opted_out_count: 2,
            has_webhooks,
        }
    }

    #[test]
    fn each_message_with_a_webhook_gets_one_event_listing_its_opted_out_numbers() {
        let rows = [opted(1, 10, true), opted(2, 10, true), opted(3, 11, false)];
        let events = status_data(&rows);
        assert_eq!(events.len(), 1);
        let json = events[0].to_value();
        assert_eq!(json["message_id"], 10);
        assert_eq!(json["opted_out"], 2);
        assert_eq!(json["recipients"][1]["phone"], "+85290000002");
        assert_eq!(json["recipients"][0]["status"], "opted_out");
    }
}
