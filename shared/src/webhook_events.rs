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
