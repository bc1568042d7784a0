//! Handling one job, independent of the broker: decide from the recipient's current
//! status and the gateway's verdict. The consumer loop feeds it; tests call it directly.

use std::future::Future;

use smsgate_shared::domain::{MessageBody, PhoneNumber, RecipientStatus};
use smsgate_shared::queue::OutboundJob;

use crate::hkt::{classify, GatewayAnswer, GatewayVerdict, HktClient, HktError};

/// Anything that can submit one SMS: the HKT client, or a fake in tests.
pub trait Gateway: Send + Sync {
    fn submit(
        &self,
        to: &PhoneNumber,
        body: &MessageBody,
    ) -> impl Future<Output = Result<GatewayAnswer, HktError>> + Send;
}

impl Gateway for HktClient {
    fn submit(
        &self,
        to: &PhoneNumber,
        body: &MessageBody,
    ) -> impl Future<Output = Result<GatewayAnswer, HktError>> + Send {
        HktClient::submit(self, to, body)
    }
}

/// What handling a job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The recipient is already terminal (or gone): a duplicate or redelivered job.
    Skipped,
    /// The gateway answered; the verdict says what to record.
    Attempted(GatewayVerdict),
}

/// Sends the job's SMS unless its recipient is already terminal.
/// `current` is `None` when the recipient no longer exists (its message was deleted).
pub async fn handle(
    job: &OutboundJob,
    current: Option<RecipientStatus>,
    gateway: &impl Gateway,
) -> Outcome {
    match current {
        Some(status) if !status.is_terminal() => {}
        _ => return Outcome::Skipped,
    }
    let OutboundJob::SendV1 { to, body, .. } = job;
    Outcome::Attempted(classify(gateway.submit(to, body).await))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use reqwest::StatusCode;

    use super::*;

    struct FakeGateway {
        status: u16,
        calls: AtomicUsize,
    }

    impl Gateway for FakeGateway {
        async fn submit(
            &self,
            _: &PhoneNumber,
            _: &MessageBody,
        ) -> Result<GatewayAnswer, HktError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(GatewayAnswer {
                status: StatusCode::from_u16(self.status).unwrap(),
                retry_after: None,
                body: "OK".into(),
            })
        }
    }

    fn job() -> OutboundJob {
        OutboundJob::SendV1 {
            recipient_id: 1,
            message_id: 1,
            to: PhoneNumber::parse("12345678").unwrap(),
            body: MessageBody::parse("hello", 10).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_terminal_recipient_is_skipped_without_calling_the_gateway() {
        let gateway = FakeGateway {
            status: 200,
            calls: AtomicUsize::new(0),
        };
        for status in [
            RecipientStatus::Sent,
            RecipientStatus::Failed,
            RecipientStatus::Delivered,
        ] {
            assert_eq!(
                handle(&job(), Some(status), &gateway).await,
                Outcome::Skipped
            );
        }
        assert_eq!(handle(&job(), None, &gateway).await, Outcome::Skipped);
        assert_eq!(gateway.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_pending_recipient_is_sent_and_classified() {
        let gateway = FakeGateway {
            status: 200,
            calls: AtomicUsize::new(0),
        };
        let outcome = handle(&job(), Some(RecipientStatus::Pending), &gateway).await;
        assert_eq!(
            outcome,
            Outcome::Attempted(GatewayVerdict::Sent {
                response: "OK".into()
            })
        );
        assert_eq!(gateway.calls.load(Ordering::SeqCst), 1);
    }
}
