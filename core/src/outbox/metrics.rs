//! What the outbox counts: its publishes, confirmed or not, and the reconciler's work.

use smsgate_shared::metrics::{IntCounter, MetricsRegistry};

/// The outbox's counters. Cheap to clone.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// Jobs the broker confirmed.
    pub jobs_confirmed: IntCounter,
    /// Jobs whose publish failed; their messages are left to the reconciler.
    pub jobs_failed: IntCounter,
    /// Messages the reconciler took over and published.
    pub reconciled_messages: IntCounter,
}

impl OutboxMetrics {
    /// Registers the outbox's counters in `registry`.
    pub fn register(registry: &MetricsRegistry) -> OutboxMetrics {
        let [jobs_confirmed, jobs_failed] = registry.counters(
            "smsgate_outbox_jobs_total",
            "Send jobs the outbox published, by outcome: confirmed by the broker, or failed (left to the reconciler).",
            "outcome",
            ["confirmed", "failed"],
        );
        OutboxMetrics {
            jobs_confirmed,
            jobs_failed,
            reconciled_messages: registry.counter(
                "smsgate_outbox_reconciled_messages_total",
                "Messages whose jobs the reconciler published after their publisher failed or died.",
            ),
        }
    }
}
