//! Events of the edge gateway: what a modem agent tells the central side about its SIM.
//!
//! Agents publish them on the events exchange; the dispatcher's ingest consumes them from
//! one durable queue and writes PostgreSQL. Like every payload they carry a `type` tag
//! naming a versioned variant; evolve by adding optional fields or variants.
//!
//! Routing keys: `sim-report.<sim>` for send results and delivery reports, `inbound.<sim>`
//! for received SMS and `heartbeat.<sim>` for heartbeats. Send results deliberately do not
//! use `status.*`: that pattern carries [`super::StatusEvent`]s, which the ingest publishes
//! once a result is committed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::contract::Names;

/// Binding patterns of the ingest queue on the events exchange.
pub const INGEST_BINDINGS: [&str; 3] = ["sim-report.*", "inbound.*", "heartbeat.*"];

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
    /// part order); delivery reports name them.
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
    fn creg_stat_codes_map_to_registration() {
        assert_eq!(Registration::from_creg_stat(1), Registration::Home);
        assert_eq!(Registration::from_creg_stat(5), Registration::Roaming);
        assert_eq!(Registration::from_creg_stat(9), Registration::Unknown);
        assert!(Registration::Roaming.is_registered());
        assert!(!Registration::Searching.is_registered());
    }
}
