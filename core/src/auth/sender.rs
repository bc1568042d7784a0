//! The sender of a single send, resolved without a database read on the hot path.
//!
//! `POST /api/sms` is the busiest route, and reading the account on every call was a third
//! of its database work. A JWT names its user once its signature checks out, and its
//! credentials epoch is compared with the user's, read at most once a second per user (so a
//! password change ends earlier JWTs here within a second); an API token's owner is cached
//! for a minute (a token never changes owner). Whether the account is still
//! active and the token still unrevoked is checked by the statement that stores the message
//! (`sms::batch`), so disabling a user or revoking a token still takes effect at once.

use std::time::Duration;

use sqlx::PgPool;

use super::credentials::{looks_like_jwt, ApiToken, JwtKeys};
use super::repo;
use super::service::{resolve_api_token, AuthError};

/// Who a send claims to come from. Not yet proof that the account may send: whoever stores
/// the message checks that in the same statement (or calls [`confirm_sender`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendCredential {
    pub user_id: i64,
    /// Set when the caller used an API token, so its revocation can be checked.
    pub token_id: Option<i64>,
}

/// How long a token's owner is remembered. Also how often a busy token's `last_used_at`
/// is refreshed: a miss goes through [`resolve_api_token`], which records the use.
const TOKEN_OWNER_TTL: Duration = Duration::from_secs(60);
const TOKEN_OWNER_CAPACITY: u64 = 10_000;

/// How long a user's credentials epoch is remembered for JWT sends: the delay before a
/// password change ends an earlier JWT on this route.
const CREDENTIAL_STATE_TTL: Duration = Duration::from_secs(1);

/// API token hash → owner, and user → credential state, shared by all requests. Cheap to
/// clone.
#[derive(Clone)]
pub struct TokenOwners {
    cache: moka::sync::Cache<Vec<u8>, SendCredential>,
    states: moka::sync::Cache<i64, repo::CredentialState>,
}

impl Default for TokenOwners {
    fn default() -> Self {
        TokenOwners {
            cache: moka::sync::Cache::builder()
                .max_capacity(TOKEN_OWNER_CAPACITY)
                .time_to_live(TOKEN_OWNER_TTL)
                .build(),
            states: moka::sync::Cache::builder()
                .max_capacity(TOKEN_OWNER_CAPACITY)
                .time_to_live(CREDENTIAL_STATE_TTL)
                .build(),
        }
    }
}

impl TokenOwners {
    /// The credential behind a bearer token: a verified JWT or a known API token. A token
    /// seen for the first time (or after a minute) is looked up, and refused at once if
    /// revoked or its account is disabled.
    pub async fn resolve(
        &self,
        db: &PgPool,
        keys: &JwtKeys,
        token: &str,
    ) -> Result<SendCredential, AuthError> {
        if looks_like_jwt(token) {
            let jwt = keys.verify(token).ok_or(AuthError::InvalidToken)?;
            let state = match self.states.get(&jwt.user_id) {
                Some(state) => state,
                None => {
                    let state = repo::credential_state(db, jwt.user_id)
                        .await?
                        .ok_or(AuthError::InvalidToken)?;
                    self.states.insert(jwt.user_id, state);
                    state
                }
            };
            // Whether the account is active is checked by the storing statement.
            if state.credentials_epoch != jwt.epoch {
                return Err(AuthError::InvalidToken);
            }
            if state.must_change_password {
                return Err(AuthError::PasswordChangeRequired);
            }
            return Ok(SendCredential {
                user_id: jwt.user_id,
                token_id: None,
            });
        }
        let hash = ApiToken::hash(token);
        if let Some(known) = self.cache.get(&hash) {
            return Ok(known);
        }
        let owner = resolve_api_token(db, token).await?;
        let credential = SendCredential {
            user_id: owner.user_id,
            token_id: Some(owner.token_id),
        };
        self.cache.insert(hash, credential);
        Ok(credential)
    }
}

/// Checks now that the sender's account is active and its token unrevoked, for sends that
/// do not go through the checking statement (those routed to a SIM card).
pub async fn confirm_sender(db: &PgPool, sender: SendCredential) -> Result<(), AuthError> {
    let user = repo::find_user_by_id(db, sender.user_id)
        .await?
        .ok_or(AuthError::InvalidToken)?;
    if let Some(token_id) = sender.token_id {
        if !repo::token_is_unrevoked(db, token_id).await? {
            return Err(AuthError::InvalidToken);
        }
    }
    if !user.is_active {
        return Err(AuthError::Disabled);
    }
    Ok(())
}
