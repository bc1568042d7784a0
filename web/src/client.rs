//! Who is on the other end of a request, as the login throttle and the audit log count it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use smsgate_core::auth::throttle::{client_address, TcpPeer};

use crate::state::WebState;

/// The TCP peer axum recorded for the connection (`into_make_service_with_connect_info`).
/// The JSON API reads it the same way.
pub fn tcp_peer(parts: &Parts) -> TcpPeer {
    TcpPeer(
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0),
    )
}

/// The client's address as the login throttle counts it (see [`client_address`]).
pub struct ClientAddress(pub String);

impl FromRequestParts<WebState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(
            &parts.headers,
            &tcp_peer(parts),
            &state.core.settings.login,
        )))
    }
}
