//! Liveness and readiness for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(check_readiness))
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/health/ready", get(check_readiness))
}

/// 200 when PostgreSQL answers and the broker is reachable, else 503 naming what is down.
async fn check_readiness(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
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
        Json(json!({
            "status": if status == StatusCode::OK { "ok" } else { "degraded" },
            "database": word(database),
            "broker": word(broker),
        })),
    )
}
