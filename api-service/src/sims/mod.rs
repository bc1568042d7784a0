//! The edge gateway (issue #4): SIM cards and SIM routing, received SMS (inbox), outgoing
//! SMS of both routes (outbox, statuses), and the replaced gateway's auth and key calls.
//! The modem agents and the dispatcher's edge ingest do the rest (docs/edge-gateway.md).

mod compat;
mod routes;

use axum::Router;
use serde::Serialize;

pub use routes::SimView;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    routes::router().merge(compat::router())
}

/// A send's success body with the fields the edge gateway's clients read at the top
/// level: `message_id` and `sender_sim` (the SIM's number; `null` for the HKT route and for
/// the pool, whose SIM is chosen per recipient as they are released: old clients expect a
/// number or `null`), and `route`: `"sim"` when SIMs carry it, `"hkt"` otherwise.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WithEdgeFields<T> {
    #[serde(flatten)]
    pub body: T,
    pub message_id: i64,
    pub sender_sim: Option<String>,
    /// `"sim"` or `"hkt"`.
    pub route: &'static str,
}

/// The `route` a send's response names.
pub fn route_name(via_sim: bool) -> &'static str {
    if via_sim {
        "sim"
    } else {
        "hkt"
    }
}

/// This module's part of the OpenAPI document (see `crate::openapi`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = routes::Api::openapi();
    doc.merge(compat::Api::openapi());
    doc
}
