//! Shared state handed to every handler.

use std::sync::Arc;

use smsgate_shared::queue::Broker;
use sqlx::PgPool;

use crate::auth::JwtKeys;
use crate::live::LiveHub;
use crate::outbox::Outbox;
use crate::settings::Settings;

/// Cheap to clone: everything inside is reference-counted.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub broker: Broker,
    pub jwt: JwtKeys,
    pub outbox: Outbox,
    pub settings: Arc<Settings>,
    /// Status events for the panel's live pages.
    pub live: LiveHub,
}
