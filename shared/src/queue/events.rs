//! Events on the events exchange. API instances bind their own exclusive queue to it and
//! push what they receive to browsers and webhooks.

use serde::{Deserialize, Serialize};

use crate::domain::{MessageStatus, RecipientStatus};

/// One recipient's new state, as written by a result batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientUpdate {
    pub recipient_id: i64,
    pub status: RecipientStatus,
    pub attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Progress of one message, published after each committed result batch that touched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StatusEvent {
    MessageProgressV1 {
        message_id: i64,
        status: MessageStatus,
        total: i64,
        sent: i64,
        failed: i64,
        #[serde(default)]
        cancelled: i64,
        #[serde(default)]
        expired: i64,
        /// Recipients whose number was on the opt-out list; never sent.
        #[serde(default)]
        opted_out: i64,
        recipients: Vec<RecipientUpdate>,
    },
}

impl StatusEvent {
    pub fn message_id(&self) -> i64 {
        match self {
            StatusEvent::MessageProgressV1 { message_id, .. } => *message_id,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a StatusEvent always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<StatusEvent, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
