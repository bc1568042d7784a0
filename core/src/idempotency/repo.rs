//! SQL for idempotency keys.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// A live key's message, with what the first answer showed.
#[derive(Debug)]
pub struct PriorRow {
    pub fingerprint: Vec<u8>,
    pub message_id: i64,
    pub created_at: DateTime<Utc>,
    pub total_count: i32,
    /// The SIM card's number when the message went out through one.
    pub sender_sim: Option<String>,
    /// `hkt`, `sim.<id>` or `sim` (the pool).
    pub route: String,
}

/// The message `key` produced within the last `ttl_secs`, if any.
pub async fn find_live(
    db: &PgPool,
    user_id: i64,
    key: &str,
    ttl_secs: f64,
) -> Result<Option<PriorRow>, sqlx::Error> {
    sqlx::query_as!(
        PriorRow,
        r#"SELECT k.fingerprint, m.id AS message_id, m.created_at, m.total_count,
                s.number AS "sender_sim?", m.route
         FROM idempotency_keys k
         JOIN messages m ON m.id = k.message_id
         LEFT JOIN sim_cards s ON m.route = 'sim.' || s.id
         WHERE k.user_id = $1 AND k.key = $2
           AND k.created_at > now() - make_interval(secs => $3)"#,
        user_id,
        key,
        ttl_secs
    )
    .fetch_optional(db)
    .await
}

/// Records `key` → `message_id` in the message's own transaction. False when a live key is
/// already there: another request committed it first (if that request is still running, this
/// statement waits for it on the primary key). An expired key is taken over.
pub async fn insert_key(
    conn: &mut PgConnection,
    user_id: i64,
    key: &str,
    fingerprint: &[u8],
    message_id: i64,
    ttl_secs: f64,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query!(
        "INSERT INTO idempotency_keys AS k (user_id, key, fingerprint, message_id)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, key) DO UPDATE
             SET fingerprint = EXCLUDED.fingerprint, message_id = EXCLUDED.message_id, created_at = now()
             WHERE k.created_at <= now() - make_interval(secs => $5)",
        user_id,
        key,
        fingerprint,
        message_id,
        ttl_secs
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(recorded == 1)
}

/// Deletes up to `limit` keys that expired, oldest first; returns how many went.
pub async fn delete_expired(db: &PgPool, ttl_secs: f64, limit: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM idempotency_keys
             WHERE created_at <= now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2))",
        ttl_secs,
        limit
    )
    .execute(db)
    .await?
    .rows_affected())
}
