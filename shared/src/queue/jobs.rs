//! Jobs on the outbound exchange: one per recipient.

use serde::{Deserialize, Serialize};

use crate::domain::{MessageBody, PhoneNumber};

/// A unit of work for a dispatcher or a modem agent: send one SMS to one recipient.
///
/// The consumer looks the recipient up before sending and skips it when it is already
/// terminal, so a duplicate job (reconciler republish, redelivery) never sends twice
/// once a result is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OutboundJob {
    SendV1 {
        recipient_id: i64,
        message_id: i64,
        to: PhoneNumber,
        body: MessageBody,
    },
}

impl OutboundJob {
    pub fn recipient_id(&self) -> i64 {
        match self {
            OutboundJob::SendV1 { recipient_id, .. } => *recipient_id,
        }
    }

    pub fn message_id(&self) -> i64 {
        match self {
            OutboundJob::SendV1 { message_id, .. } => *message_id,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an OutboundJob always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<OutboundJob, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_job_has_a_versioned_type_tag_and_round_trips() {
        let job = OutboundJob::SendV1 {
            recipient_id: 5,
            message_id: 2,
            to: PhoneNumber::parse("12345678").unwrap(),
            body: MessageBody::parse("hi", 10).unwrap(),
        };
        let json: serde_json::Value = serde_json::from_slice(&job.to_json()).unwrap();
        assert_eq!(json["type"], "SendV1");
        assert_eq!(json["to"], "+85212345678");
        assert_eq!(OutboundJob::from_json(&job.to_json()).unwrap(), job);
    }

    #[test]
    fn a_job_with_an_invalid_number_does_not_parse() {
        let raw = br#"{"type":"SendV1","recipient_id":1,"message_id":1,"to":"12-34","body":"x"}"#;
        assert!(OutboundJob::from_json(raw).is_err());
    }
}
