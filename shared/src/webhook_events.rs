//! The `data` of `message.status` webhook events (docs/webhooks.md). Written by the
//! dispatchers (results) and by the API's core (release of scheduled messages, expiry,
//! cancel), so the shape is defined once here. Evolve it by adding fields, never by
//! changing one.

use serde::Serialize;

use crate::domain::{MessageStatus, RecipientStatus};

/// A message's counters after a committed change, and the recipients that change touched.
#[derive(Debug, Serialize, PartialEq)]
pub struct MessageStatusData<'a> {
    pub message_id: i64,
    pub status: MessageStatus,
    pub total: i32,
    pub sent: i32,
    pub failed: i32,
    pub cancelled: i32,
    pub expired: i32,
    /// Recipients whose number was on the opt-out list at accept; never sent.
    pub opted_out: i32,
    pub recipients: Vec<RecipientState<'a>>,
}

/// One recipient's new state.
#[derive(Debug, Serialize, PartialEq)]
pub struct RecipientState<'a> {
    pub id: i64,
    pub phone: &'a str,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub error: Option<&'a str>,
}

impl MessageStatusData<'_> {
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a status event always serializes")
    }
}

/// The `data` of a `message.received` event: an SMS one of our SIM cards received.
/// Written by the dispatcher's edge ingest when it stores a new one.
#[derive(Debug, Serialize, PartialEq)]
pub struct MessageReceivedData<'a> {
    /// The received SMS's id in the inbox (`GET /api/sms/inbox`).
    pub inbound_id: i64,
    pub sim: ReceivingSim<'a>,
    /// E.164 when the network gave an international number, else as sent (national
    /// digits or an alphanumeric sender name).
    pub sender: &'a str,
    /// The whole text, its parts reassembled.
    pub text: &'a str,
    pub parts: i16,
    /// The service centre's time stamp of the (first) part, if the network sent one.
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the modem agent read it from the SIM.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// The SIM card an SMS was received on. `id` is `None` when the SIM was deleted before
/// its SMS was ingested.
#[derive(Debug, Serialize, PartialEq)]
pub struct ReceivingSim<'a> {
    pub id: Option<i64>,
    pub number: &'a str,
}

impl MessageReceivedData<'_> {
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a received SMS event always serializes")
    }
}
