//! Reading configuration from the environment (and `.env`), with errors that name the key.
//!
//! Each binary owns one typed settings struct and builds it with these helpers in `main`;
//! tests build the same structs directly, so nothing below reads the environment twice.

use std::str::FromStr;
use std::time::Duration;

/// A configuration value that is missing or does not parse. Always names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration key {key}: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            key,
            problem: problem.into(),
        }
    }
}

/// Loads `.env` from the working directory if there is one. Real environment variables win.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}

/// Secrets that shipped as defaults in the replaced systems or in examples.
const KNOWN_DEFAULT_SECRETS: &[&str] = &[
    "dev-secret-key",
    "dev-jwt-key",
    "change-me",
    "secret",
    "changeme",
];

/// Whether a secret is a known default or a placeholder that example files ship
/// (`CHANGE-ME-…`): such a value must never guard anything.
pub fn looks_like_a_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    KNOWN_DEFAULT_SECRETS.contains(&lower.as_str())
        || ["change-me", "changeme", "placeholder", "example"]
            .iter()
            .any(|p| lower.contains(p))
}

/// The raw value of `key`, `None` when unset or empty.
pub fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// `key` parsed as `T`, or `default` when unset.
pub fn parse_or<T>(key: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match var(key) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::new(key, format!("`{raw}` is not valid: {e}"))),
    }
}

/// `key` as a string, or `default` when unset.
/// `HKT_RATE_LIMIT`: requests a second the HKT gateway takes, across every dispatcher
/// (2/s is what the replaced panel sent); `None` for 0, unlimited. The dispatchers enforce
/// it; the releaser paces to it and the API estimates completion times from it.
pub fn hkt_rate_limit() -> Result<Option<f64>, ConfigError> {
    let rate = parse_or("HKT_RATE_LIMIT", 2.0f64)?;
    if rate < 0.0 || !rate.is_finite() {
        return Err(ConfigError::new(
            "HKT_RATE_LIMIT",
            "must be a positive number, or 0 for unlimited",
        ));
    }
    Ok((rate > 0.0).then_some(rate))
}

pub fn string_or(key: &'static str, default: &str) -> String {
    var(key).unwrap_or_else(|| default.to_owned())
}

/// `key` as a boolean (`1/0`, `true/false`, `yes/no`), or `default` when unset.
pub fn bool_or(key: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(ConfigError::new(key, format!("`{v}` is not a boolean"))),
    }
}

/// Parses a duration written as `250ms`, `5s`, `2m` or `1h` (a bare number means seconds).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration like 5s"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        other => Err(format!("unknown duration unit `{other}` in `{raw}`")),
    }
}

/// A comma-separated list of durations, e.g. the retry schedule `5s,30s,2m,10m`.
pub fn duration_list_or(
    key: &'static str,
    default: &[Duration],
) -> Result<Vec<Duration>, ConfigError> {
    match var(key) {
        None => Ok(default.to_vec()),
        Some(raw) => raw
            .split(',')
            .map(|part| parse_duration(part).map_err(|e| ConfigError::new(key, e)))
            .collect(),
    }
}

/// A single duration, or `default` when unset.
pub fn duration_or(key: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match var(key) {
        None => Ok(default),
        Some(raw) => parse_duration(&raw).map_err(|e| ConfigError::new(key, e)),
    }
}

/// Whether the process runs for development (generated secrets allowed) or production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

impl AppEnv {
    /// Reads `APP_ENV`: `production`/`prod` or `development`/`dev` (the default).
    pub fn from_env() -> Result<AppEnv, ConfigError> {
        match var("APP_ENV").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("development") | Some("dev") => Ok(AppEnv::Development),
            Some("production") | Some("prod") => Ok(AppEnv::Production),
            Some(other) => Err(ConfigError::new(
                "APP_ENV",
                format!("`{other}` is neither development nor production"),
            )),
        }
    }
}

/// The RabbitMQ side every process shares: where the broker is and how names are prefixed.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub amqp_url: String,
    /// Prefix of every exchange and queue name, so tests (and tenants) can isolate themselves.
    pub prefix: String,
    /// Delay before each retry; the job goes to the dead queue after the last one.
    pub retry_schedule: Vec<Duration>,
    /// Declare the dispatch queues as quorum queues (replicated, durable by design).
    pub quorum_queues: bool,
    /// Let idle queues expire; only tests set this, so their topologies clean themselves up.
    pub queue_expiry: Option<Duration>,
}

/// The default retry schedule: 5 s, 30 s, 2 min, 10 min.
pub fn default_retry_schedule() -> Vec<Duration> {
    [5, 30, 120, 600].map(Duration::from_secs).to_vec()
}

impl QueueSettings {
    /// Settings for tests: the given broker and prefix, the default retry schedule. Every
    /// process of a test (API, dispatcher, modem agent) must declare with the same
    /// arguments, or the broker refuses the later declarations, so they all start here.
    pub fn for_tests(amqp_url: &str, prefix: &str) -> QueueSettings {
        QueueSettings {
            amqp_url: amqp_url.to_owned(),
            prefix: prefix.to_owned(),
            retry_schedule: default_retry_schedule(),
            // Classic queues in tests: every test declares its own topology, and hundreds of
            // short-lived quorum queues (one Raft cluster each) stalled the shared broker
            // for minutes. Production keeps quorum queues (QUORUM_QUEUES, default on).
            quorum_queues: false,
            queue_expiry: Some(Duration::from_secs(600)),
        }
    }

    /// Reads AMQP_URL, QUEUE_PREFIX, RETRY_SCHEDULE and QUORUM_QUEUES.
    pub fn from_env() -> Result<QueueSettings, ConfigError> {
        let retry_schedule = duration_list_or("RETRY_SCHEDULE", &default_retry_schedule())?;
        if retry_schedule.is_empty() || retry_schedule.iter().any(Duration::is_zero) {
            return Err(ConfigError::new(
                "RETRY_SCHEDULE",
                "needs at least one non-zero delay",
            ));
        }
        let prefix = string_or("QUEUE_PREFIX", "smsgate");
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "QUEUE_PREFIX",
                "only letters, digits, `-` and `_` are allowed",
            ));
        }
        Ok(QueueSettings {
            amqp_url: string_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix,
            retry_schedule,
            quorum_queues: bool_or("QUORUM_QUEUES", true)?,
            queue_expiry: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_units_operators_write() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = ConfigError::new("RETRY_SCHEDULE", "bad");
        assert!(err.to_string().contains("RETRY_SCHEDULE"));
    }
}
