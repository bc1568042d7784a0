//! Start-up settings of the `mock-hkt` binary: `MOCK_HKT_*` env vars, overridden by flags.

use crate::config::{parse, ConfigError, MockConfig};

/// Where `mock-hkt` listens unless told otherwise; the dev stack's dispatcher points here.
pub const DEFAULT_BIND: &str = "127.0.0.1:5555";

/// Help text of the binary.
pub const USAGE: &str = "\
mock-hkt: a mock of the HKT HTTP SMS gateway (see docs/mock-hkt.md)

Usage: mock-hkt [--bind ADDR] [--latency-ms N] [--fail-share F] [--fail-status S]

Each flag overrides its env var:
  --bind ADDR       MOCK_HKT_BIND            listen address (default 127.0.0.1:5555)
  --latency-ms N    MOCK_HKT_LATENCY_MS      latency added to each gateway request
  --fail-share F    MOCK_HKT_FAIL_SHARE      share 0.0-1.0 of requests answered fail-status
  --fail-status S   MOCK_HKT_FAIL_STATUS     4xx/5xx status for failures (default 500)
                    MOCK_HKT_FAIL_NUMBERS    comma-separated mrt values that always fail
                    MOCK_HKT_RETRY_AFTER_SECS  Retry-After on failure answers
Everything can be changed at run time through /mock/config.";

/// What the binary starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub bind: String,
    pub config: MockConfig,
}

impl Settings {
    /// Reads env vars through `var`, then applies `args` (without the program name).
    /// `--flag value` and `--flag=value` are both accepted.
    pub fn parse(
        var: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, ConfigError> {
        let mut settings = Self {
            bind: var("MOCK_HKT_BIND").unwrap_or_else(|| DEFAULT_BIND.to_owned()),
            config: MockConfig::from_lookup(&var)?,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| ConfigError::MissingValue(flag.clone()))
            };
            match flag.as_str() {
                "--bind" => settings.bind = value()?,
                "--latency-ms" => settings.config.latency_ms = parse(&flag, &value()?)?,
                "--fail-share" => settings.config.fail_share = parse(&flag, &value()?)?,
                "--fail-status" => settings.config.fail_status = parse(&flag, &value()?)?,
                _ => return Err(ConfigError::UnknownFlag(flag)),
            }
        }
        settings.config.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_without_env_or_flags() {
        let settings = Settings::parse(|_| None, args(&[])).unwrap();
        assert_eq!(settings.bind, DEFAULT_BIND);
        assert_eq!(settings.config, MockConfig::default());
    }

    #[test]
    fn flags_override_env() {
        let env = |k: &str| match k {
            "MOCK_HKT_BIND" => Some("0.0.0.0:5555".to_owned()),
            "MOCK_HKT_LATENCY_MS" => Some("10".to_owned()),
            _ => None,
        };
        let settings = Settings::parse(
            env,
            args(&[
                "--latency-ms",
                "20",
                "--fail-share=0.5",
                "--fail-status",
                "503",
            ]),
        )
        .unwrap();
        assert_eq!(settings.bind, "0.0.0.0:5555");
        assert_eq!(settings.config.latency_ms, 20);
        assert_eq!(settings.config.fail_share, 0.5);
        assert_eq!(settings.config.fail_status, 503);
    }

    #[test]
    fn unknown_flags_and_missing_values_are_errors() {
        let err = Settings::parse(|_| None, args(&["--verbose"])).unwrap_err();
        assert_eq!(err, ConfigError::UnknownFlag("--verbose".into()));
        let err = Settings::parse(|_| None, args(&["--bind"])).unwrap_err();
        assert_eq!(err, ConfigError::MissingValue("--bind".into()));
        assert!(Settings::parse(|_| None, args(&["--fail-status", "200"])).is_err());
    }
}
