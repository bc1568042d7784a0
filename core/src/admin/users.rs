//! User administration: the rules (never delete or disable yourself, never remove the last
//! active admin, strong passwords) live here once, for the panel and the JSON API alike.

use serde_json::json;
use sqlx::PgPool;
use tracing::{info, warn};

use super::password::{check_password, check_username};
use super::{audit, limits, repo};
use crate::auth::repo::revoke_credentials;
use crate::auth::service::LoginLimits;
use crate::auth::throttle::{self, Verdict};
use crate::auth::{ApiToken, GateError, PasswordGate, MAX_PASSWORD_BYTES};

pub use super::limits::{LimitsChange, Patch};
pub use super::repo::{SendingLimits, UserSummary};

/// Why a user change was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserAdminError {
    /// A field broke a rule; `field` names the form field, `message` says how to fix it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("no such user")]
    NotFound,
    /// The acting admin tried to delete, disable or demote themselves.
    #[error("you cannot {0} yourself")]
    SelfAction(&'static str),
    /// The change would leave no active administrator.
    #[error("this is the last active administrator")]
    LastAdmin,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    /// The login throttle refused to check the current password; it frees after
    /// `retry_after`.
    #[error("too many failed password attempts; try again later")]
    TooManyAttempts { retry_after: std::time::Duration },
    /// Every password-hashing slot stayed taken: try again in a moment.
    #[error("the server is busy checking passwords; try again in a moment")]
    Busy,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// A new user to create.
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub is_admin: bool,
}

/// A change to a user; `None` (`Keep` for the limits) leaves that attribute alone.
#[derive(Default)]
pub struct UserChange {
    pub password: Option<String>,
    pub is_active: Option<bool>,
    pub is_admin: Option<bool>,
    pub limits: LimitsChange,
}

fn gate_error(err: GateError) -> UserAdminError {
    match err {
        GateError::Busy(_) => UserAdminError::Busy,
        GateError::Internal(e) => UserAdminError::Internal(e),
    }
}

/// Hashing is CPU- and memory-heavy by design: it takes a slot of the same gate as logins,
/// so admins creating users can't add unbounded argon2 work either.
async fn hash(gate: &PasswordGate, password: String) -> Result<String, UserAdminError> {
    gate.hash(password).await.map_err(gate_error)
}

pub async fn list_users(db: &PgPool) -> Result<Vec<UserSummary>, UserAdminError> {
    Ok(repo::list_users(db).await?)
}

pub async fn find_user(db: &PgPool, id: i64) -> Result<UserSummary, UserAdminError> {
    let mut tx = db.begin().await?;
    let user = repo::find_user(&mut tx, id).await?;
    tx.commit().await?;
    user.ok_or(UserAdminError::NotFound)
}

/// Messages a user owns: the delete confirmation says what goes with them.
pub async fn message_count(db: &PgPool, id: i64) -> Result<i64, UserAdminError> {
    Ok(repo::count_messages_of(db, id).await?)
}

#[tracing::instrument(name = "admin.create_user", skip_all, fields(actor.id = actor_id))]
pub async fn create_user(
    db: &PgPool,
    gate: &PasswordGate,
    actor_id: i64,
    new: NewUser,
) -> Result<UserSummary, UserAdminError> {
    let username = new.username.trim().to_owned();
    check_username(&username).map_err(|message| UserAdminError::Invalid {
        field: "username",
        message,
    })?;
    check_password(&new.password, &username).map_err(|message| UserAdminError::Invalid {
        field: "password",
        message,
    })?;
    let password_hash = hash(gate, new.password).await?;
    let mut tx = db.begin().await?;
    let id = match repo::insert_user(&mut tx, &username, &password_hash, new.is_admin).await {
        Ok(id) => id,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(UserAdminError::UsernameTaken)
        }
        Err(e) => return Err(e.into()),
    };
    audit::record(
        &mut *tx,
        Some(actor_id),
        "user.create",
        &format!("user:{id}"),
        json!({"username": username, "is_admin": new.is_admin}),
    )
    .await?;
    let user = repo::find_user(&mut tx, id)
        .await?
        .ok_or(UserAdminError::NotFound)?;
    tx.commit().await?;
    info!(user.id = id, "user created");
    Ok(user)
}

/// Applies a change in one transaction: the admin rules are checked under the admin-row
/// locks, sessions end at once when a user is disabled or given a new password, and each
/// changed attribute gets its own audit entry (the sending limits one entry together,
/// listing each limit's old and new value).
#[tracing::instrument(name = "admin.update_user", skip_all, fields(actor.id = actor_id, user.id = id))]
pub async fn update_user(
    db: &PgPool,
    gate: &PasswordGate,
    actor_id: i64,
    id: i64,
    change: UserChange,
) -> Result<UserSummary, UserAdminError> {
    let limits = change.limits.validate()?;
    let password_hash = match change.password {
        Some(password) => {
            let mut tx = db.begin().await?;
            let target = repo::find_user(&mut tx, id)
                .await?
                .ok_or(UserAdminError::NotFound)?;
            tx.rollback().await?;
            check_password(&password, &target.username).map_err(|message| {
                UserAdminError::Invalid {
                    field: "password",
                    message,
                }
            })?;
            Some(hash(gate, password).await?)
        }
        None => None,
    };
    let mut tx = db.begin().await?;
    let admins = repo::lock_active_admins(&mut tx).await?;
    let target = repo::find_user(&mut tx, id)
        .await?
        .ok_or(UserAdminError::NotFound)?;
    // Disabling or demoting an active admin takes one away from the count.
    let removes_admin = target.is_admin
        && target.is_active
        && (change.is_active == Some(false) || change.is_admin == Some(false));
    if id == actor_id && change.is_active == Some(false) {
        return Err(UserAdminError::SelfAction("disable"));
    }
    if id == actor_id && change.is_admin == Some(false) {
        return Err(UserAdminError::SelfAction("demote"));
    }
    if removes_admin && admins == [id] {
        return Err(UserAdminError::LastAdmin);
    }
    let target_name = format!("user:{id}");
    if let Some(password_hash) = password_hash {
        repo::set_password(&mut tx, id, &password_hash).await?;
        // A reset is how an admin shuts out whoever learnt the old password: every JWT,
        // API token and session issued under it ends with it.
        let revoked = revoke_credentials(&mut tx, id, None).await?;
        audit::record(
            &mut *tx,
            Some(actor_id),
            "user.password",
            &target_name,
            json!({
                "revoked_api_tokens": revoked.api_tokens,
                "ended_sessions": revoked.sessions,
                "jwts_revoked": true,
            }),
        )
        .await?;
    }
    if let Some(active) = change.is_active.filter(|a| *a != target.is_active) {
        repo::set_active(&mut tx, id, active).await?;
        if !active {
            // API tokens and JWTs are refused while is_active is false (checked per request);
            // panel sessions are deleted outright.
            repo::delete_sessions_of(&mut tx, id, None).await?;
        }
        let action = if active {
            "user.enable"
        } else {
            "user.disable"
        };
        audit::record(&mut *tx, Some(actor_id), action, &target_name, json!({})).await?;
    }
    if let Some(admin) = change.is_admin.filter(|a| *a != target.is_admin) {
        repo::set_admin(&mut tx, id, admin).await?;
        audit::record(
            &mut *tx,
            Some(actor_id),
            "user.role",
            &target_name,
            json!({"is_admin": admin}),
        )
        .await?;
    }
    if !limits.is_empty() {
        let before = repo::lock_limits(&mut tx, id)
            .await?
            .ok_or(UserAdminError::NotFound)?;
        let after = limits.applied_to(&before);
        let changed = limits::changed_fields(&before, &after);
        if !changed.is_empty() {
            repo::set_limits(&mut tx, id, &after).await?;
            audit::record(
                &mut *tx,
                Some(actor_id),
                "user.limits",
                &target_name,
                serde_json::Value::Object(changed),
            )
            .await?;
        }
    }
    let user = repo::find_user(&mut tx, id)
        .await?
        .ok_or(UserAdminError::NotFound)?;
    tx.commit().await?;
    Ok(user)
}

/// Deletes a user with their tokens, sessions and messages (foreign keys cascade).
#[tracing::instrument(name = "admin.delete_user", skip_all, fields(actor.id = actor_id, user.id = id))]
pub async fn delete_user(db: &PgPool, actor_id: i64, id: i64) -> Result<(), UserAdminError> {
    if id == actor_id {
        return Err(UserAdminError::SelfAction("delete"));
    }
    let mut tx = db.begin().await?;
    let admins = repo::lock_active_admins(&mut tx).await?;
    let target = repo::find_user(&mut tx, id)
        .await?
        .ok_or(UserAdminError::NotFound)?;
    if admins == [id] {
        return Err(UserAdminError::LastAdmin);
    }
    repo::delete_user(&mut tx, id).await?;
    audit::record(
        &mut *tx,
        Some(actor_id),
        "user.delete",
        &format!("user:{id}"),
        json!({"username": target.username}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes the user's API tokens and issues a new one. The plain token is returned once
/// and never stored.
#[tracing::instrument(name = "admin.issue_token", skip_all, fields(actor.id = actor_id, user.id = id))]
pub async fn regenerate_token(
    db: &PgPool,
    actor_id: i64,
    id: i64,
) -> Result<(UserSummary, String), UserAdminError> {
    let token = ApiToken::generate();
    let mut tx = db.begin().await?;
    let target = repo::find_user(&mut tx, id)
        .await?
        .ok_or(UserAdminError::NotFound)?;
    let revoked = repo::revoke_tokens_of(&mut tx, id).await?;
    repo::insert_token(&mut tx, id, &token.hash, "issued by an administrator").await?;
    audit::record(
        &mut *tx,
        Some(actor_id),
        "token.issue",
        &format!("user:{id}"),
        json!({"revoked": revoked}),
    )
    .await?;
    tx.commit().await?;
    Ok((target, token.plain))
}

/// A user changing their own password: the current one must match; every other session of
/// theirs ends (`keep_session` is the one they are using), and so do their JWTs and API
/// tokens. Guessing the current password is guessing a login: it is charged to the same
/// throttle budgets, of (`username`, `address`) and of `address`, before it is checked. The
/// argon2 work goes through the limits' gate.
#[tracing::instrument(name = "account.change_password", skip_all, fields(user.id = user_id))]
#[allow(clippy::too_many_arguments)]
pub async fn change_own_password(
    db: &PgPool,
    limits: LoginLimits<'_>,
    address: &str,
    user_id: i64,
    username: &str,
    current: &str,
    new_password: String,
    keep_session: Option<&[u8]>,
) -> Result<(), UserAdminError> {
    let stored = repo::password_hash_of(db, user_id)
        .await?
        .ok_or(UserAdminError::NotFound)?;
    if new_password == current {
        return Err(UserAdminError::Invalid {
            field: "new_password",
            message: "Choose a password different from the current one.".to_owned(),
        });
    }
    if current.len() > MAX_PASSWORD_BYTES {
        return Err(UserAdminError::WrongCurrentPassword);
    }
    let charge = match throttle::charge(db, limits.settings, username, address).await? {
        Verdict::Allowed(charge) => charge,
        Verdict::Refused { retry_after } => {
            warn!(
                retry_after = retry_after.as_secs(),
                "password change throttled"
            );
            return Err(UserAdminError::TooManyAttempts { retry_after });
        }
    };
    match limits.gate.verify(current, stored).await {
        Ok(true) => throttle::succeeded(db, charge).await?,
        Ok(false) => {
            throttle::failed(db, limits.settings, charge).await?;
            return Err(UserAdminError::WrongCurrentPassword);
        }
        Err(e) => {
            throttle::undecided(db, charge).await?;
            return Err(gate_error(e));
        }
    }
    check_password(&new_password, username).map_err(|message| UserAdminError::Invalid {
        field: "new_password",
        message,
    })?;
    let password_hash = hash(limits.gate, new_password).await?;
    let mut tx = db.begin().await?;
    repo::set_password(&mut tx, user_id, &password_hash).await?;
    let revoked = revoke_credentials(&mut tx, user_id, keep_session).await?;
    audit::record(
        &mut *tx,
        Some(user_id),
        "account.password",
        &format!("user:{user_id}"),
        json!({
            "revoked_api_tokens": revoked.api_tokens,
            "ended_sessions": revoked.sessions,
            "jwts_revoked": true,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
