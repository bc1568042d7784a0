//! The mock's behaviour knobs, settable at start (env, flags) and at run time (`/mock/config`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the mock gateway answers. Every field is optional in JSON; a missing one takes its default,
/// so `{}` means "behave like a healthy gateway".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// Added to every gateway request before it is answered (not to the control API).
    pub latency_ms: u64,
    /// Recipients (`mrt`, as sent) that always get `fail_status`.
    pub fail_numbers: Vec<String>,
    /// Share (0.0–1.0) of gateway requests, picked at random, that get `fail_status`.
    pub fail_share: f64,
    /// Status for `fail_numbers` and `fail_share` failures; a 4xx or 5xx.
    pub fail_status: u16,
    /// The next N gateway requests answer `burst_status`; counts down as they are served.
    pub burst_5xx: u32,
    /// Status for the burst; a 4xx or 5xx.
    pub burst_status: u16,
    /// When set, the configured failures (burst, numbers, share) carry `Retry-After: <secs>`.
    pub retry_after_secs: Option<u32>,
    /// Accept gateway requests and never answer them, to exercise client timeouts.
    pub hang: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            fail_numbers: Vec::new(),
            fail_share: 0.0,
            fail_status: 500,
            burst_5xx: 0,
            burst_status: 503,
            retry_after_secs: None,
            hang: false,
        }
    }
}

/// A config the mock refuses, naming the offending field.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// `fail_share` outside 0.0–1.0 (or NaN).
    FailShare(f64),
    /// A status field that is not a 4xx or 5xx: a "failure" answering 200 would hide test bugs.
    NotAFailureStatus { field: &'static str, status: u16 },
    /// An env var or flag whose value does not parse.
    Unparsable { key: String, value: String },
    /// A command-line flag the binary does not know.
    UnknownFlag(String),
    /// A command-line flag given without its value.
    MissingValue(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailShare(v) => write!(f, "fail_share must be within 0.0..=1.0, got {v}"),
            Self::NotAFailureStatus { field, status } => {
                write!(f, "{field} must be a 4xx or 5xx status, got {status}")
            }
            Self::Unparsable { key, value } => write!(f, "{key}: cannot parse {value:?}"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag {flag} (try --help)"),
            Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl MockConfig {
    /// Checks the ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.fail_share) {
            return Err(ConfigError::FailShare(self.fail_share));
        }
        for (field, status) in [
            ("fail_status", self.fail_status),
            ("burst_status", self.burst_status),
        ] {
            if !(400..=599).contains(&status) {
                return Err(ConfigError::NotAFailureStatus { field, status });
            }
        }
        Ok(())
    }

    /// Builds a config from `MOCK_HKT_*` variables looked up through `var`, defaults for the rest.
    ///
    /// Read: `MOCK_HKT_LATENCY_MS`, `MOCK_HKT_FAIL_SHARE`, `MOCK_HKT_FAIL_STATUS`,
    /// `MOCK_HKT_FAIL_NUMBERS` (comma-separated), `MOCK_HKT_RETRY_AFTER_SECS`. Taking a lookup
    /// function instead of reading the process env keeps this testable without `set_var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut cfg = Self::default();
        if let Some(v) = var("MOCK_HKT_LATENCY_MS") {
            cfg.latency_ms = parse("MOCK_HKT_LATENCY_MS", &v)?;
        }
        if let Some(v) = var("MOCK_HKT_FAIL_SHARE") {
            cfg.fail_share = parse("MOCK_HKT_FAIL_SHARE", &v)?;
        }
        if let Some(v) = var("MOCK_HKT_FAIL_STATUS") {
            cfg.fail_status = parse("MOCK_HKT_FAIL_STATUS", &v)?;
        }
        if let Some(v) = var("MOCK_HKT_FAIL_NUMBERS") {
            cfg.fail_numbers = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = var("MOCK_HKT_RETRY_AFTER_SECS") {
            cfg.retry_after_secs = Some(parse("MOCK_HKT_RETRY_AFTER_SECS", &v)?);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Parses one env value, naming the key on failure. Empty values count as unparsable rather than
/// "unset" so a typo in a compose file is noticed.
pub(crate) fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Unparsable {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn empty_json_object_is_the_default_config() {
        let cfg: MockConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, MockConfig::default());
    }

    #[test]
    fn unknown_fields_are_refused_so_typos_are_not_silently_ignored() {
        assert!(serde_json::from_str::<MockConfig>(r#"{"latency":5}"#).is_err());
    }

    #[test]
    fn env_values_fill_the_config() {
        let cfg = MockConfig::from_lookup(lookup(&[
            ("MOCK_HKT_LATENCY_MS", "25"),
            ("MOCK_HKT_FAIL_SHARE", "0.1"),
            ("MOCK_HKT_FAIL_STATUS", "502"),
            ("MOCK_HKT_FAIL_NUMBERS", "85211111111, 85222222222"),
            ("MOCK_HKT_RETRY_AFTER_SECS", "3"),
        ]))
        .unwrap();
        assert_eq!(cfg.latency_ms, 25);
        assert_eq!(cfg.fail_share, 0.1);
        assert_eq!(cfg.fail_status, 502);
        assert_eq!(cfg.fail_numbers, ["85211111111", "85222222222"]);
        assert_eq!(cfg.retry_after_secs, Some(3));
    }

    #[test]
    fn bad_env_values_name_their_key() {
        let err = MockConfig::from_lookup(lookup(&[("MOCK_HKT_LATENCY_MS", "soon")])).unwrap_err();
        assert!(err.to_string().contains("MOCK_HKT_LATENCY_MS"));
        let err = MockConfig::from_lookup(lookup(&[("MOCK_HKT_FAIL_SHARE", "1.5")])).unwrap_err();
        assert_eq!(err, ConfigError::FailShare(1.5));
        let err = MockConfig::from_lookup(lookup(&[("MOCK_HKT_FAIL_STATUS", "200")])).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotAFailureStatus { status: 200, .. }
        ));
    }
}
