//! `/api/opt-outs`: the caller's own opt-out list and the global one, over
//! `smsgate_core::optout::service` (docs/opt-outs.md).

mod routes;

pub use routes::router;

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    <routes::Api as utoipa::OpenApi>::openapi()
}
