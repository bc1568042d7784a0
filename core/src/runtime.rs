//! [`Core`]: the handles every domain service runs on, built once per process by the
//! composition root (`smsgate-api`'s `start`) and shared by the JSON API and the panel.

use std::sync::Arc;

use smsgate_shared::queue::Broker;
use sqlx::PgPool;

use crate::auth::service::AuthError;
use crate::auth::service::{self, Login, LoginLimits};
use crate::auth::{JwtKeys, PasswordGate, TokenOwners};
use crate::live::LiveHub;
use crate::outbox::Outbox;
use crate::settings::CoreSettings;
use crate::sims::broker_users::SimBrokerUsers;
use crate::sms::{AcceptBatcher, SendMetrics};

/// What the domain's services need from the process: its database pool, broker, keys,
/// background writers and settings. Each field is itself cheap to share.
pub struct Core {
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
    /// Status events for the live pages and sockets.
    pub live: LiveHub,
    /// Accepted sends by route and entry point (`smsgate_messages_accepted_total`).
    pub sends: SendMetrics,
    /// The SIM agents' broker users (RabbitMQ's management API).
    pub sim_users: SimBrokerUsers,
    pub settings: Arc<CoreSettings>,
}

impl Core {
    /// The login limits of this process, for [`crate::auth::service::login`].
    pub fn login_limits(&self) -> LoginLimits<'_> {
        LoginLimits {
            settings: &self.settings.login,
            gate: &self.passwords,
        }
    }

    /// [`service::login`] with this process's database, keys and limits: the one call every
    /// way to log in (panel, `POST /api/auth/login`, `POST /api/auth`) makes.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        address: &str,
    ) -> Result<Login, AuthError> {
        service::login(
            &self.db,
            &self.jwt,
            self.login_limits(),
            username,
            password,
            address,
        )
        .await
    }
}
