//! What the releaser counts.

use smsgate_shared::domain::Priority;
use smsgate_shared::metrics::{IntCounter, IntCounterVec, IntGauge, MetricsRegistry};

/// The release queue's metrics. Cheap to clone.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// Jobs the broker confirmed.
    pub jobs_confirmed: IntCounter,
    /// Jobs whose publish failed; their recipients are released again.
    pub jobs_failed: IntCounter,
    released: [IntCounter; 3],
    /// Recipients expired before release.
    pub expired: IntCounter,
    /// Scheduled messages whose time came.
    pub scheduled_released: IntCounter,
    /// 1 while this process is the releaser.
    pub leading: IntGauge,
    /// Jobs placed on each SIM.
    sim_released: IntCounterVec,
    /// Recipients taken back from the queue of an unavailable SIM into the release queue.
    pub sim_jobs_requeued: IntCounter,
    /// Recipients of SIM messages moved to HKT (`fallback: hkt`, no SIM available).
    pub sim_jobs_to_hkt: IntCounter,
}

impl OutboxMetrics {
    /// Registers the release queue's metrics in `registry`.
    pub fn register(registry: &MetricsRegistry) -> OutboxMetrics {
        let [jobs_confirmed, jobs_failed] = registry.counters(
            "smsgate_outbox_jobs_total",
            "Send jobs the releaser published, by outcome: confirmed by the broker, or failed (released again later).",
            "outcome",
            ["confirmed", "failed"],
        );
        let [sim_jobs_requeued, sim_jobs_to_hkt] = registry.counters(
            "smsgate_sim_jobs_moved_total",
            "SIM work moved away from SIMs that went offline or inactive: back to the release queue (other SIMs, or the same one later), or to HKT.",
            "to",
            ["release_queue", "hkt"],
        );
        OutboxMetrics {
            sim_released: registry.counter_vec(
                "smsgate_sim_jobs_released_total",
                "Jobs the releaser placed on each SIM card (counted against its caps).",
                &["sim"],
            ),
            sim_jobs_requeued,
            sim_jobs_to_hkt,
            jobs_confirmed,
            jobs_failed,
            released: registry.counters(
                "smsgate_released_jobs_total",
                "Jobs released to the broker, by priority.",
                "priority",
                ["high", "normal", "low"],
            ),
            expired: registry.counter(
                "smsgate_recipients_expired_before_release_total",
                "Recipients whose validity ran out before they were released to a gateway queue.",
            ),
            scheduled_released: registry.counter(
                "smsgate_scheduled_messages_released_total",
                "Scheduled messages whose send_at came and which were released.",
            ),
            leading: registry.gauge(
                "smsgate_releaser_leading",
                "1 while this process is the releaser of its database.",
            ),
        }
    }

    pub fn released(&self, priority: Priority, jobs: u64) {
        let i = match priority {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        };
        self.released[i].inc_by(jobs);
    }

    pub fn sim_released(&self, sim_id: i64) {
        self.sim_released
            .with_label_values(&[&sim_id.to_string()])
            .inc();
    }
}
