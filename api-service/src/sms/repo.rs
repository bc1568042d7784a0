//! SQL for messages and recipients. One function per statement; bulk writes use UNNEST.

use chrono::{DateTime, Utc};
use smsgate_shared::domain::{MessageBody, MessageStatus, RecipientStatus};
use sqlx::PgPool;

/// A message as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub user_id: i64,
    pub content: String,
    pub encoding: String,
    pub segments: i32,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// One recipient of a message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecipientRow {
    pub id: i64,
    pub phone: String,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A message and its recipients as stored.
pub struct InsertedMessage {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    /// (recipient id, E.164 phone), each pair from the same row.
    pub recipients: Vec<(i64, String)>,
}

/// Inserts the message (holding the publish lease, so the reconciler leaves it to us) and
/// all its recipients in one statement: one round trip and one commit, atomic on its own.
pub async fn insert_message_with_recipients(
    db: &PgPool,
    user_id: i64,
    body: &MessageBody,
    phones: &[&str],
    lease_secs: f64,
) -> Result<InsertedMessage, sqlx::Error> {
    let (id, created_at, ids, stored_phones): (i64, DateTime<Utc>, Vec<i64>, Vec<String>) = sqlx::query_as(
        "WITH m AS (
             INSERT INTO messages (user_id, content, encoding, segments, total_count, publish_lease_until)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
             RETURNING id, created_at),
         r AS (
             INSERT INTO recipients (message_id, phone)
             SELECT m.id, t.phone FROM m, unnest($7::text[]) AS t(phone)
             RETURNING id, phone)
         SELECT m.id, m.created_at,
                COALESCE((SELECT array_agg(id) FROM r), '{}'),
                COALESCE((SELECT array_agg(phone) FROM r), '{}')
         FROM m",
    )
    .bind(user_id)
    .bind(body.as_str())
    .bind(body.encoding().as_str())
    .bind(body.segments() as i32)
    .bind(phones.len() as i32)
    .bind(lease_secs)
    .bind(phones)
    .fetch_one(db)
    .await?;
    Ok(InsertedMessage {
        id,
        created_at,
        recipients: ids.into_iter().zip(stored_phones).collect(),
    })
}

const MESSAGE_COLUMNS: &str =
    "id, user_id, content, encoding, segments, status, total_count, sent_count, \
                               failed_count, created_at, completed_at";

pub async fn list_messages(
    db: &PgPool,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE user_id = $1
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(user_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// The user's message total, kept per user by triggers (see the bulk_insert_speed
/// migration): a sum over at most 16 rows instead of a count over millions.
pub async fn count_messages(db: &PgPool, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(messages), 0)::bigint FROM user_message_counts WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
}

/// The message if it exists and belongs to `user_id`; another user's message is `None`.
pub async fn find_own_message(
    db: &PgPool,
    user_id: i64,
    id: i64,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

pub async fn list_recipients(
    db: &PgPool,
    message_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<RecipientRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, phone, status, attempts, last_error, updated_at, sent_at, delivered_at
         FROM recipients WHERE message_id = $1 ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(message_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}
