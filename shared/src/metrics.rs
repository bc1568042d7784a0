//! Prometheus metrics plumbing shared by the API and the dispatcher (cargo feature
//! `metrics`): each process registers its metrics in a registry of its own and renders
//! them in the text exposition format.
//!
//! A registry per process value rather than the crate's global one: the integration
//! tests run many stacks in one binary, and each must count only its own work.
//! Names are `smsgate_*` with the unit in the name; labels only take values from short
//! fixed lists (never ids, numbers or raw paths), so the series stay few.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::config::{self, looks_like_a_placeholder, ConfigError};

pub use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// `Content-Type` of [`MetricsRegistry::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Buckets for request and call latencies, in seconds: 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One process's metrics. Cheap to clone; clones share the registry.
///
/// The names and labels are fixed in code, so a registration error (a bad name, the same
/// name twice) is a programming error: it panics at start-up, where tests see it.
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    registry: prometheus::Registry,
}

impl MetricsRegistry {
    pub fn new() -> MetricsRegistry {
        MetricsRegistry::default()
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(
            prometheus::Opts::new(name, help),
            labels,
        ))
    }

    /// A counter per value of one label, resolved now: recording is one atomic add, with
    /// no label lookup.
    pub fn counters<const N: usize>(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: [&str; N],
    ) -> [IntCounter; N] {
        let vec = self.counter_vec(name, help, &[label]);
        values.map(|value| vec.with_label_values(&[value]))
    }

    /// A histogram per value of one label, resolved now.
    pub fn histograms<const N: usize>(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: [&str; N],
        buckets: &[f64],
    ) -> [Histogram; N] {
        let vec = self.histogram_vec(name, help, &[label], buckets);
        values.map(|value| vec.with_label_values(&[value]))
    }

    /// A gauge per value of one label, resolved now.
    pub fn gauges<const N: usize>(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: [&str; N],
    ) -> [IntGauge; N] {
        let vec = self.gauge_vec(name, help, &[label]);
        values.map(|value| vec.with_label_values(&[value]))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(prometheus::Opts::new(name, help), labels))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.register(Histogram::with_opts(
            prometheus::HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ))
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        self.register(HistogramVec::new(
            prometheus::HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ))
    }

    fn register<M>(&self, metric: prometheus::Result<M>) -> M
    where
        M: prometheus::core::Collector + Clone + 'static,
    {
        let metric = metric.expect("a valid metric definition");
        self.registry
            .register(Box::new(metric.clone()))
            .expect("each metric is registered once");
        metric
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_render_in_the_text_format() {
        let registry = MetricsRegistry::new();
        let sends = registry.counter("smsgate_test_sends_total", "Sends.");
        let by_route = registry.counter_vec("smsgate_test_routes_total", "By route.", &["route"]);
        let latency =
            registry.histogram("smsgate_test_latency_seconds", "Latency.", LATENCY_BUCKETS);
        sends.inc_by(3);
        by_route.with_label_values(&["hkt"]).inc();
        latency.observe(0.004);
        let text = registry.render();
        assert!(text.contains("smsgate_test_sends_total 3"), "{text}");
        assert!(
            text.contains("smsgate_test_routes_total{route=\"hkt\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("smsgate_test_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE smsgate_test_latency_seconds histogram"),
            "{text}"
        );
    }

    #[test]
    fn two_registries_count_apart() {
        let a = MetricsRegistry::new();
        let b = MetricsRegistry::new();
        a.counter("smsgate_test_total", "A.").inc();
        b.counter("smsgate_test_total", "B.");
        assert!(b.render().contains("smsgate_test_total 0"));
    }
}

/// The bearer token that guards a process's `/metrics` (`METRICS_TOKEN`): the API's and
/// each dispatcher's. Holding one is proof it is long and not a placeholder.
#[derive(Clone)]
pub struct MetricsToken(SecretString);

/// Why a scrape was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetricsRefusal {
    #[error("authentication required: send `Authorization: Bearer <METRICS_TOKEN>`")]
    Missing,
    #[error("the metrics token is not valid")]
    Wrong,
}

impl MetricsToken {
    pub const KEY: &'static str = "METRICS_TOKEN";

    /// A token must be long enough not to be guessed, as the other secrets.
    pub fn parse(raw: &str) -> Result<MetricsToken, ConfigError> {
        let token = raw.trim();
        if token.len() < 16 || looks_like_a_placeholder(token) {
            return Err(ConfigError::new(
                Self::KEY,
                "is shorter than 16 characters or a placeholder; set a strong random value, or leave it unset",
            ));
        }
        Ok(MetricsToken(token.to_owned().into()))
    }

    /// `METRICS_TOKEN` from the environment: unset leaves `/metrics` open to whoever
    /// reaches its port.
    pub fn from_env() -> Result<Option<MetricsToken>, ConfigError> {
        config::var(Self::KEY)
            .as_deref()
            .map(Self::parse)
            .transpose()
    }

    /// Checks the bearer token a scrape presented, in time independent of where it
    /// differs.
    pub fn check(&self, presented: Option<&str>) -> Result<(), MetricsRefusal> {
        let given = presented.ok_or(MetricsRefusal::Missing)?;
        let expected = self.0.expose_secret().as_bytes();
        if bool::from(given.as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(MetricsRefusal::Wrong)
        }
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken([REDACTED])")
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn a_weak_metrics_token_is_refused_and_names_the_key() {
        for weak in ["short", "CHANGE-ME-metrics-token-placeholder"] {
            let err = MetricsToken::parse(weak).unwrap_err();
            assert_eq!(err.key, "METRICS_TOKEN", "{weak}");
        }
    }

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let token = MetricsToken::parse(&"a".repeat(32)).unwrap();
        assert_eq!(token.check(Some(&"a".repeat(32))), Ok(()));
        assert_eq!(token.check(None), Err(MetricsRefusal::Missing));
        for wrong in ["", "a", &"a".repeat(31), &"a".repeat(33), &"b".repeat(32)] {
            assert_eq!(
                token.check(Some(wrong)),
                Err(MetricsRefusal::Wrong),
                "{wrong}"
            );
        }
    }
}
