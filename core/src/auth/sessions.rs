//! The panel's sessions (`web_sessions`): one row per signed-in browser, stored under the
//! digest of its cookie ([`super::token_digest`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A live session with its user's current standing.
pub struct SessionRow {
    pub user_id: i64,
    pub username: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub must_change_password: bool,
    pub csrf_token: String,
    pub last_seen_at: DateTime<Utc>,
}

/// Stores a new session of `user_id` under `id_hash`, expiring after `idle` unused.
pub async fn insert(
    db: &PgPool,
    id_hash: &[u8],
    user_id: i64,
    csrf_token: &str,
    idle: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO web_sessions (id_hash, user_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        id_hash,
        user_id,
        csrf_token,
        idle.as_secs_f64()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes every session past its expiry.
pub async fn delete_expired(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM web_sessions WHERE expires_at < now()")
        .execute(db)
        .await?;
    Ok(())
}

/// Ends one session (logout).
pub async fn delete(db: &PgPool, id_hash: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM web_sessions WHERE id_hash = $1", id_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// The session stored under `id_hash`, unless it expired (idle) or is older than
/// `max_age`.
pub async fn find(
    db: &PgPool,
    id_hash: &[u8],
    max_age: Duration,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as!(
        SessionRow,
        "SELECT s.user_id, u.username, u.is_admin, u.is_active, u.must_change_password,
                s.csrf_token, s.last_seen_at
         FROM web_sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = $1 AND s.expires_at > now()
           AND s.created_at > now() - make_interval(secs => $2)",
        id_hash,
        max_age.as_secs_f64()
    )
    .fetch_optional(db)
    .await
}

/// Slides the idle expiry forward.
pub async fn touch(db: &PgPool, id_hash: &[u8], idle: Duration) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE web_sessions SET last_seen_at = now(), expires_at = now() + make_interval(secs => $2)
         WHERE id_hash = $1",
        id_hash,
        idle.as_secs_f64()
    )
    .execute(db)
    .await?;
    Ok(())
}
