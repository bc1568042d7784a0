//! What the send path counts: `smsgate_messages_accepted_total` and
//! `smsgate_recipients_accepted_total`, by route and entry point.

use smsgate_shared::metrics::{IntCounter, IntCounterVec, MetricsRegistry};

/// Where an accepted send goes out.
#[derive(Debug, Clone, Copy)]
pub enum SendRoute {
    Hkt,
    Sim,
}

/// Which entry point accepted a send.
#[derive(Debug, Clone, Copy)]
pub enum SendKind {
    /// `POST /api/sms`.
    Single,
    /// `POST /api/sms/send-bulk`.
    Bulk,
    /// The web panel's compose form.
    Panel,
}

/// The accepted-send counters of one process. Cheap to clone.
#[derive(Clone)]
pub struct SendMetrics {
    /// Indexed `[route][kind]`, resolved at start so a send costs two atomic adds.
    messages: [[IntCounter; 3]; 2],
    recipients: [[IntCounter; 3]; 2],
}

impl SendMetrics {
    /// Registers both counters in `registry`.
    pub fn register(registry: &MetricsRegistry) -> SendMetrics {
        let messages = registry.counter_vec(
            "smsgate_messages_accepted_total",
            "Messages stored and answered 202, by route (hkt, sim) and entry point (single, bulk, panel).",
            &["route", "kind"],
        );
        let recipients = registry.counter_vec(
            "smsgate_recipients_accepted_total",
            "Recipients of the accepted messages, by route and entry point.",
            &["route", "kind"],
        );
        let by_route_and_kind = |vec: &IntCounterVec| {
            ["hkt", "sim"].map(|route| {
                ["single", "bulk", "panel"].map(|kind| vec.with_label_values(&[route, kind]))
            })
        };
        SendMetrics {
            messages: by_route_and_kind(&messages),
            recipients: by_route_and_kind(&recipients),
        }
    }

    /// Counts one accepted message of `recipients` recipients.
    pub fn accepted(&self, route: SendRoute, kind: SendKind, recipients: usize) {
        self.messages[route as usize][kind as usize].inc();
        self.recipients[route as usize][kind as usize].inc_by(recipients as u64);
    }
}
