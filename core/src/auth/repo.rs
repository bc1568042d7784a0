//! SQL for users and API tokens. One function per statement.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};

/// What authentication needs to know about a user.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub must_change_password: bool,
    /// Bumped by every password change or reset; JWTs of another epoch are refused.
    pub credentials_epoch: i32,
}

/// A user found through one of their API tokens.
#[derive(Debug, Clone)]
pub struct TokenOwnerRow {
    pub token_id: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub user_id: i64,
    pub username: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub must_change_password: bool,
}

pub async fn find_user_by_username(
    db: &PgPool,
    username: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as!(
        UserRow,
        "SELECT id, username, password_hash, is_admin, is_active, must_change_password,
                credentials_epoch
         FROM users WHERE lower(username) = lower($1)",
        username
    )
    .fetch_optional(db)
    .await
}

pub async fn find_user_by_id(db: &PgPool, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as!(
        UserRow,
        "SELECT id, username, password_hash, is_admin, is_active, must_change_password,
                credentials_epoch
         FROM users WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn find_token_owner(
    db: &PgPool,
    token_hash: &[u8],
) -> Result<Option<TokenOwnerRow>, sqlx::Error> {
    sqlx::query_as!(
        TokenOwnerRow,
        "SELECT t.id AS token_id, t.last_used_at, u.id AS user_id, u.username, u.is_admin, u.is_active,
                u.must_change_password
         FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        token_hash
    )
    .fetch_optional(db)
    .await
}

/// Whether the token exists and is not revoked (a deleted user's tokens are gone).
pub async fn token_is_unrevoked(db: &PgPool, token_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM api_tokens WHERE id = $1 AND revoked_at IS NULL) AS "unrevoked!""#,
        token_id
    )
    .fetch_one(db)
    .await
}

pub async fn touch_token(db: &PgPool, token_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = $1",
        token_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn count_users(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM users"#)
        .fetch_one(db)
        .await
}

pub async fn insert_user(
    db: &PgPool,
    username: &str,
    password_hash: &str,
    is_admin: bool,
    must_change_password: bool,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO users (username, password_hash, is_admin, must_change_password)
         VALUES ($1, $2, $3, $4) RETURNING id",
        username,
        password_hash,
        is_admin,
        must_change_password
    )
    .fetch_one(db)
    .await
}

/// Stores a new API token's hash through `db`: the pool, or a transaction's connection
/// when the token is minted together with other changes.
pub async fn insert_api_token<'e>(
    db: impl PgExecutor<'e>,
    user_id: i64,
    token_hash: &[u8],
    label: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO api_tokens (user_id, token_hash, label) VALUES ($1, $2, $3) RETURNING id",
        user_id,
        token_hash,
        label
    )
    .fetch_one(db)
    .await
}

/// What a JWT's validity depends on beyond its signature: the account's standing now.
#[derive(Debug, Clone, Copy)]
pub struct CredentialState {
    pub is_active: bool,
    pub must_change_password: bool,
    pub credentials_epoch: i32,
}

pub async fn credential_state(
    db: &PgPool,
    user_id: i64,
) -> Result<Option<CredentialState>, sqlx::Error> {
    sqlx::query_as!(
        CredentialState,
        "SELECT is_active, must_change_password, credentials_epoch FROM users WHERE id = $1",
        user_id
    )
    .fetch_optional(db)
    .await
}

/// What [`revoke_credentials`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    pub api_tokens: u64,
    pub sessions: u64,
}

/// Ends every credential issued before a password change: bumps the credentials epoch
/// (earlier JWTs), revokes the API tokens and deletes the panel sessions except
/// `keep_session` (the one changing its own password). Call in the password's transaction.
pub async fn revoke_credentials(
    conn: &mut PgConnection,
    user_id: i64,
    keep_session: Option<&[u8]>,
) -> Result<Revoked, sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET credentials_epoch = credentials_epoch + 1 WHERE id = $1",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    let api_tokens = revoke_api_tokens(&mut *conn, user_id).await?;
    let sessions = sqlx::query!(
        "DELETE FROM web_sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR id_hash <> $2)",
        user_id,
        keep_session
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Revoked {
        api_tokens,
        sessions,
    })
}

/// Revokes every unrevoked API token of the user; returns how many.
pub async fn revoke_api_tokens<'e>(
    db: impl PgExecutor<'e>,
    user_id: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Revokes the user's unrevoked keys labelled `label` beyond the `keep` newest; returns
/// the ids revoked.
pub async fn revoke_labelled_tokens_beyond(
    conn: &mut PgConnection,
    user_id: i64,
    label: &str,
    keep: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE id IN (SELECT id FROM api_tokens
                      WHERE user_id = $1 AND label = $2 AND revoked_at IS NULL
                      ORDER BY created_at DESC, id DESC OFFSET $3)
         RETURNING id",
        user_id,
        label,
        keep
    )
    .fetch_all(conn)
    .await
}
