//! Exchange, queue and routing-key names. Every name carries the configured prefix.

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

    /// Retry step `step` (0-based): a fanout exchange and a queue of the same name whose
    /// messages wait out the step's TTL, then dead-letter back to the outbound exchange
    /// under their original routing key, so one set of retry queues serves every route.
    pub fn retry(&self, step: usize) -> String {
        format!("{}.retry.{step}", self.prefix)
    }

    /// Jobs that exhausted the retry schedule, kept for inspection and manual retry.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
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
            n.retry(0),
            n.dead_queue(),
        ] {
            assert!(name.starts_with("t42."), "{name}");
        }
        assert_eq!(routing::sim(7), "sim.7");
    }
}
