//! Accepting sends and reading history. Takes domain types, knows nothing of HTTP.

use std::future::Future;

use chrono::{DateTime, Utc};
use smsgate_shared::domain::{MessageBody, MessageStatus, PhoneNumber};
use smsgate_shared::queue::{current_traceparent, routing};
use sqlx::PgPool;
use tracing::Span;

use super::options::SendOptions;
use super::repo::{self, MessageRow, NewMessage, RecipientRow};
use crate::idempotency::{Fingerprint, KeyClaim, PriorSend};
use crate::outbox::Outbox;
use crate::quota::{self, QuotaError, QuotaRequest};

/// A send that passed validation: at least one distinct recipient, a valid body and
/// coherent options.
#[derive(Debug)]
pub struct NewSend {
    pub recipients: Vec<PhoneNumber>,
    pub body: MessageBody,
    pub options: SendOptions,
}

impl NewSend {
    /// What this send asks for, for an idempotency key: `operation` names the endpoint and
    /// `route` the routing asked for, so one key can't stand for two different requests.
    pub fn fingerprint(&self, operation: &str, route: &str) -> Fingerprint {
        let options = self.options.label();
        let head = [
            operation.as_bytes(),
            route.as_bytes(),
            options.as_bytes(),
            self.body.as_str().as_bytes(),
        ];
        let recipients = self.recipients.iter().map(|p| p.as_str().as_bytes());
        Fingerprint::of(head.into_iter().chain(recipients))
    }
}

/// A message that is durable in PostgreSQL; its jobs are being published.
pub struct Accepted {
    pub id: i64,
    pub status: MessageStatus,
    pub total: usize,
    pub created_at: DateTime<Utc>,
}

impl From<&PriorSend> for Accepted {
    /// The acceptance an earlier request with the same idempotency key was answered with.
    fn from(prior: &PriorSend) -> Accepted {
        Accepted {
            id: prior.message_id,
            status: MessageStatus::Pending,
            total: prior.total,
            created_at: prior.created_at,
        }
    }
}

/// Why a send was not stored.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    /// Another request recorded the send's idempotency key first; nothing was stored.
    #[error("the idempotency key was taken by another request")]
    KeyTaken,
    /// A quota or allowance refused it; nothing was stored or counted.
    #[error(transparent)]
    Quota(QuotaError),
}

impl From<QuotaError> for AcceptError {
    fn from(err: QuotaError) -> AcceptError {
        match err {
            QuotaError::Database(e) => AcceptError::Database(e),
            refused => AcceptError::Quota(refused),
        }
    }
}

/// Charges the send to the user's quotas, last in its transaction: the counters' row locks
/// (which make counting exact across API instances) are then held only until the commit.
pub(super) async fn charge_quotas(
    tx: &mut sqlx::PgConnection,
    user_id: i64,
    send: &NewSend,
) -> Result<(), AcceptError> {
    let request = QuotaRequest {
        recipients: send.recipients.len() as u32,
        priority: send.options.priority,
    };
    Ok(quota::charge(tx, user_id, &request).await?)
}

/// Stores the message and all its recipients in one transaction (with `claim`'s key, if
/// any) and wakes the releaser. Returns once the rows are committed: nothing is accepted
/// that is not durable, and the release queue can't lose a recipient.
#[tracing::instrument(name = "sms.accept", skip_all, fields(user.id = user_id, message.id, recipients = send.recipients.len()))]
pub async fn accept(
    db: &PgPool,
    outbox: &Outbox,
    user_id: i64,
    send: NewSend,
    claim: Option<&KeyClaim>,
) -> Result<Accepted, AcceptError> {
    let total = send.recipients.len();
    let message = NewMessage {
        body: &send.body,
        route: routing::HKT,
        options: &send.options,
        traceparent: current_traceparent(),
    };
    let mut tx = db.begin().await?;
    let (id, created_at) =
        repo::insert_message_with_recipients(&mut tx, user_id, &message, &send.recipients).await?;
    let opted_out = crate::optout::mark_accepted(&mut tx, id, user_id, total).await?;
    if let Some(claim) = claim {
        if !claim.record(&mut tx, user_id, id).await? {
            return Err(AcceptError::KeyTaken); // dropping `tx` rolls the message back
        }
    }
    charge_quotas(&mut tx, user_id, &send).await?;
    tx.commit().await?;
    Span::current().record("message.id", id);
    outbox.wake();
    Ok(Accepted {
        id,
        status: opted_out.unwrap_or_else(|| send.options.initial_status()),
        total,
        created_at,
    })
}

/// One page of a listing, with the figures the panel's clients read.
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

impl<T> Page<T> {
    /// Page `page` (from 1) of `per_page` rows: runs `list(limit, offset)` and `count`
    /// concurrently, so a listing and its total are read in one round trip's time.
    pub async fn fetch<L, C>(
        page: i64,
        per_page: i64,
        list: impl FnOnce(i64, i64) -> L,
        count: C,
    ) -> Result<Page<T>, sqlx::Error>
    where
        L: Future<Output = Result<Vec<T>, sqlx::Error>>,
        C: Future<Output = Result<i64, sqlx::Error>>,
    {
        let (items, total) = tokio::try_join!(list(per_page, (page - 1) * per_page), count)?;
        Ok(Page {
            items,
            total,
            page,
            per_page,
        })
    }

    pub fn pages(&self) -> i64 {
        (self.total + self.per_page - 1) / self.per_page
    }
}

pub async fn find_message(
    db: &PgPool,
    user_id: i64,
    id: i64,
) -> Result<Option<MessageRow>, sqlx::Error> {
    repo::find_own_message(db, user_id, id).await
}

/// The recipients of the caller's own message `id`; `None` if there is no such message.
pub async fn list_recipients(
    db: &PgPool,
    user_id: i64,
    id: i64,
    page: i64,
    per_page: i64,
) -> Result<Option<(MessageRow, Page<RecipientRow>)>, sqlx::Error> {
    let Some(message) = repo::find_own_message(db, user_id, id).await? else {
        return Ok(None);
    };
    let items = repo::list_recipients(db, id, per_page, (page - 1) * per_page).await?;
    let total = i64::from(message.total_count);
    Ok(Some((
        message,
        Page {
            items,
            total,
            page,
            per_page,
        },
    )))
}
