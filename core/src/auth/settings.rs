//! Login throttling and password-hashing limits, shared by the panel and the API.

use std::time::Duration;

use smsgate_shared::config::{self, ConfigError};

use super::throttle::IpRange;

/// The one login throttle (panel `/login`, `POST /api/auth/login`, `POST /api/auth`) and the
/// bound on concurrent argon2 work.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// LOGIN_MAX_FAILURES_PER_USERNAME: failed logins for one username *from one client
    /// address* within `window` before that pair is refused. (The name predates the pairing;
    /// other addresses can still sign in to the account.)
    pub max_failures_per_user_address: u32,
    /// LOGIN_MAX_FAILURES_PER_ADDRESS: failed logins from one client address, any username,
    /// within `window` (password spraying).
    pub max_failures_per_address: u32,
    /// LOGIN_THROTTLE_WINDOW: how long failures count, from the first one.
    pub window: Duration,
    /// TRUST_PROXY_HEADERS: take the client address from `X-Real-IP` (or `X-Forwarded-For`)
    /// when the request comes from one of `trusted_proxies`. Only behind our nginx or
    /// ingress, which overwrite them; otherwise clients could forge an address per attempt.
    pub trust_proxy_headers: bool,
    /// TRUSTED_PROXIES: the peers whose proxy headers are believed (comma-separated
    /// addresses or CIDR ranges); a request from anywhere else is counted by its TCP peer.
    pub trusted_proxies: Vec<IpRange>,
    /// PASSWORD_HASH_CONCURRENCY: argon2 hashes or verifications running at once (19 MiB
    /// and a core each); more wait up to `password_hash_wait`, then get 503 BUSY.
    pub password_hash_concurrency: usize,
    /// PASSWORD_HASH_WAIT: how long a login waits for a hashing slot.
    pub password_hash_wait: Duration,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            max_failures_per_user_address: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(15 * 60),
            trust_proxy_headers: false,
            trusted_proxies: parse_trusted_proxies(DEFAULT_TRUSTED_PROXIES)
                .expect("the default TRUSTED_PROXIES parse"),
            password_hash_concurrency: 4,
            password_hash_wait: Duration::from_millis(500),
        }
    }
}

impl LoginSettings {
    pub fn from_env() -> Result<LoginSettings, ConfigError> {
        let defaults = LoginSettings::default();
        let settings = LoginSettings {
            max_failures_per_user_address: config::parse_or(
                "LOGIN_MAX_FAILURES_PER_USERNAME",
                defaults.max_failures_per_user_address,
            )?,
            max_failures_per_address: config::parse_or(
                "LOGIN_MAX_FAILURES_PER_ADDRESS",
                defaults.max_failures_per_address,
            )?,
            window: config::duration_or("LOGIN_THROTTLE_WINDOW", defaults.window)?,
            trust_proxy_headers: config::bool_or("TRUST_PROXY_HEADERS", false)?,
            trusted_proxies: parse_trusted_proxies(&config::string_or(
                TRUSTED_PROXIES,
                DEFAULT_TRUSTED_PROXIES,
            ))?,
            password_hash_concurrency: config::parse_or(
                "PASSWORD_HASH_CONCURRENCY",
                defaults.password_hash_concurrency,
            )?,
            password_hash_wait: config::duration_or(
                "PASSWORD_HASH_WAIT",
                defaults.password_hash_wait,
            )?,
        };
        if settings.password_hash_concurrency == 0 {
            return Err(ConfigError::new(
                "PASSWORD_HASH_CONCURRENCY",
                "must be at least 1",
            ));
        }
        if settings.window.is_zero() {
            return Err(ConfigError::new(
                "LOGIN_THROTTLE_WINDOW",
                "must be longer than zero, e.g. 15m",
            ));
        }
        Ok(settings)
    }
}

const TRUSTED_PROXIES: &str = "TRUSTED_PROXIES";

/// The bundled nginx runs on the API's host and connects over loopback.
const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.1/32,::1/128";

/// `TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges; a bad entry is named.
fn parse_trusted_proxies(value: &str) -> Result<Vec<IpRange>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| IpRange::parse(entry).map_err(|e| ConfigError::new(TRUSTED_PROXIES, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_take_addresses_and_cidr_ranges_and_name_the_key_on_a_bad_entry() {
        let proxies = parse_trusted_proxies(" 10.0.0.0/8, ::1/128 ,192.0.2.7,").unwrap();
        assert_eq!(
            proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]
        );
        for bad in [
            "10.0.0.0/33",
            "ingress",
            "10.0.0.0/8,10.0.0.x",
            "::1/129",
            "1.2.3.4/",
        ] {
            let err = parse_trusted_proxies(bad).unwrap_err();
            assert_eq!(err.key, "TRUSTED_PROXIES", "{bad}");
        }
        let defaults = LoginSettings::default().trusted_proxies;
        assert_eq!(
            defaults.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["127.0.0.1/32", "::1/128"]
        );
    }
}
