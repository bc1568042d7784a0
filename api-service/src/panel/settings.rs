//! The web panel's settings, part of the API service's `Settings`.

use std::time::Duration;

use smsgate_shared::config::{self, ConfigError};
use smsgate_web::view::DisplayTz;

#[derive(Debug, Clone)]
pub struct PanelSettings {
    /// DISPLAY_TZ: the zone pages show times in (stored times are UTC).
    pub display_tz: DisplayTz,
    /// SESSION_IDLE_TIMEOUT: a session unused this long ends.
    pub session_idle: Duration,
    /// SESSION_MAX_AGE: a session ends this long after login, however active.
    pub session_max_age: Duration,
    /// Failed logins per username within `login_window` before that username is refused.
    pub max_failures_per_username: i64,
    /// Failed logins per client address within `login_window` (password spraying).
    pub max_failures_per_address: i64,
    pub login_window: Duration,
    /// TRUST_PROXY_HEADERS: take the client address from `X-Real-IP`/`X-Forwarded-For`
    /// (only behind our nginx, which sets them; otherwise clients could forge them).
    pub trust_proxy_headers: bool,
}

impl Default for PanelSettings {
    fn default() -> Self {
        PanelSettings {
            display_tz: DisplayTz::default(),
            session_idle: Duration::from_secs(8 * 3600),
            session_max_age: Duration::from_secs(7 * 24 * 3600),
            max_failures_per_username: 5,
            max_failures_per_address: 20,
            login_window: Duration::from_secs(15 * 60),
            trust_proxy_headers: false,
        }
    }
}

impl PanelSettings {
    pub fn from_env() -> Result<PanelSettings, ConfigError> {
        let defaults = PanelSettings::default();
        let tz_name = config::string_or("DISPLAY_TZ", "Asia/Hong_Kong");
        let display_tz = DisplayTz::parse(&tz_name).ok_or_else(|| {
            ConfigError::new(
                "DISPLAY_TZ",
                "is not an IANA time zone name such as Asia/Hong_Kong",
            )
        })?;
        Ok(PanelSettings {
            display_tz,
            session_idle: config::duration_or("SESSION_IDLE_TIMEOUT", defaults.session_idle)?,
            session_max_age: config::duration_or("SESSION_MAX_AGE", defaults.session_max_age)?,
            max_failures_per_username: config::parse_or(
                "LOGIN_MAX_FAILURES_PER_USERNAME",
                defaults.max_failures_per_username,
            )?,
            max_failures_per_address: config::parse_or(
                "LOGIN_MAX_FAILURES_PER_ADDRESS",
                defaults.max_failures_per_address,
            )?,
            login_window: config::duration_or("LOGIN_THROTTLE_WINDOW", defaults.login_window)?,
            trust_proxy_headers: config::bool_or("TRUST_PROXY_HEADERS", false)?,
        })
    }
}
