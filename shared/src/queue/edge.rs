//! Events of the edge gateway: what a modem agent tells the central side about its SIM.
//!
//! Agents publish them on the edge exchange; the dispatcher's ingest consumes them from
//! one durable queue and writes PostgreSQL. Like every payload they carry a `type` tag
//! naming a versioned variant; evolve by adding optional fields or variants.
//!
//! Routing keys: `sim-report.<sim>` for send results and delivery reports, `inbound.<sim>`
//! for received SMS and `heartbeat.<sim>` for heartbeats.
//!
//! **Trust.** A modem agent runs on a Raspberry Pi in somebody's office: the central side
//! treats what it says as claims. Each SIM's agent connects as its own broker user
//! ([`sim_broker_user`]) whose permissions ([`SimGrants`]) let it read its SIM's queue and
//! publish to the edge exchange under its own SIM's routing keys, nothing else; every event
//! carries the AMQP `user_id` property, which RabbitMQ checks against the connection's user.
//! The ingest then checks that the user is the SIM the event names, and that a send result
//! is for a pending recipient routed to that SIM.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::contract::Names;

/// Binding patterns of the ingest queue on the edge exchange. Before per-SIM broker users
/// the queue was bound with the same patterns on the events exchange; the topology removes
/// those bindings (see `declare_edge_ingest`).
pub const INGEST_BINDINGS: [&str; 3] = ["sim-report.*", "inbound.*", "heartbeat.*"];

/// The broker user a SIM's agent connects as: the name of its queue, so the two are read
/// together in the management UI. Carries the prefix: several deployments (and the tests)
/// share one broker.
pub fn sim_broker_user(names: &Names, sim_id: i64) -> String {
    names.sim_queue(sim_id)
}

/// The SIM a broker user name belongs to under `names`, `None` for any other user.
pub fn sim_of_broker_user(names: &Names, user: &str) -> Option<i64> {
    let id = user.strip_prefix(names.prefix())?.strip_prefix(".sim.")?;
    // `sim_queue` writes ids in plain decimal; anything else is another user.
    let sim_id: i64 = id.parse().ok()?;
    (sim_id.to_string() == id).then_some(sim_id)
}

/// What one SIM's broker user may do, as RabbitMQ permission regexes (a user's
/// configure/write/read permissions on the vhost, plus topic permissions on the edge
/// exchange). Least privilege: no configure at all (the agent only checks that its queue
/// and the edge exchange exist, with passive declares, which need no permission), write on
/// the edge exchange only and there only under its own SIM's keys, read on its own queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGrants {
    pub configure: String,
    pub write: String,
    pub read: String,
    /// The exchange the topic permissions below apply to.
    pub topic_exchange: String,
    pub topic_write: String,
    pub topic_read: String,
}

impl SimGrants {
    pub fn for_sim(names: &Names, sim_id: i64) -> SimGrants {
        SimGrants {
            configure: NOTHING.to_owned(),
            write: exactly(&names.edge_exchange()),
            read: exactly(&names.sim_queue(sim_id)),
            topic_exchange: names.edge_exchange(),
            topic_write: format!("^(sim-report|inbound|heartbeat)\\.{sim_id}$"),
            topic_read: NOTHING.to_owned(),
        }
    }
}

/// RabbitMQ reads an empty permission as "nothing" too, but says so less plainly.
const NOTHING: &str = "^$";

/// A regex matching exactly `name`. Prefixes are letters, digits, `-`, `_` and `.`
/// (`QueueSettings`), so escaping the dots is enough; anything else is escaped as well.
fn exactly(name: &str) -> String {
    let mut regex = String::from("^");
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() && c != '-' && c != '_' {
            regex.push('\\');
        }
        regex.push(c);
    }
    regex.push('$');
    regex
}

/// The durable queue the central side consumes every edge event from.
pub fn ingest_queue(names: &Names) -> String {
    format!("{}.edge-ingest", names.prefix())
}

/// How one SIM job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimSendOutcome {
    /// The modem answered `+CMGS`: the network accepted every part.
    Sent,
    /// A permanent error, or transient ones until the retry schedule ran out.
    Failed,
    /// A transient error (no network, congestion, a modem that hung): the central side
    /// schedules the next attempt through the retry queues, or fails the recipient once
    /// the schedule ran out. Agents may not publish to the retry queues themselves: those
    /// lead to every route, the paid HKT gateway included.
    Retry,
}

/// Network registration as `AT+CREG?` reports it (3GPP TS 27.007 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    NotRegistered,
    Home,
    Searching,
    Denied,
    Unknown,
    Roaming,
}

impl Registration {
    /// Maps the `<stat>` of `+CREG: <n>,<stat>`; codes beyond 5 (SMS-only, emergency) are
    /// reported as `Unknown` rather than guessed.
    pub fn from_creg_stat(stat: u8) -> Registration {
        match stat {
            0 => Registration::NotRegistered,
            1 => Registration::Home,
            2 => Registration::Searching,
            3 => Registration::Denied,
            5 => Registration::Roaming,
            _ => Registration::Unknown,
        }
    }

    /// True when the SIM can send: registered at home or roaming.
    pub fn is_registered(&self) -> bool {
        matches!(self, Registration::Home | Registration::Roaming)
    }

    /// The snake_case spelling used in JSON and the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            Registration::NotRegistered => "not_registered",
            Registration::Home => "home",
            Registration::Searching => "searching",
            Registration::Denied => "denied",
            Registration::Unknown => "unknown",
            Registration::Roaming => "roaming",
        }
    }
}

/// Something a modem agent reports about its SIM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EdgeEvent {
    /// The result of one SIM job. `references` are the TP-MRs the modem gave each part (in
    /// part order); delivery reports name them. `attempts` counts this attempt.
    SimSendResultV1 {
        sim_id: i64,
        recipient_id: i64,
        message_id: i64,
        outcome: SimSendOutcome,
        #[serde(default)]
        references: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        attempts: u32,
        at: DateTime<Utc>,
    },
    /// A `+CDS` status report for one part. `delivered` is true for TP-ST 0x00..=0x1F
    /// (3GPP TS 23.040 §9.2.3.15: completed transactions).
    DeliveryReportV1 {
        sim_id: i64,
        reference: u8,
        recipient: String,
        delivered: bool,
        status: u8,
        at: DateTime<Utc>,
    },
    /// A received SMS, concatenated parts already joined. `key` is derived from what the
    /// network sent, so the same SMS published twice (agent restarted before deleting it
    /// from the SIM) has the same key and is stored once.
    InboundSmsV1 {
        sim_id: i64,
        key: String,
        /// Originating address: E.164 when the network gave an international number, else
        /// as sent (national digits or an alphanumeric sender name).
        sender: String,
        text: String,
        parts: u16,
        /// The service centre time stamp of the (first) part.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
        received_at: DateTime<Utc>,
    },
    /// The modem's state, every heartbeat interval. `signal` is `+CSQ`'s rssi 0..=31, or
    /// `None` when the modem does not know (99).
    HeartbeatV1 {
        sim_id: i64,
        /// The number the agent was configured with, so the central side can spot an agent
        /// started with another SIM's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<u8>,
        registration: Registration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator: Option<String>,
        at: DateTime<Utc>,
    },
}

impl EdgeEvent {
    /// The SIM the event is about.
    pub fn sim_id(&self) -> i64 {
        match self {
            EdgeEvent::SimSendResultV1 { sim_id, .. }
            | EdgeEvent::DeliveryReportV1 { sim_id, .. }
            | EdgeEvent::InboundSmsV1 { sim_id, .. }
            | EdgeEvent::HeartbeatV1 { sim_id, .. } => *sim_id,
        }
    }

    /// Its routing key on the events exchange; see the module doc.
    pub fn routing_key(&self) -> String {
        let sim = self.sim_id();
        match self {
            EdgeEvent::SimSendResultV1 { .. } | EdgeEvent::DeliveryReportV1 { .. } => {
                format!("sim-report.{sim}")
            }
            EdgeEvent::InboundSmsV1 { .. } => format!("inbound.{sim}"),
            EdgeEvent::HeartbeatV1 { .. } => format!("heartbeat.{sim}"),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an EdgeEvent always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<EdgeEvent, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_events_have_versioned_tags_and_round_trip() {
        let event = EdgeEvent::SimSendResultV1 {
            sim_id: 3,
            recipient_id: 9,
            message_id: 4,
            outcome: SimSendOutcome::Sent,
            references: vec![17, 18],
            error: None,
            attempts: 1,
            at: Utc::now(),
        };
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(json["type"], "SimSendResultV1");
        assert_eq!(json["outcome"], "sent");
        assert_eq!(EdgeEvent::from_json(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn routing_keys_match_the_ingest_bindings_but_not_status_events() {
        let heartbeat = EdgeEvent::HeartbeatV1 {
            sim_id: 7,
            number: None,
            signal: Some(20),
            registration: Registration::Home,
            operator: None,
            at: Utc::now(),
        };
        assert_eq!(heartbeat.routing_key(), "heartbeat.7");
        let report = EdgeEvent::DeliveryReportV1 {
            sim_id: 7,
            reference: 1,
            recipient: "+85212345678".into(),
            delivered: true,
            status: 0,
            at: Utc::now(),
        };
        assert_eq!(report.routing_key(), "sim-report.7");
        assert!(!report.routing_key().starts_with("status."));
        assert_eq!(ingest_queue(&Names::new("t1")), "t1.edge-ingest");
    }

    #[test]
    fn sim_broker_users_name_their_sim_and_nothing_else() {
        let names = Names::new("sg.prod");
        assert_eq!(sim_broker_user(&names, 12), "sg.prod.sim.12");
        assert_eq!(sim_of_broker_user(&names, "sg.prod.sim.12"), Some(12));
        for other in [
            "guest",
            "sg.prod.sim.",
            "sg.prod.sim.012",
            "sg.prod.sim.1x",
            "sg.other.sim.1",
            "sg.prodx.sim.1",
        ] {
            assert_eq!(sim_of_broker_user(&names, other), None, "{other}");
        }
    }

    #[test]
    fn sim_grants_are_anchored_regexes_for_one_sim() {
        let grants = SimGrants::for_sim(&Names::new("sg.prod"), 12);
        assert_eq!(grants.configure, "^$");
        assert_eq!(grants.write, r"^sg\.prod\.edge$");
        assert_eq!(grants.read, r"^sg\.prod\.sim\.12$");
        assert_eq!(grants.topic_exchange, "sg.prod.edge");
        assert_eq!(grants.topic_write, r"^(sim-report|inbound|heartbeat)\.12$");
        assert_eq!(grants.topic_read, "^$");
    }

    #[test]
    fn creg_stat_codes_map_to_registration() {
        assert_eq!(Registration::from_creg_stat(1), Registration::Home);
        assert_eq!(Registration::from_creg_stat(5), Registration::Roaming);
        assert_eq!(Registration::from_creg_stat(9), Registration::Unknown);
        assert!(Registration::Roaming.is_registered());
        assert!(!Registration::Searching.is_registered());
    }
}
