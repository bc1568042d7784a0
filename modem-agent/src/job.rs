//! Handling one SIM job, independent of the broker: send through something that can send,
//! classify what went wrong. The consumer loop feeds it; tests call it with a fake.

use std::future::Future;

use smsgate_shared::domain::{MessageBody, PhoneNumber};
use smsgate_shared::queue::OutboundJob;

use crate::at::AtError;

/// Anything that can send one SMS and return its part references: the modem, or a fake.
pub trait SmsSender: Send {
    fn send_sms(
        &mut self,
        to: &PhoneNumber,
        body: &MessageBody,
    ) -> impl Future<Output = Result<Vec<u8>, AtError>> + Send;
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The network accepted every part; the references name them in delivery reports.
    Sent { references: Vec<u8> },
    /// Retrying cannot help (bad number, barred, malformed PDU).
    Permanent { error: String },
    /// Worth another attempt later (no network, congestion, a modem that hung).
    Transient { error: String },
}

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry,
    Permanent,
}

/// `+CMS ERROR` causes that no retry fixes: TS 24.011 Annex E causes for an unknown,
/// barred or rejected destination, and TS 27.005 §3.2.5 codes for a PDU the modem refuses.
/// Everything else (no network 331, network timeout 332, congestion 42, unknown 500, a
/// plain ERROR, a timeout) is retried: the retry schedule decides when to give up.
const PERMANENT_CMS: &[u16] = &[
    1, 8, 10, 21, 28, 29, 30, 50, 69, 96, 97, 98, 99, 111, 127, 303, 304, 305,
];

pub fn classify(error: &AtError) -> Verdict {
    match error {
        AtError::Cms {
            code: Some(code), ..
        } if PERMANENT_CMS.contains(code) => Verdict::Permanent,
        _ => Verdict::Retry,
    }
}

/// Sends the job's SMS once. A timeout counts as transient even though the modem may have
/// sent the SMS before it hung: at-least-once, as for the HKT route (docs/edge-gateway.md).
pub async fn handle(job: &OutboundJob, sender: &mut impl SmsSender) -> Outcome {
    let OutboundJob::SendV1 { to, body, .. } = job;
    match sender.send_sms(to, body).await {
        Ok(references) => Outcome::Sent { references },
        Err(e) => match classify(&e) {
            Verdict::Permanent => Outcome::Permanent {
                error: e.to_string(),
            },
            Verdict::Retry => Outcome::Transient {
                error: e.to_string(),
            },
        },
    }
}

/// The retry queue step after a transient failure of attempt `attempt` (1-based), or
/// `None` once the schedule of `steps` delays is exhausted. Same rule as the dispatcher's.
pub fn retry_step(attempt: u32, steps: usize) -> Option<usize> {
    let step = attempt.saturating_sub(1) as usize;
    (step < steps).then_some(step)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Fake(Option<AtError>);

    impl SmsSender for Fake {
        async fn send_sms(&mut self, _: &PhoneNumber, _: &MessageBody) -> Result<Vec<u8>, AtError> {
            match self.0.take() {
                Some(e) => Err(e),
                None => Ok(vec![7, 8]),
            }
        }
    }

    fn job() -> OutboundJob {
        OutboundJob::SendV1 {
            recipient_id: 1,
            message_id: 1,
            to: PhoneNumber::parse("12345678").unwrap(),
            valid_until: None,
            body: MessageBody::parse("hello", 10).unwrap(),
        }
    }

    fn cms(code: u16) -> AtError {
        AtError::Cms {
            command: "AT+CMGS",
            code: Some(code),
            text: code.to_string(),
        }
    }

    #[tokio::test]
    async fn a_sent_job_carries_every_part_reference() {
        assert_eq!(
            handle(&job(), &mut Fake(None)).await,
            Outcome::Sent {
                references: vec![7, 8]
            }
        );
    }

    #[tokio::test]
    async fn an_unassigned_number_fails_permanently() {
        assert!(matches!(
            handle(&job(), &mut Fake(Some(cms(1)))).await,
            Outcome::Permanent { .. }
        ));
    }

    #[tokio::test]
    async fn no_network_and_timeouts_are_retried() {
        for error in [
            cms(331),
            cms(500),
            AtError::Error { command: "AT+CMGS" },
            AtError::Timeout {
                command: "AT+CMGS",
                after: Duration::from_secs(1),
            },
        ] {
            assert!(matches!(
                handle(&job(), &mut Fake(Some(error))).await,
                Outcome::Transient { .. }
            ));
        }
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        assert_eq!(retry_step(1, 3), Some(0));
        assert_eq!(retry_step(3, 3), Some(2));
        assert_eq!(retry_step(4, 3), None);
    }
}
