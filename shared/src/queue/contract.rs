//! Exchange, queue and routing-key names. Every name carries the configured prefix.

use std::time::Duration;

/// Routing keys on the outbound exchange.
pub mod routing {
    /// Jobs for the HKT HTTP gateway.
    pub const HKT: &str = "hkt";

    /// Jobs for one SIM card's modem agent.
    pub fn sim(sim_id: i64) -> String {
        format!("sim.{sim_id}")
    }

    /// Status events of one message on the events exchange.
    pub fn status(message_id: i64) -> String {
        format!("status.{message_id}")
    }

    /// Binding pattern for every status event.
    pub const ALL_STATUS: &str = "status.*";
}

/// The names of one topology, derived from a prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Direct exchange every send job is published to (`hkt`, `sim.<id>`).
    pub fn outbound_exchange(&self) -> String {
        format!("{}.outbound", self.prefix)
    }

    /// Topic exchange for `status.*` events, published by the dispatchers only.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Topic exchange the modem agents publish their events to (`sim-report.<id>`,
    /// `inbound.<id>`, `heartbeat.<id>`). Separate from the events exchange so that the
    /// broker can let an agent write here, under its own SIM's keys only, and nowhere else.
    pub fn edge_exchange(&self) -> String {
        format!("{}.edge", self.prefix)
    }

    /// The queue the dispatchers consume, bound to `hkt`.
    pub fn hkt_queue(&self) -> String {
        format!("{}.hkt", self.prefix)
    }

    /// One SIM card's queue, bound to `sim.<id>`.
    pub fn sim_queue(&self, sim_id: i64) -> String {
        format!("{}.sim.{sim_id}", self.prefix)
    }

    /// The retry queue (and fanout exchange of the same name) for one delay: its messages
    /// wait out `delay` as the queue's TTL, then dead-letter back to the outbound exchange
    /// under their original routing key, so one set of retry queues serves every route.
    ///
    /// Named by the delay, not by the step's position (`<prefix>.retry.30s`, not
    /// `.retry.1`): a queue's TTL cannot change in place, so a new `RETRY_SCHEDULE` must
    /// declare new queues rather than redeclare old ones with other arguments. Queues of
    /// an old schedule keep their TTL and dead-letter target, so what waits in them still
    /// comes back; they are left empty behind (docs/operations.md, "Retry queues").
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, delay_label(delay))
    }

    /// Jobs that exhausted the retry schedule, kept for inspection and manual retry.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

/// A delay as the shortest exact spelling `RETRY_SCHEDULE` accepts (`90s`, `2m`, `1500ms`),
/// so one delay always gives one name, however the operator wrote it (`120s` or `2m`).
fn delay_label(delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms > 0 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms > 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_prefix() {
        let n = Names::new("t42");
        for name in [
            n.outbound_exchange(),
            n.events_exchange(),
            n.hkt_queue(),
            n.sim_queue(7),
            n.retry_queue(Duration::from_secs(5)),
            n.dead_queue(),
        ] {
            assert!(name.starts_with("t42."), "{name}");
        }
        assert_eq!(routing::sim(7), "sim.7");
    }

    #[test]
    fn retry_queues_are_named_by_their_delay() {
        let n = Names::new("p");
        let name = |ms| n.retry_queue(Duration::from_millis(ms));
        assert_eq!(name(300), "p.retry.300ms");
        assert_eq!(name(1_500), "p.retry.1500ms");
        assert_eq!(name(5_000), "p.retry.5s");
        assert_eq!(name(90_000), "p.retry.90s");
        assert_eq!(name(120_000), "p.retry.2m");
        assert_eq!(name(7_200_000), "p.retry.2h");
        // However the schedule spelled it, a delay names one queue.
        let spelled = |raw| n.retry_queue(crate::config::parse_duration(raw).unwrap());
        assert_eq!(spelled("120s"), spelled("2m"));
        assert_ne!(spelled("30s"), spelled("5s"));
    }
}
