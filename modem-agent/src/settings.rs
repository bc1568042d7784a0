//! The agent's settings: defaults, then `.env`, then environment variables; errors name
//! the key. `smsgate-modem-agent --help` prints the keys.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use smsgate_shared::config::{self, ConfigError, QueueSettings};
use smsgate_shared::domain::PhoneNumber;

use crate::inbound::Limits;

/// Everything one agent (one modem, one SIM) needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker (logged in as this SIM's own user) and the servers' queue prefix. The agent
    /// declares nothing, so the retry schedule and queue type are the servers' business.
    pub queue: QueueSettings,
    /// The SIM's id in the API (`GET /api/sim-cards`).
    pub sim_id: i64,
    pub sim_number: PhoneNumber,
    pub serial_device: String,
    pub baud: u32,
    pub pin: Option<SecretString>,
    pub heartbeat_interval: Duration,
    pub command_timeout: Duration,
    pub send_timeout: Duration,
    /// A modem quiet this long is probed with `AT`; no answer resets it.
    pub silence_timeout: Duration,
    /// Ask the network for delivery reports (`+CDS`).
    pub delivery_reports: bool,
    /// Received SMS and delivery reports that are on no SIM wait here for the broker.
    pub spool_dir: PathBuf,
    /// How long and how many parts of incomplete concatenated SMS are kept waiting for
    /// their siblings before what arrived is published with markers for what did not.
    pub incomplete_sms: Limits,
}

/// Printed by `--help`.
pub const HELP: &str = "\
smsgate-modem-agent: sends and receives SMS through one GSM modem for smsgate.

Configuration (environment or .env):
  SIM_ID                  the SIM's id in smsgate (required; see GET /api/sim-cards)
  SIM_NUMBER              the SIM's number, E.164 or 8-digit HK (required)
  SERIAL_DEVICE           modem AT port, e.g. /dev/serial/by-id/usb-...-if02-port0 (required)
  SERIAL_BAUD             default 115200
  SIM_PIN                 only if the SIM asks for one
  AMQP_URL                this SIM's own broker user: amqps://<prefix>.sim.<SIM_ID>:<password>@host/vhost
                          (the API shows the login when the SIM is registered)
  QUEUE_PREFIX            the servers' value
  HEARTBEAT_INTERVAL      default 30s
  AT_COMMAND_TIMEOUT      default 5s
  AT_SEND_TIMEOUT         default 60s
  MODEM_SILENCE_TIMEOUT   default 60s
  DELIVERY_REPORTS        default true
  SPOOL_DIR               default /var/lib/smsgate-modem-agent
  INCOMPLETE_SMS_MAX_AGE  default 24h: a concatenated SMS missing parts this long is
                          published as received, with a marker for each missing part
  INCOMPLETE_SMS_MAX_PARTS
                          default 16: most parts of incomplete SMS kept (on the SIM) at
                          once; past it the oldest incomplete SMS is published so. Keep it
                          below the SIM's message capacity
";

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        config::load_dotenv();
        let sim_id: i64 = config::var("SIM_ID")
            .ok_or_else(|| ConfigError::new("SIM_ID", "is required"))?
            .trim()
            .parse()
            .map_err(|e| ConfigError::new("SIM_ID", format!("not a number: {e}")))?;
        let sim_number = config::var("SIM_NUMBER")
            .ok_or_else(|| ConfigError::new("SIM_NUMBER", "is required"))
            .and_then(|raw| {
                PhoneNumber::parse(&raw).map_err(|e| ConfigError::new("SIM_NUMBER", e.to_string()))
            })?;
        let serial_device = config::var("SERIAL_DEVICE")
            .ok_or_else(|| ConfigError::new("SERIAL_DEVICE", "is required"))?;
        Ok(Settings {
            queue: QueueSettings::from_env()?,
            sim_id,
            sim_number,
            serial_device,
            baud: config::parse_or("SERIAL_BAUD", 115_200)?,
            pin: config::var("SIM_PIN").map(SecretString::from),
            heartbeat_interval: config::duration_or("HEARTBEAT_INTERVAL", Duration::from_secs(30))?,
            command_timeout: config::duration_or("AT_COMMAND_TIMEOUT", Duration::from_secs(5))?,
            send_timeout: config::duration_or("AT_SEND_TIMEOUT", Duration::from_secs(60))?,
            silence_timeout: config::duration_or("MODEM_SILENCE_TIMEOUT", Duration::from_secs(60))?,
            delivery_reports: config::bool_or("DELIVERY_REPORTS", true)?,
            spool_dir: PathBuf::from(config::string_or(
                "SPOOL_DIR",
                "/var/lib/smsgate-modem-agent",
            )),
            incomplete_sms: incomplete_sms_limits()?,
        })
    }

    /// Settings for tests: short timeouts, the given broker settings and spool directory.
    pub fn for_tests(
        queue: QueueSettings,
        sim_id: i64,
        sim_number: PhoneNumber,
        spool_dir: PathBuf,
    ) -> Settings {
        Settings {
            queue,
            sim_id,
            sim_number,
            serial_device: String::new(),
            baud: 115_200,
            pin: None,
            heartbeat_interval: Duration::from_secs(1),
            command_timeout: Duration::from_millis(700),
            send_timeout: Duration::from_secs(3),
            silence_timeout: Duration::from_secs(2),
            delivery_reports: true,
            spool_dir,
            incomplete_sms: Limits::default(),
        }
    }
}

fn incomplete_sms_limits() -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let max_parts: usize = config::parse_or("INCOMPLETE_SMS_MAX_PARTS", defaults.max_parts)?;
    if max_parts == 0 {
        return Err(ConfigError::new(
            "INCOMPLETE_SMS_MAX_PARTS",
            "must be at least 1 (a concatenated SMS arrives one part at a time)",
        ));
    }
    Ok(Limits {
        max_age: config::duration_or("INCOMPLETE_SMS_MAX_AGE", defaults.max_age)?,
        max_parts,
    })
}
