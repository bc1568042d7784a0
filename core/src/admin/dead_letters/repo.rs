//! The dead-letter statements (`dead_letters`).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

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

/// Open dead letter `id` as (message, recipient).
pub async fn find_open(db: &PgPool, id: i64) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let open = sqlx::query!(
        "SELECT message_id, recipient_id FROM dead_letters WHERE id = $1 AND resolved_at IS NULL",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(open.map(|d| (d.message_id, d.recipient_id)))
}

/// Every open dead letter as (message, recipient), oldest first.
pub async fn all_open(db: &PgPool) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let open = sqlx::query!(
        "SELECT message_id, recipient_id FROM dead_letters WHERE resolved_at IS NULL ORDER BY id"
    )
    .fetch_all(db)
    .await?;
    Ok(open
        .into_iter()
        .map(|d| (d.message_id, d.recipient_id))
        .collect())
}

/// Closes open dead letter `id` as abandoned; false when there is no such open letter.
pub async fn close_abandoned(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<bool, sqlx::Error> {
    let closed = sqlx::query!(
        "UPDATE dead_letters SET resolved_at = now(), resolution = 'abandoned'
         WHERE id = $1 AND resolved_at IS NULL",
        id
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(closed > 0)
}
