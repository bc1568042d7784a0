//! `/api/webhooks`: users register delivery endpoints, over `smsgate_core::webhooks`.

mod routes;

pub use routes::router;

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    <routes::Api as utoipa::OpenApi>::openapi()
}
