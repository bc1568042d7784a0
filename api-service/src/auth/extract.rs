//! The `AuthUser` extractor: `Authorization: Bearer <jwt or api token>` or `X-API-Key`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use smsgate_core::auth::throttle::client_address;
pub use smsgate_web::client::tcp_peer;

use crate::error::ApiError;
use crate::state::AppState;
use smsgate_core::auth::service::{self, AuthError, Caller};

use smsgate_core::auth::SendCredential;
use smsgate_core::auth::MAX_PASSWORD_BYTES;

/// The authenticated caller. Taking it as a handler argument is what makes a route private.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Caller);

impl std::ops::Deref for AuthUser {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(MISSING_CREDENTIALS)?;
        let caller = service::authenticate(&state.core.db, &state.core.jwt, token).await?;
        tracing::Span::current().record("user.id", caller.id);
        Ok(AuthUser(caller))
    }
}

/// An authenticated administrator: every other caller gets 403 `ADMIN_REQUIRED` (401 as
/// [`AuthUser`] without valid credentials). The one check behind every admin-only route of
/// the JSON API, as `AdminUser` is in the panel.
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !user.is_admin {
            return Err(ApiError::Forbidden {
                code: "ADMIN_REQUIRED",
                message: "Only administrators may do this",
            });
        }
        Ok(AdminUser(user))
    }
}

/// The sender of a single send: credentials checked, the account's standing not yet (see
/// [`smsgate_core::auth::SendCredential`]). Only for handlers whose write checks it.
#[derive(Debug, Clone, Copy)]
pub struct AuthSender(pub SendCredential);

impl FromRequestParts<AppState> for AuthSender {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(MISSING_CREDENTIALS)?;
        let sender = state
            .core
            .token_owners
            .resolve(&state.core.db, &state.core.jwt, token)
            .await?;
        tracing::Span::current().record("user.id", sender.user_id);
        Ok(AuthSender(sender))
    }
}

/// The client's address as the login throttle counts it (see [`client_address`]).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(
            &parts.headers,
            &tcp_peer(parts),
            &state.core.settings.login,
        )))
    }
}

const MISSING_CREDENTIALS: ApiError = ApiError::Unauthorized {
    code: "UNAUTHORIZED",
    message: "Authentication required: send `Authorization: Bearer <token>` or `X-API-Key`",
};

/// The credential a request carries: `Authorization: Bearer <token>`, else `X-API-Key`.
/// Also read from a Socket.IO handshake's headers (`live::sockets`).
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let from_authorization = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let from_api_key = || {
        parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    from_authorization
        .or_else(from_api_key)
        .filter(|t| !t.is_empty())
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        match err {
            AuthError::InvalidCredentials => ApiError::Unauthorized {
                code: "INVALID_CREDENTIALS",
                message: "Invalid username or password",
            },
            AuthError::InvalidToken => ApiError::Unauthorized {
                code: "INVALID_TOKEN",
                message: "The token is invalid, revoked or expired",
            },
            AuthError::Disabled => ApiError::Forbidden {
                code: "ACCOUNT_DISABLED",
                message: "This account is disabled",
            },
            AuthError::PasswordChangeRequired => ApiError::Forbidden {
                code: "PASSWORD_CHANGE_REQUIRED",
                message: "This account must change its password before using the API: sign in to the web panel and set a new password",
            },
            AuthError::TooManyAttempts { retry_after } => ApiError::TooManyAttempts { retry_after },
            AuthError::Busy => ApiError::Busy,
            AuthError::PasswordTooLong => ApiError::validation(
                "PASSWORD_TOO_LONG",
                format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
            ),
            AuthError::Database(e) => e.into(),
            AuthError::Internal(e) => ApiError::Internal(e),
        }
    }
}
