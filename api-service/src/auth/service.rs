//! Login, request authentication and the default admin. No HTTP types here: the web
//! panel will call the same functions.

use chrono::Utc;
use sqlx::PgPool;
use tracing::{info, warn};

use super::credentials::{hash_password, looks_like_jwt, verify_password, ApiToken, JwtKeys};
use super::repo;

/// The account the replaced SMS panel created on first run; its clients log in with it.
pub const DEFAULT_ADMIN: &str = "SMSadmin";

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("account is disabled")]
    Disabled,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

/// A successful login.
pub struct Login {
    pub access_token: String,
    pub expires_in: i64,
    pub user: Caller,
}

/// Checks a username and password and issues a JWT. Unknown users cost the same argon2
/// work as wrong passwords, so response time does not reveal which usernames exist.
#[tracing::instrument(name = "auth.login", skip_all)]
pub async fn login(
    db: &PgPool,
    keys: &JwtKeys,
    username: &str,
    password: &str,
) -> Result<Login, AuthError> {
    let user = repo::find_user_by_username(db, username).await?;
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_owned());
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .map_err(|e| anyhow::anyhow!("password check task failed: {e}"))?;
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(AuthError::InvalidCredentials),
    };
    if !user.is_active {
        return Err(AuthError::Disabled);
    }
    let access_token = keys.issue(user.id, &user.username)?;
    Ok(Login {
        access_token,
        expires_in: keys.lifetime.num_seconds(),
        user: Caller {
            id: user.id,
            username: user.username,
            is_admin: user.is_admin,
        },
    })
}

/// An argon2id hash of a random string, verified against when the username is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2oTqQdUe9cORPOe8YtxCbJ+iJoGeNz5zoY6SFrUrvBE";

/// Resolves a bearer credential: a JWT from login or a per-user API token. The user's
/// `is_active` flag is read on every request, so disabling a user takes effect at once.
#[tracing::instrument(name = "auth.authenticate", skip_all)]
pub async fn authenticate(db: &PgPool, keys: &JwtKeys, token: &str) -> Result<Caller, AuthError> {
    if looks_like_jwt(token) {
        let user_id = keys.verify(token).ok_or(AuthError::InvalidToken)?;
        let user = repo::find_user_by_id(db, user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if !user.is_active {
            return Err(AuthError::Disabled);
        }
        return Ok(Caller {
            id: user.id,
            username: user.username,
            is_admin: user.is_admin,
        });
    }
    let owner = resolve_api_token(db, token).await?;
    Ok(Caller {
        id: owner.user_id,
        username: owner.username,
        is_admin: owner.is_admin,
    })
}

/// The owner of an unrevoked API token whose account is active. Records the token's use,
/// at most once a minute per token and off the request path.
pub(super) async fn resolve_api_token(
    db: &PgPool,
    token: &str,
) -> Result<repo::TokenOwnerRow, AuthError> {
    let owner = repo::find_token_owner(db, &ApiToken::hash(token))
        .await?
        .ok_or(AuthError::InvalidToken)?;
    if !owner.is_active {
        return Err(AuthError::Disabled);
    }
    if owner
        .last_used_at
        .is_none_or(|at| Utc::now() - at > chrono::Duration::minutes(1))
    {
        let db = db.clone();
        let token_id = owner.token_id;
        tokio::spawn(async move {
            if let Err(e) = repo::touch_token(&db, token_id).await {
                warn!(error = %e, "could not record token use");
            }
        });
    }
    Ok(owner)
}

/// Issues a new API token for `user_id`; the plain text is returned once and never stored.
pub async fn issue_api_token(db: &PgPool, user_id: i64, label: &str) -> Result<String, AuthError> {
    let token = ApiToken::generate();
    repo::insert_api_token(db, user_id, &token.hash, label).await?;
    Ok(token.plain)
}

/// What `ensure_default_admin` did.
#[derive(Debug, PartialEq, Eq)]
pub enum DefaultAdmin {
    /// Users exist already; nothing was created.
    AlreadyProvisioned,
    /// Created with the configured ADMIN_PASSWORD.
    CreatedWithConfiguredPassword,
    /// Created with this generated password, which must be changed at first web login.
    CreatedWithGeneratedPassword(String),
}

/// On first start (no users at all) creates the `SMSadmin` admin. Safe to call from
/// several instances starting together: the unique username index lets only one win.
pub async fn ensure_default_admin(
    db: &PgPool,
    configured_password: Option<&str>,
) -> Result<DefaultAdmin, AuthError> {
    if repo::count_users(db).await? > 0 {
        return Ok(DefaultAdmin::AlreadyProvisioned);
    }
    let (password, generated) = match configured_password {
        Some(p) => (p.to_owned(), false),
        None => (
            ApiToken::generate().plain.trim_start_matches("sgk_")[..16].to_owned(),
            true,
        ),
    };
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&to_hash))
        .await
        .map_err(|e| anyhow::anyhow!("hashing task failed: {e}"))??;
    match repo::insert_user(db, DEFAULT_ADMIN, &hash, true, generated).await {
        Ok(id) => {
            repo::insert_audit(
                db,
                None,
                "user.create",
                &format!("user:{id}"),
                serde_json::json!({"username": DEFAULT_ADMIN, "reason": "first start"}),
            )
            .await?;
            info!(user.id = id, "created the default admin {DEFAULT_ADMIN}");
            Ok(if generated {
                DefaultAdmin::CreatedWithGeneratedPassword(password)
            } else {
                DefaultAdmin::CreatedWithConfiguredPassword
            })
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Ok(DefaultAdmin::AlreadyProvisioned)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        // If this broke, unknown usernames would return faster than wrong passwords.
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("anything", DUMMY_HASH));
    }
}
