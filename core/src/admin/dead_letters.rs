//! Dead letters: recipients that failed after every retry. Retrying sends them again through
//! the outbox (see `history::service::requeue_failed`); abandoning closes them as failed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::audit;
use crate::history::service::requeue_failed;
use crate::history::HistoryError;
use crate::outbox::Outbox;

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub message_id: i64,
    pub recipient_id: i64,
    pub phone: String,
    pub reason: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Open dead letters, newest first; `before` is the last id of the previous page.
pub async fn list_open(
    db: &PgPool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as!(
        DeadLetter,
        "SELECT d.id, d.message_id, d.recipient_id, r.phone, d.reason, d.attempts, d.created_at
         FROM dead_letters d JOIN recipients r ON r.id = d.recipient_id
         WHERE d.resolved_at IS NULL AND ($1::bigint IS NULL OR d.id < $1)
         ORDER BY d.id DESC LIMIT $2",
        before,
        limit
    )
    .fetch_all(db)
    .await
}

async fn find_open(db: &PgPool, id: i64) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let open = sqlx::query!(
        "SELECT message_id, recipient_id FROM dead_letters WHERE id = $1 AND resolved_at IS NULL",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(open.map(|d| (d.message_id, d.recipient_id)))
}

/// Sends one dead letter's recipient again.
pub async fn retry(
    db: &PgPool,
    outbox: &Outbox,
    actor_id: i64,
    id: i64,
) -> Result<(), HistoryError> {
    let (message_id, recipient_id) = find_open(db, id).await?.ok_or(HistoryError::NotFound)?;
    requeue_failed(db, outbox, actor_id, message_id, Some(&[recipient_id])).await?;
    Ok(())
}

/// What "retry all" did: recipients requeued, and dead letters left open because their
/// message is still being sent.
#[derive(Debug, Default)]
pub struct RetryAll {
    pub requeued: usize,
    pub skipped: usize,
}

/// Retries every open dead letter, one message at a time.
pub async fn retry_all(
    db: &PgPool,
    outbox: &Outbox,
    actor_id: i64,
) -> Result<RetryAll, HistoryError> {
    let open = sqlx::query!(
        "SELECT message_id, recipient_id FROM dead_letters WHERE resolved_at IS NULL ORDER BY id"
    )
    .fetch_all(db)
    .await?;
    let mut by_message: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for letter in open {
        by_message
            .entry(letter.message_id)
            .or_default()
            .push(letter.recipient_id);
    }
    let mut outcome = RetryAll::default();
    for (message_id, recipients) in by_message {
        match requeue_failed(db, outbox, actor_id, message_id, Some(&recipients)).await {
            Ok(requeued) => outcome.requeued += requeued.recipients,
            Err(HistoryError::NotRetryable(_)) | Err(HistoryError::NotFound) => {
                outcome.skipped += recipients.len()
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outcome)
}

/// Closes a dead letter without sending; its recipient stays failed.
pub async fn abandon(db: &PgPool, actor_id: i64, id: i64) -> Result<(), HistoryError> {
    let mut tx = db.begin().await?;
    let closed = sqlx::query!(
        "UPDATE dead_letters SET resolved_at = now(), resolution = 'abandoned'
         WHERE id = $1 AND resolved_at IS NULL",
        id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if closed == 0 {
        return Err(HistoryError::NotFound);
    }
    audit::record(
        &mut *tx,
        Some(actor_id),
        "dead_letter.abandon",
        &format!("dead_letter:{id}"),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
