//! Received SMS: stored once in the inbox, announced to the `message.received` webhooks of
//! the users who may see the SIM, and read for opt-out keywords, all in one transaction.
//! A redelivered event finds its SMS stored and changes nothing, so no webhook fires twice
//! and no opt-out is recorded twice.

use chrono::{DateTime, Utc};
use smsgate_core::optout::{self, Keywords, Reply};
use smsgate_shared::domain::PhoneNumber;
use smsgate_shared::webhook_events::{MessageReceivedData, ReceivingSim};
use sqlx::PgPool;
use tracing::{debug, info};

use super::repo;
use crate::webhooks;

/// A received SMS as the agent published it (`EdgeEvent::InboundSmsV1`).
pub struct Received<'a> {
    pub sim_id: i64,
    pub key: &'a str,
    pub sender: &'a str,
    pub text: &'a str,
    pub parts: u16,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// Stores `sms` unless it was stored before; a new one goes to the webhooks and, if its
/// text is an opt-out (or opt-in) keyword, changes the sender's place on the global list.
pub async fn store(db: &PgPool, keywords: &Keywords, sms: Received<'_>) -> Result<(), sqlx::Error> {
    let parts = i16::try_from(sms.parts).unwrap_or(i16::MAX);
    let mut tx = db.begin().await?;
    let Some(stored) = repo::insert_inbound(
        &mut tx,
        sms.sim_id,
        sms.key,
        sms.sender,
        sms.text,
        parts,
        sms.sent_at,
        sms.received_at,
    )
    .await?
    else {
        tx.commit().await?;
        debug!("received SMS already stored");
        return Ok(());
    };
    let data = MessageReceivedData {
        inbound_id: stored.id,
        sim: ReceivingSim {
            id: stored.sim_card_id,
            number: &stored.sim_number,
        },
        sender: sms.sender,
        text: sms.text,
        parts,
        sent_at: sms.sent_at,
        received_at: sms.received_at,
    };
    webhooks::repo::insert_received_deliveries(&mut tx, sms.sim_id, &data.to_value()).await?;
    match (keywords.classify(sms.text), PhoneNumber::parse(sms.sender)) {
        // A sender name ("HKT") or a short code can't be sent to: nothing to list.
        (Reply::Other, _) | (_, Err(_)) => {}
        (Reply::OptOut, Ok(phone)) => {
            if optout::repo::add_reply(&mut tx, phone.as_str(), stored.sim_card_id, stored.id)
                .await?
            {
                info!(inbound.id = stored.id, "sender opted out by reply");
            }
        }
        (Reply::OptIn, Ok(phone)) => {
            if optout::repo::remove_reply(&mut tx, phone.as_str()).await? {
                info!(inbound.id = stored.id, "sender opted back in by reply");
            }
        }
    }
    tx.commit().await
}
