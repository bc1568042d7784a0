//! `POST /api/sms`, `POST /api/sms/send-bulk` and the history a user can page through,
//! over `smsgate_core::sms`; its CSV exports over `smsgate_core::history`; cancel and the
//! queue's status over `smsgate_core::traffic`.

mod export;
mod routes;
mod traffic;

/// Every SMS route.
pub fn router() -> axum::Router<crate::state::AppState> {
    routes::router()
        .merge(export::router())
        .merge(traffic::router())
}

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = routes::Api::openapi();
    doc.merge(export::Api::openapi());
    doc.merge(traffic::Api::openapi());
    doc
}
