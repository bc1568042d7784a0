//! Shared state handed to every handler.

use std::sync::Arc;

use smsgate_shared::queue::Broker;
use sqlx::PgPool;

use crate::metrics::ApiMetrics;
use crate::settings::Settings;
use crate::system::StatisticsCache;
use smsgate_core::auth::{JwtKeys, PasswordGate, TokenOwners};
use smsgate_core::live::LiveHub;
use smsgate_core::outbox::Outbox;
use smsgate_core::sms::AcceptBatcher;

/// What every handler can reach; `state.db` and the like read through to [`Services`].
/// One `Arc`, so the per-request clone axum makes is a single reference count.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub db: PgPool,
    pub broker: Broker,
    pub jwt: JwtKeys,
    /// API token owners, so single sends skip a lookup per call.
    pub token_owners: TokenOwners,
    /// The bound on concurrent argon2 work (logins, password changes).
    pub passwords: PasswordGate,
    pub outbox: Outbox,
    /// Writes small sends in shared statements.
    pub small_sends: AcceptBatcher,
    pub settings: Arc<Settings>,
    /// Status events for the panel's live pages.
    pub live: LiveHub,
    /// `GET /api/statistics`'s recent answers.
    pub statistics: StatisticsCache,
    /// What `GET /metrics` shows.
    pub metrics: ApiMetrics,
}

impl Services {
    /// The login limits of this process, for [`smsgate_core::auth::service::login`].
    pub fn login_limits(&self) -> smsgate_core::auth::service::LoginLimits<'_> {
        smsgate_core::auth::service::LoginLimits {
            settings: &self.settings.login,
            gate: &self.passwords,
        }
    }
}
