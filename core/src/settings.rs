//! What the domain's services run with: limits, the queue topology, webhook keys and the
//! login throttle. Read once at start-up; errors name the key.

use std::time::Duration;

use smsgate_shared::config::{self, ConfigError, QueueSettings};
use smsgate_shared::domain::MessageBody;
use smsgate_shared::secret_box::{self, SecretBox};

use crate::auth::LoginSettings;
use crate::outbox::ReleaseSettings;
use crate::sims::broker_users::BrokerAdminSettings;

/// The domain's settings, shared by the JSON API and the panel.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub queue: QueueSettings,
    pub max_bulk_recipients: usize,
    pub max_segments: u32,
    /// How the releaser paces the release queue (HKT_RATE_LIMIT, as the dispatchers).
    pub release: ReleaseSettings,
    /// How long an `Idempotency-Key` (and the compose form's key) is honoured.
    pub idempotency_key_ttl: Duration,
    /// Most webhooks one user may register.
    pub webhooks_per_user: usize,
    /// Whether webhooks may point at loopback, private and link-local addresses
    /// (development and tests only; the dispatchers have the same setting).
    pub webhook_allow_internal_targets: bool,
    /// The keys webhook signing secrets are encrypted with at rest (WEBHOOK_SECRET_KEYS,
    /// required; the first seals, all open). The dispatchers need the same keys.
    pub webhook_secret_keys: SecretBox,
    /// Login throttling and password-hashing limits, shared by the panel and the API.
    pub login: LoginSettings,
    /// RabbitMQ's management API (BROKER_ADMIN_URL), where each SIM's broker user is
    /// created, restricted and deleted. Without it SIMs still register, and an operator
    /// creates their users with `deploy/rabbitmq/sim-user.sh`.
    pub broker_admin: Option<BrokerAdminSettings>,
}

impl CoreSettings {
    /// Reads every key from the environment (`.env` is loaded by the binary first).
    pub fn from_env() -> Result<CoreSettings, ConfigError> {
        Ok(CoreSettings {
            queue: QueueSettings::from_env()?,
            max_bulk_recipients: config::parse_or("MAX_BULK_RECIPIENTS", 100_000)?,
            max_segments: config::parse_or("MAX_SEGMENTS", MessageBody::DEFAULT_MAX_SEGMENTS)?,
            release: ReleaseSettings {
                sim_offline_after: sim_offline_after()?,
                ..ReleaseSettings::for_rate(config::hkt_rate_limit()?)
            },
            idempotency_key_ttl: idempotency_key_ttl()?,
            webhooks_per_user: config::parse_or("WEBHOOKS_PER_USER", 10)?,
            webhook_allow_internal_targets: config::bool_or(
                "WEBHOOK_ALLOW_INTERNAL_TARGETS",
                false,
            )?,
            webhook_secret_keys: secret_box::webhook_keys_from_env()?,
            login: LoginSettings::from_env()?,
            broker_admin: broker_admin()?,
        })
    }

    /// Settings for tests: the given broker and queue prefix, an unlimited gateway.
    pub fn for_tests(amqp_url: &str, queue_prefix: &str) -> CoreSettings {
        CoreSettings {
            queue: QueueSettings::for_tests(amqp_url, queue_prefix),
            max_bulk_recipients: 100_000,
            max_segments: MessageBody::DEFAULT_MAX_SEGMENTS,
            release: ReleaseSettings::for_rate(None),
            idempotency_key_ttl: Duration::from_secs(24 * 3600),
            webhooks_per_user: 10,
            // Tests run their receivers on loopback.
            webhook_allow_internal_targets: true,
            webhook_secret_keys: secret_box::test_keys(),
            login: LoginSettings {
                // Debug-build argon2 is slow and tests log in in parallel: wait longer than
                // production before answering BUSY, so only tests that mean to see it do.
                password_hash_wait: Duration::from_secs(30),
                ..LoginSettings::default()
            },
            broker_admin: None,
        }
    }
}

fn broker_admin() -> Result<Option<BrokerAdminSettings>, ConfigError> {
    let Some(admin_url) = config::var("BROKER_ADMIN_URL").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let amqp_url = config::string_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    BrokerAdminSettings::parse(admin_url.trim(), &amqp_url)
        .map(Some)
        .map_err(|e| ConfigError::new("BROKER_ADMIN_URL", e))
}

/// How long a SIM stays online without a heartbeat (SIM_OFFLINE_AFTER_SECS, 90 s unless
/// set): about three of the agents' heartbeat intervals. The API shows SIMs online by it
/// and the releaser stops giving a SIM jobs, and moves its queued ones, past it.
fn sim_offline_after() -> Result<Duration, ConfigError> {
    const KEY: &str = "SIM_OFFLINE_AFTER_SECS";
    let default = crate::outbox::DEFAULT_SIM_OFFLINE_AFTER.as_secs();
    match config::parse_or::<u64>(KEY, default)? {
        0 => Err(ConfigError::new(KEY, "must be at least 1 second")),
        secs => Ok(Duration::from_secs(secs)),
    }
}

/// How long idempotency keys are honoured: 24 h unless set; zero would make every key
/// useless, so it is refused.
fn idempotency_key_ttl() -> Result<Duration, ConfigError> {
    let ttl = config::duration_or(IDEMPOTENCY_KEY_TTL, Duration::from_secs(24 * 3600))?;
    nonzero_key_ttl(ttl)
}

const IDEMPOTENCY_KEY_TTL: &str = "IDEMPOTENCY_KEY_TTL";

/// A year at most: PostgreSQL's `make_interval` takes the TTL in seconds, and a key kept
/// longer than that is no longer a retry.
const MAX_KEY_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

fn nonzero_key_ttl(ttl: Duration) -> Result<Duration, ConfigError> {
    if ttl.is_zero() || ttl > MAX_KEY_TTL {
        return Err(ConfigError::new(
            IDEMPOTENCY_KEY_TTL,
            "must be longer than zero and at most 8760h, e.g. 24h",
        ));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_or_endless_idempotency_key_ttl_is_refused_naming_the_key() {
        assert_eq!(
            nonzero_key_ttl(Duration::ZERO).unwrap_err().key,
            "IDEMPOTENCY_KEY_TTL"
        );
        assert!(nonzero_key_ttl(Duration::from_secs(60)).is_ok());
        assert!(nonzero_key_ttl(Duration::from_secs(400 * 24 * 3600)).is_err());
    }
}
