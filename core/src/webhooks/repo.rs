//! SQL of webhook endpoints and their deliveries, API side. One function per statement;
//! every statement is scoped to the owner, so another user's webhook is "not found".

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

/// A registered endpoint, without its secret.
#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub id: i64,
    pub url: String,
    pub description: String,
    pub is_active: bool,
    /// The events it subscribes to (`message.status`, `message.received`).
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How many webhooks the user has, after locking the user's row for the rest of the
/// transaction (`FOR NO KEY UPDATE`: it waits for another registration of the same user,
/// but not for foreign-key checks).
pub async fn count_for_user_locked(
    tx: &mut Transaction<'_, Postgres>,
    user_id: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query!(
        "SELECT 1 AS locked FROM users WHERE id = $1 FOR NO KEY UPDATE",
        user_id
    )
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM webhooks WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(&mut **tx)
    .await
}

/// The id the next webhook will get: its secret is sealed to its id, before the insert.
pub async fn next_id(tx: &mut Transaction<'_, Postgres>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT nextval(pg_get_serial_sequence('webhooks', 'id')) AS "id!""#)
        .fetch_one(&mut **tx)
        .await
}

/// Inserts a webhook under an id from [`next_id`]; `sealed_secret` is the encrypted secret.
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    user_id: i64,
    url: &str,
    sealed_secret: &str,
    description: &str,
    events: &[String],
) -> Result<WebhookRow, sqlx::Error> {
    sqlx::query_as!(
        WebhookRow,
        "INSERT INTO webhooks (id, user_id, url, secret, description, events)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, url, description, is_active, events, created_at, updated_at",
        id,
        user_id,
        url,
        sealed_secret,
        description,
        events
    )
    .fetch_one(&mut **tx)
    .await
}

pub async fn list(db: &PgPool, user_id: i64) -> Result<Vec<WebhookRow>, sqlx::Error> {
    sqlx::query_as!(
        WebhookRow,
        "SELECT id, url, description, is_active, events, created_at, updated_at
         FROM webhooks WHERE user_id = $1 ORDER BY id",
        user_id
    )
    .fetch_all(db)
    .await
}

pub async fn find(db: &PgPool, user_id: i64, id: i64) -> Result<Option<WebhookRow>, sqlx::Error> {
    sqlx::query_as!(
        WebhookRow,
        "SELECT id, url, description, is_active, events, created_at, updated_at
         FROM webhooks WHERE id = $1 AND user_id = $2",
        id,
        user_id
    )
    .fetch_optional(db)
    .await
}

/// Applies the changes given (`None` keeps a field).
pub async fn update(
    tx: &mut Transaction<'_, Postgres>,
    user_id: i64,
    id: i64,
    url: Option<&str>,
    description: Option<&str>,
    is_active: Option<bool>,
    events: Option<&[String]>,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    sqlx::query_as!(
        WebhookRow,
        "UPDATE webhooks SET
             url = COALESCE($3, url),
             description = COALESCE($4, description),
             is_active = COALESCE($5, is_active),
             events = COALESCE($6, events),
             updated_at = now()
         WHERE id = $1 AND user_id = $2
         RETURNING id, url, description, is_active, events, created_at, updated_at",
        id,
        user_id,
        url,
        description,
        is_active,
        events
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Replaces the signing secret (`sealed_secret`, encrypted); false if there is no such
/// webhook of this user.
pub async fn set_secret(
    tx: &mut Transaction<'_, Postgres>,
    user_id: i64,
    id: i64,
    sealed_secret: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE webhooks SET secret = $3, updated_at = now() WHERE id = $1 AND user_id = $2",
        id,
        user_id,
        sealed_secret
    )
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// A stored secret, as it is in the row (plain text in rows older than encryption).
pub struct StoredSecret {
    pub id: i64,
    pub secret: String,
}

/// Every webhook whose secret does not start with `sealed_prefix` (the stored form under
/// the current key): plain text left from before encryption, or sealed under an older key.
pub async fn secrets_to_reseal(
    db: &PgPool,
    sealed_prefix: &str,
) -> Result<Vec<StoredSecret>, sqlx::Error> {
    sqlx::query_as!(
        StoredSecret,
        "SELECT id, secret FROM webhooks WHERE NOT starts_with(secret, $1) ORDER BY id",
        sealed_prefix
    )
    .fetch_all(db)
    .await
}

/// Replaces a secret with its re-sealed form, if it is still `old`: a user rotating it
/// meanwhile (or another API replica re-sealing it first) wins. False when it had changed.
pub async fn replace_secret(
    db: &PgPool,
    id: i64,
    old: &str,
    sealed_secret: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE webhooks SET secret = $3 WHERE id = $1 AND secret = $2",
        id,
        old,
        sealed_secret
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Deletes the webhook and, by cascade, its deliveries; its URL for the audit log.
pub async fn delete(
    tx: &mut Transaction<'_, Postgres>,
    user_id: i64,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "DELETE FROM webhooks WHERE id = $1 AND user_id = $2 RETURNING url",
        id,
        user_id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Queues a `webhook.test` delivery, due now; its id.
pub async fn insert_test_delivery(
    db: &PgPool,
    webhook_id: i64,
    payload: &serde_json::Value,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
         VALUES ($1, 'webhook.test', $2) RETURNING id",
        webhook_id,
        payload
    )
    .fetch_one(db)
    .await
}

/// One delivery as `GET /api/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_type: String,
    pub message_id: Option<i64>,
    pub payload: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A page of a webhook's deliveries, newest first, optionally of one status. `before` is
/// the last id of the previous page (keyset: the table churns, offsets would skip rows).
pub async fn list_deliveries(
    db: &PgPool,
    webhook_id: i64,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as!(
        DeliveryRow,
        "SELECT id, event_type, message_id, payload, status, attempts, last_status_code,
                last_error, next_attempt_at, created_at, completed_at
         FROM webhook_deliveries
         WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::bigint IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
        webhook_id,
        status,
        before,
        limit
    )
    .fetch_all(db)
    .await
}

/// Puts a failed delivery back in line with a fresh schedule; false if it is not a failed
/// delivery of this webhook.
pub async fn requeue_failed(db: &PgPool, webhook_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE webhook_deliveries
         SET status = 'pending', attempts = 0, next_attempt_at = now(), completed_at = NULL
         WHERE id = $1 AND webhook_id = $2 AND status = 'failed'",
        id,
        webhook_id
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}
