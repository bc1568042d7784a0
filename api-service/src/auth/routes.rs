//! `POST /api/auth/login`, as the SMS panel's clients call it.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::ClientAddress;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/auth/login", post(log_in))
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct LoginResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

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
