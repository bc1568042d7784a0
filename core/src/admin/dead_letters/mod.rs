//! Dead letters: recipients that failed after every retry. Retrying sends them again through
//! the outbox (see `history::service::requeue_failed`); abandoning closes them as failed.

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::PgPool;

mod repo;

use super::audit;
use crate::history::service::requeue_failed;
use crate::history::HistoryError;
use crate::outbox::Outbox;

pub use repo::{list_open, DeadLetter};

/// Sends one dead letter's recipient again.
pub async fn retry(
    db: &PgPool,
    outbox: &Outbox,
    actor_id: i64,
    id: i64,
) -> Result<(), HistoryError> {
    let (message_id, recipient_id) = repo::find_open(db, id)
        .await?
        .ok_or(HistoryError::NotFound)?;
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
    let mut by_message: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (message_id, recipient_id) in repo::all_open(db).await? {
        by_message.entry(message_id).or_default().push(recipient_id);
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
    if !repo::close_abandoned(&mut tx, id).await? {
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
