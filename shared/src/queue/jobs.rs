//! Jobs on the outbound exchange: one per recipient.

use chrono::{DateTime, Utc};
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
        /// Not to be handed to a gateway after this: the consumer records the recipient
        /// `expired` instead. Absent in jobs of messages without validity (and in jobs
        /// published before the field existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valid_until: Option<DateTime<Utc>>,
    },
}

impl OutboundJob {
    /// The send jobs of one message: one per stored `(recipient id, number)` row, each pair
    /// taken from the same row. Stored numbers were parsed on the way in; one that no longer
    /// parses is skipped rather than published.
    pub fn sends_of(
        message_id: i64,
        body: &MessageBody,
        valid_until: Option<DateTime<Utc>>,
        recipients: impl IntoIterator<Item = (i64, String)>,
    ) -> Vec<OutboundJob> {
        recipients
            .into_iter()
            .filter_map(|(recipient_id, phone)| {
                Some(OutboundJob::SendV1 {
                    recipient_id,
                    message_id,
                    to: PhoneNumber::parse(&phone).ok()?,
                    body: body.clone(),
                    valid_until,
                })
            })
            .collect()
    }

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

    /// Whether the job's validity ran out by `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        match self {
            OutboundJob::SendV1 { valid_until, .. } => {
                valid_until.is_some_and(|until| until <= now)
            }
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
            valid_until: None,
        };
        let json: serde_json::Value = serde_json::from_slice(&job.to_json()).unwrap();
        assert_eq!(json["type"], "SendV1");
        assert_eq!(json["to"], "+85212345678");
        assert!(json.get("valid_until").is_none());
        assert_eq!(OutboundJob::from_json(&job.to_json()).unwrap(), job);
    }

    #[test]
    fn a_job_carries_its_validity_and_knows_when_it_ran_out() {
        let until = "2026-12-06T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let job = OutboundJob::SendV1 {
            recipient_id: 5,
            message_id: 2,
            to: PhoneNumber::parse("12345678").unwrap(),
            body: MessageBody::parse("hi", 10).unwrap(),
            valid_until: Some(until),
        };
        let back = OutboundJob::from_json(&job.to_json()).unwrap();
        assert_eq!(back, job);
        assert!(!job.expired_at(until - chrono::Duration::seconds(1)));
        assert!(job.expired_at(until));
    }

    #[test]
    fn sends_of_pairs_each_stored_row_and_skips_a_number_that_no_longer_parses() {
        let body = MessageBody::parse("hi", 10).unwrap();
        let rows = vec![
            (7, "+85212345678".to_owned()),
            (8, "not a number".to_owned()),
            (9, "+85287654321".to_owned()),
        ];
        let jobs = OutboundJob::sends_of(3, &body, None, rows);
        let ids: Vec<(i64, i64)> = jobs
            .iter()
            .map(|j| (j.recipient_id(), j.message_id()))
            .collect();
        assert_eq!(ids, vec![(7, 3), (9, 3)]);
        let OutboundJob::SendV1 { to, body: sent, .. } = &jobs[1];
        assert_eq!(to.as_str(), "+85287654321");
        assert_eq!(sent, &body);
    }

    #[test]
    fn a_job_with_an_invalid_number_does_not_parse() {
        let raw = br#"{"type":"SendV1","recipient_id":1,"message_id":1,"to":"12-34","body":"x"}"#;
        assert!(OutboundJob::from_json(raw).is_err());
    }
}
