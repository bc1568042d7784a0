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

/// What the last step before a request decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// The recipient became terminal meanwhile (cancelled, or a duplicate's result landed).
    Skip,
    /// Its validity ran out meanwhile.
    Expired,
}

/// Stands between a job and its request: the global rate limit and the last look
/// (`crate::gate::SendGate`), or nothing in tests.
pub trait Gate: Send + Sync {
    fn admit(&self, job: &OutboundJob) -> impl Future<Output = Admission> + Send;
}

/// What handling a job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The recipient is already terminal (or gone): a duplicate or redelivered job, or one
    /// of a cancelled message.
    Skipped,
    /// The gateway answered, or the job expired unsent; the verdict says what to record.
    Attempted(GatewayVerdict),
}

/// Sends the job's SMS unless its recipient is already terminal or its validity ran out.
/// `current` is `None` when the recipient no longer exists (its message was deleted).
/// An expired job is recorded without waiting for a rate-limit slot.
pub async fn handle(
    job: &OutboundJob,
    current: Option<RecipientStatus>,
    gateway: &impl Gateway,
    gate: &impl Gate,
) -> Outcome {
    match current {
        Some(status) if !status.is_terminal() => {}
        _ => return Outcome::Skipped,
    }
    if job.expired_at(chrono::Utc::now()) {
        return Outcome::Attempted(GatewayVerdict::Expired);
    }
    match gate.admit(job).await {
        Admission::Go => {}
        Admission::Skip => return Outcome::Skipped,
        Admission::Expired => return Outcome::Attempted(GatewayVerdict::Expired),
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

    /// Admits whatever it was told to.
    struct FixedGate(Admission);

    impl Gate for FixedGate {
        async fn admit(&self, _: &OutboundJob) -> Admission {
            self.0
        }
    }

    const OPEN: FixedGate = FixedGate(Admission::Go);

    fn job() -> OutboundJob {
        job_valid_until(None)
    }

    fn job_valid_until(valid_until: Option<chrono::DateTime<chrono::Utc>>) -> OutboundJob {
        OutboundJob::SendV1 {
            recipient_id: 1,
            message_id: 1,
            to: PhoneNumber::parse("12345678").unwrap(),
            body: MessageBody::parse("hello", 10).unwrap(),
            valid_until,
        }
    }

    fn gateway() -> FakeGateway {
        FakeGateway {
            status: 200,
            calls: AtomicUsize::new(0),
        }
    }

    #[tokio::test]
    async fn an_expired_job_or_one_the_gate_stops_never_reaches_the_gateway() {
        let gateway = gateway();
        let past = chrono::Utc::now() - chrono::Duration::seconds(1);
        let pending = Some(RecipientStatus::Pending);
        assert_eq!(
            handle(&job_valid_until(Some(past)), pending, &gateway, &OPEN).await,
            Outcome::Attempted(GatewayVerdict::Expired)
        );
        let cancelled_meanwhile = FixedGate(Admission::Skip);
        assert_eq!(
            handle(&job(), pending, &gateway, &cancelled_meanwhile).await,
            Outcome::Skipped
        );
        let expired_meanwhile = FixedGate(Admission::Expired);
        assert_eq!(
            handle(&job(), pending, &gateway, &expired_meanwhile).await,
            Outcome::Attempted(GatewayVerdict::Expired)
        );
        assert_eq!(gateway.calls.load(Ordering::SeqCst), 0);
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
            RecipientStatus::Cancelled,
            RecipientStatus::Expired,
        ] {
            assert_eq!(
                handle(&job(), Some(status), &gateway, &OPEN).await,
                Outcome::Skipped
            );
        }
        assert_eq!(
            handle(&job(), None, &gateway, &OPEN).await,
            Outcome::Skipped
        );
        assert_eq!(gateway.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_pending_recipient_is_sent_and_classified() {
        let gateway = FakeGateway {
            status: 200,
            calls: AtomicUsize::new(0),
        };
        let outcome = handle(&job(), Some(RecipientStatus::Pending), &gateway, &OPEN).await;
        assert_eq!(
            outcome,
            Outcome::Attempted(GatewayVerdict::Sent {
                response: "OK".into()
            })
        );
        assert_eq!(gateway.calls.load(Ordering::SeqCst), 1);
    }
}
