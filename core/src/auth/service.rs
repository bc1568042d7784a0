//! Login, request authentication and the default admin. No HTTP types here: the web
//! panel will call the same functions.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tracing::{info, warn};

use super::credentials::{hash_password, looks_like_jwt, ApiToken, JwtKeys, MAX_PASSWORD_BYTES};
use super::gate::{GateError, PasswordGate};
use super::repo;
use super::settings::LoginSettings;
use super::throttle::{self, Verdict};
use crate::admin::audit;

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
    /// The account's password must be changed (in the panel) before it may use the API.
    #[error("the password must be changed first")]
    PasswordChangeRequired,
    /// The login throttle refused the attempt before checking the password.
    #[error("too many failed login attempts")]
    TooManyAttempts { retry_after: Duration },
    /// Every password-hashing slot stayed busy for the whole wait.
    #[error("password checks are at capacity")]
    Busy,
    /// Longer than [`MAX_PASSWORD_BYTES`]; refused before hashing.
    #[error("the password is too long")]
    PasswordTooLong,
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
    /// The panel then sends the user to the password page; the API refuses them.
    pub must_change_password: bool,
}

impl Login {
    /// For API logins: a pending forced password change is to be done in the panel first.
    pub fn require_current_password(self) -> Result<Login, AuthError> {
        if self.must_change_password {
            return Err(AuthError::PasswordChangeRequired);
        }
        Ok(self)
    }
}

/// What every login needs beside the credentials: the throttle's budgets and the bound on
/// hashing. Borrowed from the application state.
#[derive(Clone, Copy)]
pub struct LoginLimits<'a> {
    pub settings: &'a LoginSettings,
    pub gate: &'a PasswordGate,
}

/// Refuses a password too long to be worth hashing.
pub fn check_password_length(password: &str) -> Result<(), AuthError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::PasswordTooLong);
    }
    Ok(())
}

/// Checks a username and password from `address` and issues a JWT: every way to log in
/// (panel, `POST /api/auth/login`, `POST /api/auth`) comes through here, so one throttle and
/// one hashing bound cover them all. Unknown users cost the same argon2 work as wrong
/// passwords, so response time does not reveal which usernames exist.
#[tracing::instrument(name = "auth.login", skip_all)]
pub async fn login(
    db: &PgPool,
    keys: &JwtKeys,
    limits: LoginLimits<'_>,
    username: &str,
    password: &str,
    address: &str,
) -> Result<Login, AuthError> {
    check_password_length(password)?;
    let charge = match throttle::charge(db, limits.settings, username, address).await? {
        Verdict::Allowed(charge) => charge,
        Verdict::Refused { retry_after } => {
            warn!(retry_after = retry_after.as_secs(), "login throttled");
            return Err(AuthError::TooManyAttempts { retry_after });
        }
    };
    let checked = check_credentials(db, limits.gate, username, password).await;
    match checked {
        Ok(Some(user)) => {
            throttle::succeeded(db, charge).await?;
            if !user.is_active {
                return Err(AuthError::Disabled);
            }
            let access_token =
                keys.issue_with_epoch(user.id, &user.username, user.credentials_epoch)?;
            Ok(Login {
                access_token,
                expires_in: keys.lifetime.num_seconds(),
                must_change_password: user.must_change_password,
                user: Caller {
                    id: user.id,
                    username: user.username,
                    is_admin: user.is_admin,
                },
            })
        }
        Ok(None) => {
            throttle::failed(db, limits.settings, charge).await?;
            Err(AuthError::InvalidCredentials)
        }
        Err(e) => {
            throttle::undecided(db, charge).await?;
            Err(e)
        }
    }
}

/// The user, if the password is theirs.
async fn check_credentials(
    db: &PgPool,
    gate: &PasswordGate,
    username: &str,
    password: &str,
) -> Result<Option<repo::UserRow>, AuthError> {
    let user = repo::find_user_by_username(db, username).await?;
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_owned());
    let matches = gate.verify(password, stored).await?;
    Ok(user.filter(|_| matches))
}

impl From<GateError> for AuthError {
    fn from(err: GateError) -> AuthError {
        match err {
            GateError::Busy(_) => AuthError::Busy,
            GateError::Internal(e) => AuthError::Internal(e),
        }
    }
}

/// An argon2id hash of a random string, verified against when the username is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2oTqQdUe9cORPOe8YtxCbJ+iJoGeNz5zoY6SFrUrvBE";

/// Resolves a bearer credential: a JWT from login or a per-user API token. The user's
/// `is_active` flag is read on every request, so disabling a user takes effect at once.
#[tracing::instrument(name = "auth.authenticate", skip_all)]
pub async fn authenticate(db: &PgPool, keys: &JwtKeys, token: &str) -> Result<Caller, AuthError> {
    if looks_like_jwt(token) {
        let jwt = keys.verify(token).ok_or(AuthError::InvalidToken)?;
        let user = repo::find_user_by_id(db, jwt.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        // Issued before the latest password change or reset: revoked.
        if user.credentials_epoch != jwt.epoch {
            return Err(AuthError::InvalidToken);
        }
        if !user.is_active {
            return Err(AuthError::Disabled);
        }
        if user.must_change_password {
            return Err(AuthError::PasswordChangeRequired);
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
    if owner.must_change_password {
        return Err(AuthError::PasswordChangeRequired);
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

/// The label of keys `POST /api/auth` mints.
pub const LOGIN_KEY_LABEL: &str = "POST /api/auth";

/// Mints the API key `POST /api/auth` returns, revokes that user's auto-minted keys beyond
/// the `keep` newest, and audits both (token ids and address, never the key), in one
/// transaction. The plain key is returned once and never stored.
#[tracing::instrument(name = "auth.mint_login_key", skip_all, fields(user.id = user_id))]
pub async fn mint_login_api_key(
    db: &PgPool,
    user_id: i64,
    address: &str,
    keep: i64,
) -> Result<String, AuthError> {
    let token = ApiToken::generate();
    let mut tx = db.begin().await?;
    let token_id = repo::insert_api_token(&mut *tx, user_id, &token.hash, LOGIN_KEY_LABEL).await?;
    let revoked =
        repo::revoke_labelled_tokens_beyond(&mut tx, user_id, LOGIN_KEY_LABEL, keep).await?;
    audit::record(
        &mut *tx,
        Some(user_id),
        "token.mint",
        &format!("user:{user_id}"),
        serde_json::json!({
            "via": LOGIN_KEY_LABEL,
            "token_id": token_id,
            "address": address,
            "revoked_token_ids": revoked,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(token.plain)
}

/// Revokes every key of the user and issues one new key, in one transaction with its
/// `token.mint` audit entry (the key's id and who asked from where, never the key).
pub async fn replace_api_keys(
    db: &PgPool,
    user_id: i64,
    address: &str,
) -> Result<String, AuthError> {
    let token = ApiToken::generate();
    let mut tx = db.begin().await?;
    let revoked = repo::revoke_api_tokens(&mut *tx, user_id).await?;
    let token_id =
        repo::insert_api_token(&mut *tx, user_id, &token.hash, GENERATED_KEY_LABEL).await?;
    audit::record(
        &mut *tx,
        Some(user_id),
        "token.mint",
        &format!("user:{user_id}"),
        serde_json::json!({
            "via": GENERATED_KEY_LABEL,
            "token_id": token_id,
            "address": address,
            "revoked_count": revoked,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(token.plain)
}

/// The label of keys minted by `POST /api/generate-api-key`, in the key list and the audit.
const GENERATED_KEY_LABEL: &str = "POST /api/generate-api-key";

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
            audit::record(
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
    use crate::auth::verify_password;

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        // If this broke, unknown usernames would return faster than wrong passwords.
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("anything", DUMMY_HASH));
    }
}
