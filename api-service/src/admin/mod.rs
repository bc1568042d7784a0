//! The JSON admin API (`/api/admin/...`): users, dead letters and the audit log, over
//! `smsgate_core::admin`.

mod routes;

pub use routes::router;

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    <routes::Api as utoipa::OpenApi>::openapi()
}
