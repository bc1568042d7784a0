//! Where spans go and which are kept, from the standard OpenTelemetry variables.
//!
//! These are read here rather than in each binary's settings struct because the
//! subscriber must exist before the settings are read (reading them logs warnings).

use crate::config::{self, ConfigError};

/// The standard variables this module reads.
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
pub const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";

/// The only OTLP transport built in: protobuf over HTTP (the specification's default).
const HTTP_PROTOBUF: &str = "http/protobuf";

/// How spans leave the process, if at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetrySettings {
    /// Full URL of the collector's OTLP/HTTP traces endpoint (`…/v1/traces`). `None`: spans
    /// are created and propagated but not exported, and no exporter task runs.
    pub traces_endpoint: Option<String>,
    /// Replaces the process's built-in `service.name`.
    pub service_name: Option<String>,
    pub sampling: Sampling,
}

/// Which traces are recorded, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Sampling {
    AlwaysOn,
    AlwaysOff,
    /// This share of traces (0.0–1.0), chosen by trace id.
    TraceIdRatio(f64),
    /// Follow the caller's decision; record every trace this process starts.
    #[default]
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    /// Follow the caller's decision; record this share of the traces this process starts.
    ParentBasedTraceIdRatio(f64),
}

impl TelemetrySettings {
    /// Reads the `OTEL_*` variables (after `.env`); errors name the key.
    pub fn from_env() -> Result<TelemetrySettings, ConfigError> {
        config::load_dotenv();
        TelemetrySettings::parse(config::var)
    }

    /// The parsing behind [`TelemetrySettings::from_env`], over any source of variables.
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> Result<TelemetrySettings, ConfigError> {
        for key in [TRACES_PROTOCOL, PROTOCOL] {
            if let Some(protocol) = var(key).filter(|p| p.trim() != HTTP_PROTOBUF) {
                return Err(ConfigError::new(
                    key,
                    format!("`{protocol}` is not supported; only {HTTP_PROTOBUF} is built in"),
                ));
            }
        }
        let traces_endpoint = match (var(TRACES_ENDPOINT), var(ENDPOINT)) {
            // The signal's own variable is the whole URL; the general one is a base to
            // which the signal's path is appended (OTLP exporter specification).
            (Some(url), _) => Some(checked_url(TRACES_ENDPOINT, url)?),
            (None, Some(base)) => {
                let base = checked_url(ENDPOINT, base)?;
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            (None, None) => None,
        };
        Ok(TelemetrySettings {
            traces_endpoint,
            service_name: var(SERVICE_NAME).map(|name| name.trim().to_owned()),
            sampling: Sampling::parse(var(SAMPLER).as_deref(), var(SAMPLER_ARG).as_deref())?,
        })
    }
}

fn checked_url(key: &'static str, url: String) -> Result<String, ConfigError> {
    let url = url.trim().to_owned();
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            ConfigError::new(key, format!("`{url}` is not an http:// or https:// URL"))
        })?;
    if host.is_empty() || host.starts_with('/') {
        return Err(ConfigError::new(key, format!("`{url}` names no host")));
    }
    Ok(url)
}

impl Sampling {
    /// `sampler` as `OTEL_TRACES_SAMPLER` spells it (unset: `parentbased_always_on`);
    /// `arg` is the ratio of the ratio samplers (unset: 1.0).
    pub fn parse(sampler: Option<&str>, arg: Option<&str>) -> Result<Sampling, ConfigError> {
        let ratio = || -> Result<f64, ConfigError> {
            let Some(raw) = arg else { return Ok(1.0) };
            match raw.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(ConfigError::new(
                    SAMPLER_ARG,
                    format!("`{raw}` is not a ratio between 0 and 1"),
                )),
            }
        };
        match sampler.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("parentbased_always_on") => Ok(Sampling::ParentBasedAlwaysOn),
            Some("always_on") => Ok(Sampling::AlwaysOn),
            Some("always_off") => Ok(Sampling::AlwaysOff),
            Some("traceidratio") => Ok(Sampling::TraceIdRatio(ratio()?)),
            Some("parentbased_always_off") => Ok(Sampling::ParentBasedAlwaysOff),
            Some("parentbased_traceidratio") => Ok(Sampling::ParentBasedTraceIdRatio(ratio()?)),
            Some(other) => Err(ConfigError::new(
                SAMPLER,
                format!(
                    "`{other}` is not one of always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<TelemetrySettings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetrySettings::parse(|key| vars.get(key).cloned())
    }

    #[test]
    fn nothing_set_means_no_exporter_and_parent_based_sampling() {
        assert_eq!(parse(&[]).unwrap(), TelemetrySettings::default());
        assert_eq!(
            TelemetrySettings::default().sampling,
            Sampling::ParentBasedAlwaysOn
        );
    }

    #[test]
    fn the_general_endpoint_gets_the_traces_path_appended() {
        for base in ["http://collector:4318", "http://collector:4318/"] {
            let settings = parse(&[(ENDPOINT, base)]).unwrap();
            assert_eq!(
                settings.traces_endpoint.as_deref(),
                Some("http://collector:4318/v1/traces")
            );
        }
    }

    #[test]
    fn the_traces_endpoint_is_taken_whole_and_wins_over_the_general_one() {
        let settings = parse(&[
            (ENDPOINT, "http://ignored:4318"),
            (TRACES_ENDPOINT, "https://tempo.internal/otlp/v1/traces"),
        ])
        .unwrap();
        assert_eq!(
            settings.traces_endpoint.as_deref(),
            Some("https://tempo.internal/otlp/v1/traces")
        );
    }

    #[test]
    fn an_endpoint_that_is_not_an_http_url_names_its_key() {
        assert_eq!(
            parse(&[(ENDPOINT, "collector:4318")]).unwrap_err().key,
            ENDPOINT
        );
        assert_eq!(
            parse(&[(TRACES_ENDPOINT, "http://")]).unwrap_err().key,
            TRACES_ENDPOINT
        );
        assert_eq!(
            parse(&[(TRACES_ENDPOINT, "grpc://collector:4317")])
                .unwrap_err()
                .key,
            TRACES_ENDPOINT
        );
    }

    #[test]
    fn only_the_http_protobuf_protocol_is_accepted() {
        assert!(parse(&[(PROTOCOL, "http/protobuf")]).is_ok());
        assert_eq!(parse(&[(PROTOCOL, "grpc")]).unwrap_err().key, PROTOCOL);
        assert_eq!(
            parse(&[(TRACES_PROTOCOL, "http/json")]).unwrap_err().key,
            TRACES_PROTOCOL
        );
    }

    #[test]
    fn the_service_name_can_be_overridden() {
        let settings = parse(&[(SERVICE_NAME, "api-blue")]).unwrap();
        assert_eq!(settings.service_name.as_deref(), Some("api-blue"));
    }

    #[test]
    fn samplers_parse_with_their_ratio() {
        let sampling = |s: &str, arg: Option<&str>| Sampling::parse(Some(s), arg).unwrap();
        assert_eq!(sampling("always_on", None), Sampling::AlwaysOn);
        assert_eq!(sampling("always_off", None), Sampling::AlwaysOff);
        assert_eq!(
            sampling("traceidratio", Some("0.25")),
            Sampling::TraceIdRatio(0.25)
        );
        assert_eq!(
            sampling("parentbased_traceidratio", Some("0.1")),
            Sampling::ParentBasedTraceIdRatio(0.1)
        );
        assert_eq!(
            sampling("parentbased_traceidratio", None),
            Sampling::ParentBasedTraceIdRatio(1.0)
        );
        assert_eq!(
            sampling("parentbased_always_off", None),
            Sampling::ParentBasedAlwaysOff
        );
    }

    #[test]
    fn a_bad_sampler_or_ratio_names_its_key() {
        assert_eq!(
            Sampling::parse(Some("sometimes"), None).unwrap_err().key,
            SAMPLER
        );
        for bad in ["1.5", "-0.1", "half"] {
            assert_eq!(
                Sampling::parse(Some("traceidratio"), Some(bad))
                    .unwrap_err()
                    .key,
                SAMPLER_ARG,
                "{bad}"
            );
        }
    }
}
