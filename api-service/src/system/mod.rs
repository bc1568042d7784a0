//! The edge gateway's system calls, carried over for its clients: `GET /api/statistics`
//! (memory, database size, message and SIM figures, the last week by day) and
//! `GET /api/logs` (the audit log: who changed which user, key, SIM or message, and when).
//! Same auth as the rest: `Authorization: Bearer` or `X-API-Key`.

mod logs;
mod statistics;

pub use statistics::StatisticsCache;

use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/statistics", get(statistics::show))
        .route("/api/logs", get(logs::list))
}

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = logs::Api::openapi();
    doc.merge(statistics::Api::openapi());
    doc
}
