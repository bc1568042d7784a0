//! Who is calling, as the JSON API reads it (bearer JWT, `X-API-Key`, the client address),
//! and the login routes, over `smsgate_core::auth`.

mod extract;
mod routes;

pub use extract::{bearer_token, tcp_peer, AdminUser, AuthSender, AuthUser, ClientAddress};
pub use routes::router;

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    <routes::Api as utoipa::OpenApi>::openapi()
}
