//! The API service's settings: defaults, then `.env`, then environment variables.
//! Validated once at start-up; errors name the key.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use smsgate_shared::config::{self, looks_like_a_placeholder, AppEnv, ConfigError};
use smsgate_shared::metrics::MetricsToken;

pub use smsgate_core::auth::LoginSettings;
pub use smsgate_core::CoreSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    pub env: AppEnv,
    pub bind: SocketAddr,
    pub database_url: SecretString,
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before answering 503.
    pub db_acquire_timeout: Duration,
    pub jwt_secret: SecretString,
    pub secret_key: SecretString,
    pub admin_password: Option<SecretString>,
    /// Largest accepted request body; a 100,000-recipient bulk is about 2 MB of JSON.
    pub body_limit_bytes: usize,
    /// Longest a request may take to start its response before it is answered 503.
    pub request_timeout: Duration,
    /// The web panel's settings (DISPLAY_TZ, sessions, cookies).
    pub panel: smsgate_web::PanelSettings,
    /// When set, `GET /metrics` answers only `Authorization: Bearer <this>`.
    pub metrics_token: Option<MetricsToken>,
    /// What the domain's services run with (limits, queues, keys, login throttle).
    pub core: CoreSettings,
}

impl Settings {
    /// Reads every key; in production a missing or known-default secret is an error, in
    /// development a random one is generated (sessions and tokens then end at restart).
    pub fn from_env() -> Result<Settings, ConfigError> {
        config::load_dotenv();
        let env = AppEnv::from_env()?;
        Ok(Settings {
            env,
            bind: config::parse_or("BIND_ADDR", SocketAddr::from(([0, 0, 0, 0], 3570)))?,
            database_url: config::string_or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/smsgate",
            )
            .into(),
            db_max_connections: config::parse_or("DB_MAX_CONNECTIONS", 20)?,
            db_acquire_timeout: config::duration_or("DB_ACQUIRE_TIMEOUT", Duration::from_secs(3))?,
            jwt_secret: secret(env, "JWT_SECRET_KEY")?,
            secret_key: secret(env, "SECRET_KEY")?,
            admin_password: config::var("ADMIN_PASSWORD").map(SecretString::from),
            body_limit_bytes: config::parse_or("BODY_LIMIT_BYTES", 16 * 1024 * 1024)?,
            request_timeout: config::duration_or("REQUEST_TIMEOUT", Duration::from_secs(30))?,
            panel: smsgate_web::PanelSettings::from_env()?,
            metrics_token: MetricsToken::from_env()?,
            core: CoreSettings::from_env()?,
        })
    }

    /// Settings for tests: everything local, the given database and queue prefix.
    pub fn for_tests(database_url: &str, amqp_url: &str, queue_prefix: &str) -> Settings {
        Settings {
            env: AppEnv::Development,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.to_owned().into(),
            db_max_connections: 10,
            db_acquire_timeout: Duration::from_secs(2),
            jwt_secret: "test-jwt-secret-0123456789abcdef".to_owned().into(),
            secret_key: "test-secret-key-0123456789abcdef".to_owned().into(),
            admin_password: Some("SMSpass#12".to_owned().into()),
            body_limit_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            panel: smsgate_web::PanelSettings::default(),
            metrics_token: None,
            core: CoreSettings::for_tests(amqp_url, queue_prefix),
        }
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

fn secret(env: AppEnv, key: &'static str) -> Result<SecretString, ConfigError> {
    resolve_secret(env, key, config::var(key))
}

fn resolve_secret(
    env: AppEnv,
    key: &'static str,
    value: Option<String>,
) -> Result<SecretString, ConfigError> {
    match (value, env) {
        (Some(value), AppEnv::Production)
            if looks_like_a_placeholder(&value) || value.len() < 16 =>
        {
            Err(ConfigError::new(
                key,
                "is a known default or shorter than 16 characters; set a strong random value",
            ))
        }
        (Some(value), _) => Ok(value.into()),
        (None, AppEnv::Production) => Err(ConfigError::new(key, "is required in production")),
        (None, AppEnv::Development) => {
            tracing::warn!(
                "{key} is not set; generated a random one for this run (development mode)"
            );
            Ok(random_secret().into())
        }
    }
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex_encode(&bytes)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_template_and_the_config_map_carry_the_proxy_settings() {
        // The systemd install copies .env.example; a key missing there is a key nobody sets.
        let template = include_str!("../../.env.example");
        for key in ["TRUST_PROXY_HEADERS=", "TRUSTED_PROXIES=", "COOKIE_SECURE="] {
            assert!(template.lines().any(|line| line.starts_with(key)), "{key}");
        }
        let config_map = include_str!("../../deploy/k8s/configmap.yaml");
        assert!(config_map.contains("\n  TRUSTED_PROXIES: "));
    }

    #[test]
    fn production_refuses_a_missing_secret_and_names_the_key() {
        let err = resolve_secret(AppEnv::Production, "JWT_SECRET_KEY", None).unwrap_err();
        assert_eq!(err.key, "JWT_SECRET_KEY");
    }

    #[test]
    fn production_refuses_known_defaults_and_short_secrets() {
        for weak in [
            "dev-jwt-key",
            "dev-secret-key",
            "short",
            "CHANGE-ME-placeholder-not-a-real-secret",
        ] {
            assert!(
                resolve_secret(AppEnv::Production, "SECRET_KEY", Some(weak.into())).is_err(),
                "{weak}"
            );
        }
        assert!(resolve_secret(AppEnv::Production, "SECRET_KEY", Some("a".repeat(32))).is_ok());
    }

    #[test]
    fn development_generates_a_random_secret_when_none_is_set() {
        let a = resolve_secret(AppEnv::Development, "SECRET_KEY", None).unwrap();
        let b = resolve_secret(AppEnv::Development, "SECRET_KEY", None).unwrap();
        assert_eq!(a.expose_secret().len(), 64);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
