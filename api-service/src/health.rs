//! Liveness and readiness for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(check_readiness))
        .route("/health/live", get(check_liveness))
        .route("/health/ready", get(check_ready))
}

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

#[derive(OpenApi)]
#[openapi(paths(check_readiness, check_liveness, check_ready))]
struct Api;

#[derive(Serialize, ToSchema)]
struct Liveness {
    /// Always `ok`: the process answers.
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ok`, or `degraded` when a dependency is down.
    #[schema(example = "ok")]
    status: &'static str,
    /// `up` or `down`.
    database: &'static str,
    /// `up` or `down`.
    broker: &'static str,
}

/// The process is up (no dependency checked).
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "system",
    security(()),
    responses((status = 200, description = "Alive", body = Liveness)),
)]
async fn check_liveness() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// The same as `/health/ready`.
#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    security(()),
    responses(
        (status = 200, description = "PostgreSQL and RabbitMQ answer", body = Readiness),
        (status = 503, description = "A dependency is down (named in the body)", body = Readiness),
    ),
)]
async fn check_readiness(state: State<AppState>) -> (StatusCode, Json<Readiness>) {
    readiness(state).await
}

/// Ready to serve: PostgreSQL answers and the broker is reachable.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "system",
    security(()),
    responses(
        (status = 200, description = "PostgreSQL and RabbitMQ answer", body = Readiness),
        (status = 503, description = "A dependency is down (named in the body)", body = Readiness),
    ),
)]
async fn check_ready(state: State<AppState>) -> (StatusCode, Json<Readiness>) {
    readiness(state).await
}

/// 200 when PostgreSQL answers and the broker is reachable, else 503 naming what is down.
async fn readiness(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = smsgate_core::db::is_reachable(&app.core.db).await;
    let broker = app.core.broker.connection().await.is_ok();
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |up: bool| if up { "up" } else { "down" };
    (
        status,
        Json(Readiness {
            status: if status == StatusCode::OK {
                "ok"
            } else {
                "degraded"
            },
            database: word(database),
            broker: word(broker),
        }),
    )
}
