//! `POST /api/auth/login`, as the SMS panel's clients call it.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::extract::ClientAddress;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/auth/login", post(log_in))
}

#[derive(OpenApi)]
#[openapi(paths(log_in))]
pub(crate) struct Api;

#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
struct LoginResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// Exchanges a username and password for a bearer token (a JWT valid 24 h).
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    security(()),
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "`PASSWORD_TOO_LONG`", body = ErrorBody),
        (status = 401, description = "`INVALID_CREDENTIALS`", body = ErrorBody),
        (status = 403, description = "`ACCOUNT_DISABLED`, `PASSWORD_CHANGE_REQUIRED`", body = ErrorBody),
        (status = 429, description = "`TOO_MANY_ATTEMPTS`; see `Retry-After`", body = ErrorBody),
    ),
)]
async fn log_in(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let login = app
        .core
        .login(&req.username, &req.password, &address)
        .await?
        .require_current_password()?;
    Ok(Json(LoginResponse {
        access_token: login.access_token,
        token_type: "Bearer",
        expires_in: login.expires_in,
    }))
}
