//! The web panel's settings, part of the API service's `Settings`.

use std::time::Duration;

use crate::view::DisplayTz;
use smsgate_shared::config::{self, ConfigError};

#[derive(Debug, Clone)]
pub struct PanelSettings {
    /// DISPLAY_TZ: the zone pages show times in (stored times are UTC).
    pub display_tz: DisplayTz,
    /// SESSION_IDLE_TIMEOUT: a session unused this long ends.
    pub session_idle: Duration,
    /// SESSION_MAX_AGE: a session ends this long after login, however active.
    pub session_max_age: Duration,
    /// COOKIE_SECURE: the panel is served over HTTPS, so the session cookie is
    /// `__Host-sg_session` with `Secure` (the browser then refuses it over plain HTTP and
    /// from any other host or path). Off for `make up` and tests on plain HTTP.
    pub cookie_secure: bool,
}

impl Default for PanelSettings {
    fn default() -> Self {
        PanelSettings {
            display_tz: DisplayTz::default(),
            session_idle: Duration::from_secs(8 * 3600),
            session_max_age: Duration::from_secs(7 * 24 * 3600),
            cookie_secure: false,
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
            cookie_secure: config::bool_or("COOKIE_SECURE", defaults.cookie_secure)?,
        })
    }
}
