//! The dispatcher's settings: defaults, then `.env`, then environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use smsgate_core::optout::{self, Keywords};
use smsgate_shared::config::{self, ConfigError, QueueSettings};
use smsgate_shared::metrics::MetricsToken;
use smsgate_shared::secret_box::{self, SecretBox};

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub db_max_connections: u32,
    pub queue: QueueSettings,
    pub hkt: HktSettings,
    /// Unacked jobs the broker hands this process at once. It must cover the sends in
    /// flight plus the results waiting for their batch to commit, or the pipe runs dry.
    pub prefetch: u16,
    /// Requests per second to the HKT gateway across all dispatcher replicas together;
    /// `None` (HKT_RATE_LIMIT=0) means unlimited.
    pub hkt_rate_limit: Option<f64>,
    /// Gateway requests in flight at once.
    pub concurrency: usize,
    /// A result batch is written when it holds this many results…
    pub batch_size: usize,
    /// …or when its oldest result has waited this long.
    pub batch_max_wait: Duration,
    /// Where `GET /metrics` is served; `None` (METRICS_BIND=off): nowhere.
    pub metrics_bind: Option<SocketAddr>,
    /// METRICS_TOKEN: when set, a scrape must send `Authorization: Bearer <it>`. Required
    /// when `metrics_bind` is not a loopback address.
    pub metrics_token: Option<MetricsToken>,
    /// How webhook deliveries are made.
    pub webhooks: WebhookSettings,
    /// OPT_OUT_KEYWORDS and OPT_IN_KEYWORDS (comma-separated): a received SMS that says
    /// one of them, and nothing else, puts its sender on the global opt-out list (or takes
    /// a reply's opt-out off it).
    pub opt_out_keywords: Keywords,
}

/// How this dispatcher delivers webhooks.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries in flight at once to one endpoint, across all dispatchers: a slow or
    /// hanging endpoint holds at most this many slots, the others keep flowing.
    pub max_in_flight_per_endpoint: usize,
    /// Longest one POST may take, connecting included.
    pub timeout: Duration,
    /// Delay before each retry; a delivery is tried once plus once per step, then failed.
    pub retry_schedule: Vec<Duration>,
    /// How often an idle dispatcher looks for due deliveries.
    pub poll_interval: Duration,
    /// Whether endpoints on loopback, private and link-local addresses may be called
    /// (development and tests only: in production that would let users reach internal
    /// services).
    pub allow_internal_targets: bool,
    /// How long delivered and failed deliveries are kept for `GET …/deliveries`.
    pub retention: Duration,
    /// The keys that open the webhooks' signing secrets (WEBHOOK_SECRET_KEYS, required; the
    /// same list as the API's, or at least every key id still in the database).
    pub secret_keys: SecretBox,
}

impl WebhookSettings {
    fn from_env() -> Result<WebhookSettings, ConfigError> {
        let retry_schedule = config::duration_list_or(
            "WEBHOOK_RETRY_SCHEDULE",
            &[10, 60, 300, 1800, 7200, 21600, 43200].map(Duration::from_secs),
        )?;
        if retry_schedule.is_empty() {
            return Err(ConfigError::new(
                "WEBHOOK_RETRY_SCHEDULE",
                "needs at least one delay, e.g. 10s,1m,5m",
            ));
        }
        Ok(WebhookSettings {
            concurrency: at_least_one("WEBHOOK_CONCURRENCY", 16)?,
            max_in_flight_per_endpoint: at_least_one("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", 8)?,
            timeout: duration_at_least(
                "WEBHOOK_TIMEOUT",
                Duration::from_secs(10),
                Duration::from_secs(1),
            )?,
            retry_schedule,
            // Zero would have an idle dispatcher query PostgreSQL without pause.
            poll_interval: duration_at_least(
                "WEBHOOK_POLL_INTERVAL",
                Duration::from_secs(1),
                Duration::from_millis(10),
            )?,
            allow_internal_targets: config::bool_or("WEBHOOK_ALLOW_INTERNAL_TARGETS", false)?,
            retention: config::duration_or(
                "WEBHOOK_DELIVERY_RETENTION",
                Duration::from_secs(7 * 24 * 3600),
            )?,
            secret_keys: secret_box::webhook_keys_from_env()?,
        })
    }

    /// Quick retries and loopback endpoints, for tests.
    pub fn for_tests() -> WebhookSettings {
        WebhookSettings {
            concurrency: 8,
            max_in_flight_per_endpoint: 4,
            timeout: Duration::from_secs(2),
            retry_schedule: vec![Duration::from_millis(200), Duration::from_millis(400)],
            poll_interval: Duration::from_millis(50),
            allow_internal_targets: true,
            retention: Duration::from_secs(24 * 3600),
            secret_keys: secret_box::test_keys(),
        }
    }
}

/// Where and as whom the HKT gateway is called.
#[derive(Debug, Clone)]
pub struct HktSettings {
    /// Parsed once at start: a malformed HKT_BASE_URL stops the dispatcher with the key
    /// named, and no request pays for parsing it again (that was ~5 % of the dispatcher's
    /// CPU when it parsed the string per request; perf).
    pub base_url: reqwest::Url,
    pub application_id: String,
    pub sender_number: String,
    pub timeout: Duration,
}

impl Settings {
    /// The prefetch actually asked of the broker. Under a gateway rate limit, jobs held in
    /// prefetch wait for their slot in arrival order, ahead of anything released later (an
    /// OTP behind a campaign): so hold no more than about half a second of the rate, as the
    /// releaser keeps in the queue, and at least two so a send is always ready.
    pub fn effective_prefetch(&self) -> u16 {
        match self.hkt_rate_limit {
            Some(rate) => {
                let half_second = (rate * 0.5).ceil().clamp(2.0, f64::from(u16::MAX)) as u16;
                self.prefetch.min(half_second)
            }
            None => self.prefetch,
        }
    }

    pub fn from_env() -> Result<Settings, ConfigError> {
        config::load_dotenv();
        let settings = Settings {
            database_url: config::string_or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/smsgate",
            ),
            db_max_connections: config::parse_or("DB_MAX_CONNECTIONS", 5)?,
            queue: QueueSettings::from_env()?,
            hkt: HktSettings {
                base_url: config::parse_or(
                    "HKT_BASE_URL",
                    reqwest::Url::parse("http://127.0.0.1:5555/gateway/gateway.jsp")
                        .expect("the default gateway URL parses"),
                )?,
                application_id: config::string_or("HKT_APPLICATION_ID", "LabourDept"),
                sender_number: config::string_or("HKT_SENDER_NUMBER", "852520702793127"),
                timeout: config::parse_or("HKT_TIMEOUT_MS", 10_000u64)
                    .map(Duration::from_millis)?,
            },
            // 2/s is what the replaced panel sent to HKT; raise it to what the contract allows.
            hkt_rate_limit: config::hkt_rate_limit()?,
            prefetch: config::parse_or("DISPATCH_PREFETCH", 1000)?,
            concurrency: config::parse_or("DISPATCH_CONCURRENCY", 128)?,
            batch_size: config::parse_or("RESULT_BATCH_SIZE", 500)?,
            batch_max_wait: config::parse_or("RESULT_BATCH_MS", 50u64)
                .map(Duration::from_millis)?,
            metrics_bind: metrics_bind(config::var("METRICS_BIND").as_deref())?,
            metrics_token: MetricsToken::from_env()?,
            webhooks: WebhookSettings::from_env()?,
            opt_out_keywords: opt_out_keywords()?,
        };
        require_token_off_loopback(settings.metrics_bind, settings.metrics_token.as_ref())?;
        Ok(settings)
    }

    /// Settings for tests: the given database, broker, prefix and gateway.
    pub fn for_tests(
        database_url: &str,
        amqp_url: &str,
        queue_prefix: &str,
        gateway_url: &str,
    ) -> Settings {
        Settings {
            database_url: database_url.to_owned(),
            db_max_connections: 5,
            queue: QueueSettings::for_tests(amqp_url, queue_prefix),
            hkt: HktSettings {
                base_url: gateway_url.parse().expect("a valid gateway URL"),
                application_id: "LabourDept".to_owned(),
                sender_number: "852520702793127".to_owned(),
                timeout: Duration::from_secs(2),
            },
            hkt_rate_limit: None,
            prefetch: 200,
            concurrency: 32,
            batch_size: 200,
            batch_max_wait: Duration::from_millis(20),
            // A port of its own for every test dispatcher.
            metrics_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            metrics_token: None,
            webhooks: WebhookSettings::for_tests(),
            opt_out_keywords: Keywords::default(),
        }
    }
}

/// Loopback by default: the page is for a local scraper (or a pod's), not the network.
pub const DEFAULT_METRICS_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// `METRICS_BIND`: an address (`127.0.0.1:9464` when unset), or `off`.
fn metrics_bind(raw: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    match raw.map(str::trim) {
        None => Ok(Some(DEFAULT_METRICS_BIND)),
        Some(off) if off.eq_ignore_ascii_case("off") => Ok(None),
        Some(addr) => addr.parse().map(Some).map_err(|_| {
            ConfigError::new(
                "METRICS_BIND",
                format!("`{addr}` is not an address like 127.0.0.1:9464, nor `off`"),
            )
        }),
    }
}

/// Metrics served beyond this host are guarded: an open `/metrics` on every interface (as
/// compose and Kubernetes bind it) would show the backlog and traffic to anyone who can
/// reach the pod.
fn require_token_off_loopback(
    bind: Option<SocketAddr>,
    token: Option<&MetricsToken>,
) -> Result<(), ConfigError> {
    match (bind, token) {
        (Some(addr), None) if !addr.ip().is_loopback() => Err(ConfigError::new(
            MetricsToken::KEY,
            format!(
                "is required when METRICS_BIND ({addr}) is not a loopback address; set a random token of 16+ characters and give it to the scraper"
            ),
        )),
        _ => Ok(()),
    }
}

fn opt_out_keywords() -> Result<Keywords, ConfigError> {
    let opt_out = config::string_or("OPT_OUT_KEYWORDS", optout::DEFAULT_OPT_OUT);
    let opt_in = std::env::var("OPT_IN_KEYWORDS").unwrap_or_else(|_| optout::DEFAULT_OPT_IN.into());
    Keywords::parse(&opt_out, &opt_in).map_err(|e| {
        let key = match e {
            optout::KeywordError::Empty => "OPT_OUT_KEYWORDS",
            optout::KeywordError::Both(_) => "OPT_IN_KEYWORDS",
        };
        ConfigError::new(key, e.to_string())
    })
}

fn at_least_one(key: &'static str, default: usize) -> Result<usize, ConfigError> {
    let value: usize = config::parse_or(key, default)?;
    if value == 0 {
        return Err(ConfigError::new(key, "must be at least 1"));
    }
    Ok(value)
}

fn duration_at_least(
    key: &'static str,
    default: Duration,
    floor: Duration,
) -> Result<Duration, ConfigError> {
    let value = config::duration_or(key, default)?;
    if value < floor {
        return Err(ConfigError::new(key, format!("must be at least {floor:?}")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_beyond_loopback_require_a_token() {
        let open: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let err = require_token_off_loopback(Some(open), None).unwrap_err();
        assert_eq!(err.key, "METRICS_TOKEN");
        let token = MetricsToken::parse(&"t".repeat(32)).unwrap();
        assert!(require_token_off_loopback(Some(open), Some(&token)).is_ok());
        assert!(require_token_off_loopback(Some(DEFAULT_METRICS_BIND), None).is_ok());
        assert!(require_token_off_loopback(None, None).is_ok());
    }

    #[test]
    fn metrics_bind_defaults_to_loopback_and_can_be_turned_off() {
        assert_eq!(metrics_bind(None).unwrap(), Some(DEFAULT_METRICS_BIND));
        assert_eq!(metrics_bind(Some("off")).unwrap(), None);
        assert_eq!(metrics_bind(Some("OFF")).unwrap(), None);
        assert_eq!(
            metrics_bind(Some("0.0.0.0:9464")).unwrap(),
            Some(SocketAddr::from(([0, 0, 0, 0], 9464)))
        );
    }

    #[test]
    fn a_bad_metrics_bind_names_the_key() {
        for bad in ["9464", "localhost:9464", "127.0.0.1", "on"] {
            assert_eq!(
                metrics_bind(Some(bad)).unwrap_err().key,
                "METRICS_BIND",
                "{bad}"
            );
        }
    }

    #[test]
    fn under_a_rate_limit_prefetch_holds_about_half_a_second() {
        let mut settings = Settings::for_tests("postgres://x", "amqp://x", "p", "http://x");
        settings.prefetch = 1000;
        assert_eq!(settings.effective_prefetch(), 1000);
        settings.hkt_rate_limit = Some(2.0);
        assert_eq!(settings.effective_prefetch(), 2);
        settings.hkt_rate_limit = Some(50.0);
        assert_eq!(settings.effective_prefetch(), 25);
        settings.prefetch = 10;
        assert_eq!(settings.effective_prefetch(), 10);
    }
}
