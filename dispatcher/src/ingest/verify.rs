//! Who may say what: an edge event is a claim by a Raspberry Pi that may have been stolen.
//!
//! The broker has already checked two things: the publisher could only write to the edge
//! exchange under its own SIM's routing keys (topic permissions), and the `user_id`
//! property names the connection's user (RabbitMQ refuses a message whose `user_id` is
//! someone else). Here the ingest checks the rest: the user is the broker user of the SIM
//! the event names, and a send result is for a recipient routed to that SIM and still
//! pending (the second half in [`super::handle`], under the recipient's lock). A refused
//! event changes nothing, is counted in `smsgate_edge_events_rejected_total{reason}` and
//! written to the audit log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use smsgate_shared::queue::edge::{sim_of_broker_user, EdgeEvent};
use smsgate_shared::queue::Names;
use sqlx::PgPool;
use tracing::warn;

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No `user_id` property: not published by an agent with its own broker user.
    NoPublisher,
    /// The publisher is no SIM's broker user (a server, `guest`), or another SIM's.
    WrongPublisher { user: String },
    /// A send result for a recipient that is not (or no longer) this SIM's to report.
    NotRoutedHere { recipient_id: i64 },
    /// A send result for a recipient that is no longer pending (already reported, or
    /// cancelled, expired, moved).
    NotPending { recipient_id: i64 },
}

impl Rejection {
    /// The metric label and audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NoPublisher => "no_publisher",
            Rejection::WrongPublisher { .. } => "wrong_publisher",
            Rejection::NotRoutedHere { .. } => "not_routed_here",
            Rejection::NotPending { .. } => "not_pending",
        }
    }

    pub const REASONS: [&'static str; 4] = [
        "no_publisher",
        "wrong_publisher",
        "not_routed_here",
        "not_pending",
    ];

    pub fn index(&self) -> usize {
        match self {
            Rejection::NoPublisher => 0,
            Rejection::WrongPublisher { .. } => 1,
            Rejection::NotRoutedHere { .. } => 2,
            Rejection::NotPending { .. } => 3,
        }
    }
}

/// Checks that `user_id` (the AMQP property, validated by the broker) is the broker user
/// of the SIM the event is about.
pub fn check_publisher(
    names: &Names,
    user_id: Option<&str>,
    event: &EdgeEvent,
) -> Result<(), Rejection> {
    let Some(user) = user_id.filter(|u| !u.is_empty()) else {
        return Err(Rejection::NoPublisher);
    };
    match sim_of_broker_user(names, user) {
        Some(sim) if sim == event.sim_id() => Ok(()),
        _ => Err(Rejection::WrongPublisher {
            user: user.to_owned(),
        }),
    }
}

/// At most one audit entry per publisher and reason per this long: a hostile Pi may
/// publish thousands of bad events a second, and the audit log is for people. The metric
/// counts every one.
const AUDIT_EVERY: Duration = Duration::from_secs(60);

/// Remembers when each (publisher, reason) was last written to the audit log.
#[derive(Default)]
pub struct AuditThrottle {
    last: HashMap<(String, &'static str), (Instant, u64)>,
}

impl AuditThrottle {
    /// Whether to write an entry now, and how many were suppressed since the last one.
    fn admit(&mut self, publisher: &str, reason: &'static str) -> Option<u64> {
        let now = Instant::now();
        if self.last.len() > 10_000 {
            self.last
                .retain(|_, (at, _)| now.duration_since(*at) < AUDIT_EVERY);
        }
        match self.last.get_mut(&(publisher.to_owned(), reason)) {
            Some((at, suppressed)) if now.duration_since(*at) < AUDIT_EVERY => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let before = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(before)
            }
            None => {
                self.last.insert((publisher.to_owned(), reason), (now, 0));
                Some(0)
            }
        }
    }

    /// Writes the refusal to the audit log (throttled). A failure to write is logged, not
    /// retried: the event changed nothing, and the metric has counted it.
    pub async fn record(
        &mut self,
        db: &PgPool,
        publisher: Option<&str>,
        event: &EdgeEvent,
        rejection: &Rejection,
    ) {
        let publisher_name = publisher.unwrap_or("");
        warn!(
            publisher = publisher_name,
            sim.id = event.sim_id(),
            reason = rejection.reason(),
            "edge event refused"
        );
        let Some(suppressed) = self.admit(publisher_name, rejection.reason()) else {
            return;
        };
        let details = json!({
            "reason": rejection.reason(),
            "publisher": publisher,
            "claimed_sim": event.sim_id(),
            "event": event_type(event),
            "recipient_id": match rejection {
                Rejection::NotRoutedHere { recipient_id } | Rejection::NotPending { recipient_id } => Some(*recipient_id),
                _ => None,
            },
            "similar_refusals_not_logged": suppressed,
        });
        let target = format!("sim:{}", event.sim_id());
        if let Err(e) = super::repo::audit_rejection(db, &target, details).await {
            warn!(error = %e, "could not write a refused edge event to the audit log");
        }
    }
}

fn event_type(event: &EdgeEvent) -> &'static str {
    match event {
        EdgeEvent::SimSendResultV1 { .. } => "SimSendResultV1",
        EdgeEvent::DeliveryReportV1 { .. } => "DeliveryReportV1",
        EdgeEvent::InboundSmsV1 { .. } => "InboundSmsV1",
        EdgeEvent::HeartbeatV1 { .. } => "HeartbeatV1",
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use smsgate_shared::queue::edge::Registration;

    use super::*;

    fn heartbeat(sim_id: i64) -> EdgeEvent {
        EdgeEvent::HeartbeatV1 {
            sim_id,
            number: None,
            signal: None,
            registration: Registration::Home,
            operator: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn only_the_sims_own_broker_user_may_speak_for_it() {
        let names = Names::new("p");
        assert_eq!(
            check_publisher(&names, Some("p.sim.4"), &heartbeat(4)),
            Ok(())
        );
        assert_eq!(
            check_publisher(&names, None, &heartbeat(4)),
            Err(Rejection::NoPublisher)
        );
        for user in ["p.sim.5", "guest", "q.sim.4", "p.sim.04"] {
            assert_eq!(
                check_publisher(&names, Some(user), &heartbeat(4)),
                Err(Rejection::WrongPublisher { user: user.into() }),
                "{user}"
            );
        }
    }

    #[test]
    fn audit_entries_are_throttled_per_publisher_and_reason() {
        let mut throttle = AuditThrottle::default();
        assert_eq!(throttle.admit("p.sim.1", "wrong_publisher"), Some(0));
        assert_eq!(throttle.admit("p.sim.1", "wrong_publisher"), None);
        assert_eq!(throttle.admit("p.sim.1", "wrong_publisher"), None);
        assert_eq!(throttle.admit("p.sim.1", "not_pending"), Some(0));
        assert_eq!(throttle.admit("p.sim.2", "wrong_publisher"), Some(0));
    }
}
