//! Group commit for small sends: the `POST /api/sms` calls that arrive while earlier ones
//! are being written share one INSERT statement and one commit.
//!
//! Per call, the statement, its commit and its triggers cost PostgreSQL more than the row
//! itself; under load that is what bounded single sends. No call waits for company: a
//! batch is whatever queued while the previous statements ran, so a lone call is written
//! at once and a burst is written in a few large statements. Each caller gets its answer
//! only after the commit, so a 202 still means durable.

use std::sync::Arc;

use smsgate_shared::domain::{MessageStatus, PhoneNumber};
use smsgate_shared::queue::current_traceparent;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{info_span, Instrument, Span};

use super::repo::{self, Refusal, SmallMessage, SmallOutcome};
use super::service::{Accepted, NewSend};
use crate::auth::SendCredential;
use crate::outbox::Outbox;

/// Statements in flight at once. One is best on the 2-core reference machine: at 64
/// connections it wrote batches of ~32 sends in ~4.8 ms, 6,500 sends/s with p99 19 ms;
/// two in flight halved the batches and gave 5,600/s with p99 28 ms, four 4,200/s with
/// p99 40 ms (docs/benchmarks.md). Per-statement cost, not parallelism, is what limits.
const MAX_IN_FLIGHT: usize = 1;
/// Messages per statement, so one statement stays a few milliseconds long.
const MAX_BATCH: usize = 500;
/// Calls that may wait for a statement before senders are pushed back.
const QUEUE_DEPTH: usize = 4_096;

/// Why a small send was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SmallSendError {
    #[error("account is disabled")]
    Disabled,
    /// The user no longer exists or the API token was revoked.
    #[error("credential no longer valid")]
    InvalidCredential,
    /// The statement failed; shared by every call in its batch.
    #[error("database")]
    Database(#[source] Arc<sqlx::Error>),
    #[error("the API is shutting down")]
    ShuttingDown,
    /// The sender has quotas; nothing was stored. The send comes back to be accepted on
    /// the path that charges them.
    #[error("the sender has quotas")]
    Limited(NewSend),
}

struct Waiting {
    sender: SendCredential,
    send: NewSend,
    /// The caller's span: its jobs carry this trace, not the batch's.
    span: Span,
    reply: oneshot::Sender<Result<Accepted, SmallSendError>>,
}

/// Hands small sends to the batch writer. Cheap to clone.
#[derive(Clone)]
pub struct AcceptBatcher {
    queue: mpsc::Sender<Waiting>,
}

impl AcceptBatcher {
    /// Starts the batch writer; it ends once every clone of the batcher is dropped.
    pub fn start(db: PgPool, outbox: Outbox) -> AcceptBatcher {
        let (queue, waiting) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(db, outbox, waiting));
        AcceptBatcher { queue }
    }

    /// Stores one small send (meant for a single recipient; any number is stored right),
    /// checking in the same statement that its sender may send, and queues its jobs.
    /// Its span is the parent of the jobs' trace, as `sms::service::accept`'s is for bulks.
    #[tracing::instrument(name = "sms.accept", skip_all, fields(user.id = sender.user_id, message.id, recipients = send.recipients.len()))]
    pub async fn accept(
        &self,
        sender: SendCredential,
        send: NewSend,
    ) -> Result<Accepted, SmallSendError> {
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            sender,
            send,
            span: Span::current(),
            reply,
        };
        self.queue
            .send(waiting)
            .await
            .map_err(|_| SmallSendError::ShuttingDown)?;
        answer.await.map_err(|_| SmallSendError::ShuttingDown)?
    }
}

async fn run(db: PgPool, outbox: Outbox, mut waiting: mpsc::Receiver<Waiting>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        // Take the permit first: while all statements run, calls pile up into the next batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (db, outbox) = (db.clone(), outbox.clone());
        let span = info_span!("sms.accept_batch", messages = batch.len());
        tokio::spawn(
            async move {
                write_batch(&db, &outbox, batch, permit).await;
            }
            .instrument(span),
        );
    }
}

/// Holds `permit` only while the statement runs: answering the callers and queueing their
/// jobs overlap with the next batch's statement.
async fn write_batch(
    db: &PgPool,
    outbox: &Outbox,
    batch: Vec<Waiting>,
    permit: OwnedSemaphorePermit,
) {
    let rows: Vec<SmallMessage> = batch
        .iter()
        .map(|w| SmallMessage {
            user_id: w.sender.user_id,
            token_id: w.sender.token_id,
            body: &w.send.body,
            phones: w.send.recipients.iter().map(PhoneNumber::as_str).collect(),
            traceparent: w.span.in_scope(current_traceparent),
        })
        .collect();
    let stored = repo::insert_small_messages(db, &rows).await;
    drop(permit);
    drop(rows);
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            let e = Arc::new(e);
            for w in batch {
                let _ = w.reply.send(Err(SmallSendError::Database(e.clone())));
            }
            return;
        }
    };
    for (w, outcome) in batch.into_iter().zip(stored.outcomes) {
        let answer = match outcome {
            SmallOutcome::Refused(Refusal::Disabled) => Err(SmallSendError::Disabled),
            SmallOutcome::Refused(Refusal::Limited) => Err(SmallSendError::Limited(w.send)),
            SmallOutcome::Refused(Refusal::UnknownUser | Refusal::RevokedToken) => {
                Err(SmallSendError::InvalidCredential)
            }
            SmallOutcome::Stored { message_id } => {
                w.span.record("message.id", message_id);
                Ok(Accepted {
                    id: message_id,
                    status: stored
                        .opted_out
                        .get(&message_id)
                        .copied()
                        .unwrap_or(MessageStatus::Pending),
                    total: w.send.recipients.len(),
                    created_at: stored.created_at,
                })
            }
        };
        let _ = w.reply.send(answer);
    }
    outbox.wake();
}
