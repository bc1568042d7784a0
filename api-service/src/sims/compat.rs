//! The edge gateway's auth calls: `POST /api/auth` (password → JWT and a new API key),
//! `POST /api/generate-api-key` (JWT → a new key, earlier ones revoked), and listing and
//! revoking one's keys. Keys are stored hashed, so each is shown once; a user may hold
//! several (one per client that logged in, the newest [`LOGIN_KEYS_KEPT`] of them) and
//! revoke each.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{AuthUser, ClientAddress};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, IdPath};
use crate::state::AppState;
use crate::wire::rfc3339;
use smsgate_core::auth::service::{mint_login_api_key, replace_api_keys};
use smsgate_core::sims::repo;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth", post(authenticate))
        .route("/api/generate-api-key", post(generate_api_key))
        .route("/api/api-keys", get(list_api_keys))
        .route("/api/api-keys/{id}", delete(revoke_api_key))
}

#[derive(OpenApi)]
#[openapi(paths(authenticate, generate_api_key, list_api_keys, revoke_api_key))]
pub(crate) struct Api;

#[derive(Deserialize, ToSchema)]
struct AuthRequest {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
struct AuthResponse {
    token: String,
    username: String,
    role: &'static str,
    /// A key issued for this login: the replaced gateway returned the user's one stored key,
    /// which cannot be done with hashed keys.
    api_key: String,
}

/// Keys minted by `POST /api/auth` a user keeps: each call mints one, and the oldest beyond
/// this many are revoked, so repeated logins cannot pile up live keys.
pub const LOGIN_KEYS_KEPT: i64 = 5;

/// The edge gateway's login: a JWT and a new API key for this client.
#[utoipa::path(
    post,
    path = "/api/auth",
    tag = "auth",
    request_body = AuthRequest,
    security(()),
    responses(
        (status = 200, description = "Logged in; `api_key` is shown once", body = AuthResponse),
        (status = 400, description = "`PASSWORD_TOO_LONG`", body = ErrorBody),
        (status = 401, description = "`INVALID_CREDENTIALS`", body = ErrorBody),
        (status = 403, description = "`ACCOUNT_DISABLED`, `PASSWORD_CHANGE_REQUIRED`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_ATTEMPTS`; see `Retry-After`", body = ErrorBody),
    ),
)]
async fn authenticate(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(req): ApiJson<AuthRequest>,
) -> Result<Json<AuthResponse>, ApiError> {
    let login = app
        .core
        .login(&req.username, &req.password, &address)
        .await?
        .require_current_password()?;
    let api_key =
        mint_login_api_key(&app.core.db, login.user.id, &address, LOGIN_KEYS_KEPT).await?;
    Ok(Json(AuthResponse {
        token: login.access_token,
        username: login.user.username,
        role: if login.user.is_admin { "admin" } else { "user" },
        api_key,
    }))
}

/// The JWT of the request, if it carries a valid one in `Authorization: Bearer`.
fn has_valid_jwt(headers: &HeaderMap, app: &AppState) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| app.core.jwt.verify(token.trim()).is_some())
}

#[derive(Serialize, ToSchema)]
struct NewKey {
    api_key: String,
}

/// JWT only, as in the replaced gateway: an API key must not mint its own successor, or a
/// leaked key could never be shut out by rotating.
#[utoipa::path(
    post,
    path = "/api/generate-api-key",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new key, shown once; the caller's earlier keys are revoked", body = NewKey),
        (status = 401, description = "`JWT_REQUIRED`: an API key cannot mint its successor", body = ErrorBody),
    ),
)]
async fn generate_api_key(
    State(app): State<AppState>,
    user: AuthUser,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
) -> Result<Json<NewKey>, ApiError> {
    if !has_valid_jwt(&headers, &app) {
        return Err(ApiError::Unauthorized {
            code: "JWT_REQUIRED",
            message:
                "Generating an API key needs `Authorization: Bearer <token from POST /api/auth>`",
        });
    }
    let api_key = replace_api_keys(&app.core.db, user.id, &address).await?;
    Ok(Json(NewKey { api_key }))
}

#[derive(Serialize, ToSchema)]
struct KeyView {
    id: i64,
    label: String,
    active: bool,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct KeyList {
    api_keys: Vec<KeyView>,
}

/// The caller's API keys (never the keys themselves: they are stored hashed).
#[utoipa::path(
    get,
    path = "/api/api-keys",
    tag = "auth",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The caller's keys", body = KeyList)),
)]
async fn list_api_keys(
    State(app): State<AppState>,
    user: AuthUser,
) -> Result<Json<KeyList>, ApiError> {
    let keys = repo::list_api_keys(&app.core.db, user.id).await?;
    Ok(Json(KeyList {
        api_keys: keys
            .into_iter()
            .map(|k| KeyView {
                id: k.id,
                label: k.label,
                active: k.revoked_at.is_none(),
                created_at: rfc3339(k.created_at),
                last_used_at: k.last_used_at.map(rfc3339),
                revoked_at: k.revoked_at.map(rfc3339),
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
struct Revoked {
    revoked: bool,
    id: i64,
}

#[utoipa::path(
    delete,
    path = "/api/api-keys/{id}",
    tag = "auth",
    params(("id" = i64, Path, minimum = 1, description = "The key's id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 404, description = "`NOT_FOUND`: no such key of the caller", body = ErrorBody),
    ),
)]
async fn revoke_api_key(
    State(app): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<Revoked>, ApiError> {
    if !repo::revoke_api_key(&app.core.db, user.id, id).await? {
        return Err(ApiError::NotFound("API key"));
    }
    Ok(Json(Revoked { revoked: true, id }))
}
