//! SQL of user administration. One function per statement.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

/// A user as administrators see it: never the password hash.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    /// API tokens that still work.
    pub tokens: i64,
    /// Sending limits (issue #14); NULL is unlimited / none.
    pub daily_recipient_limit: Option<i32>,
    pub requests_per_second: Option<i32>,
    pub high_priority_per_minute: i32,
    pub share_weight: i32,
    pub default_valid_for_secs: Option<i32>,
}

impl UserSummary {
    /// The user's sending limits, as the limits form and `LimitsChange` work with them.
    pub fn limits(&self) -> SendingLimits {
        SendingLimits {
            daily_recipient_limit: self.daily_recipient_limit,
            requests_per_second: self.requests_per_second,
            high_priority_per_minute: self.high_priority_per_minute,
            share_weight: self.share_weight,
            default_valid_for_secs: self.default_valid_for_secs,
        }
    }
}

/// A user's sending limits as stored (see migration 20261206000015): `None` is unlimited
/// or, for the validity, no default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendingLimits {
    pub daily_recipient_limit: Option<i32>,
    pub requests_per_second: Option<i32>,
    pub high_priority_per_minute: i32,
    pub share_weight: i32,
    pub default_valid_for_secs: Option<i32>,
}

pub async fn list_users(db: &PgPool) -> Result<Vec<UserSummary>, sqlx::Error> {
    sqlx::query_as!(
        UserSummary,
        r#"SELECT u.id, u.username, u.is_admin, u.is_active, u.must_change_password, u.created_at,
                (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL) AS "tokens!",
                u.daily_recipient_limit, u.requests_per_second, u.high_priority_per_minute,
                u.share_weight, u.default_valid_for_secs
         FROM users u ORDER BY lower(u.username)"#
    )
    .fetch_all(db)
    .await
}

pub async fn find_user(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<Option<UserSummary>, sqlx::Error> {
    sqlx::query_as!(
        UserSummary,
        r#"SELECT u.id, u.username, u.is_admin, u.is_active, u.must_change_password, u.created_at,
                (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL) AS "tokens!",
                u.daily_recipient_limit, u.requests_per_second, u.high_priority_per_minute,
                u.share_weight, u.default_valid_for_secs
         FROM users u WHERE u.id = $1"#,
        id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Locks every active admin row, in id order, and returns their ids. Every change that could
/// remove the last admin takes these locks first, so two admins disabling each other at the
/// same moment are serialised and one of them is refused.
pub async fn lock_active_admins(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM users WHERE is_admin AND is_active ORDER BY id FOR UPDATE")
        .fetch_all(&mut **tx)
        .await
}

pub async fn insert_user(
    tx: &mut Transaction<'_, Postgres>,
    username: &str,
    password_hash: &str,
    is_admin: bool,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO users (username, password_hash, is_admin) VALUES ($1, $2, $3) RETURNING id",
        username,
        password_hash,
        is_admin
    )
    .fetch_one(&mut **tx)
    .await
}

pub async fn set_password(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2, must_change_password = FALSE, updated_at = now() WHERE id = $1",
        id,
        password_hash
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_active(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    active: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET is_active = $2, updated_at = now() WHERE id = $1",
        id,
        active
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_admin(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    admin: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET is_admin = $2, updated_at = now() WHERE id = $1",
        id,
        admin
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Locks the user's row for a change of their limits and returns the limits it holds, so
/// two admins changing different limits at once never write back each other's old values.
pub async fn lock_limits(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<Option<SendingLimits>, sqlx::Error> {
    sqlx::query_as!(
        SendingLimits,
        "SELECT daily_recipient_limit, requests_per_second, high_priority_per_minute,
                share_weight, default_valid_for_secs
         FROM users WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Writes all five limits (merged under `lock_limits`' lock by the caller).
pub async fn set_limits(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    limits: &SendingLimits,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users
         SET daily_recipient_limit = $2, requests_per_second = $3, high_priority_per_minute = $4,
             share_weight = $5, default_valid_for_secs = $6, updated_at = now()
         WHERE id = $1",
        id,
        limits.daily_recipient_limit,
        limits.requests_per_second,
        limits.high_priority_per_minute,
        limits.share_weight,
        limits.default_valid_for_secs
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn delete_user(tx: &mut Transaction<'_, Postgres>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM users WHERE id = $1", id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Ends every panel session of a user (disable, password change, delete).
pub async fn delete_sessions_of(
    tx: &mut Transaction<'_, Postgres>,
    user_id: i64,
    except_id_hash: Option<&[u8]>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM web_sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR id_hash <> $2)",
        user_id,
        except_id_hash
    )
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

pub async fn revoke_tokens_of(
    tx: &mut Transaction<'_, Postgres>,
    user_id: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id
    )
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

pub async fn insert_token(
    tx: &mut Transaction<'_, Postgres>,
    user_id: i64,
    token_hash: &[u8],
    label: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO api_tokens (user_id, token_hash, label) VALUES ($1, $2, $3)",
        user_id,
        token_hash,
        label
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn password_hash_of(db: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", id)
        .fetch_optional(db)
        .await
}

pub async fn count_messages_of(db: &PgPool, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM messages WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(db)
    .await
}
