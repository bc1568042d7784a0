//! What the releaser counts.

use smsgate_shared::domain::Priority;
use smsgate_shared::metrics::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, MetricsRegistry};

use super::pool_repo::SimState;
use super::repo::Waiting;

/// The priority classes, in the order of the per-class arrays below.
const PRIORITIES: [&str; 3] = ["high", "normal", "low"];

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
    // Set by the releaser only (every 20 s for the backlog, every second for the SIMs): in a
    // process that is not the releaser they stay at 0 / absent, so dashboards take `max`.
    backlog: [IntGauge; 3],
    oldest_waiting: [IntGauge; 3],
    sims_online: IntGaugeVec,
    sim_signal: IntGaugeVec,
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
            backlog: registry.gauges(
                "smsgate_backlog_recipients",
                "Recipients waiting to be sent (scheduled included), by priority. Set by the releaser; 0 elsewhere.",
                "priority",
                PRIORITIES,
            ),
            oldest_waiting: registry.gauges(
                "smsgate_backlog_oldest_seconds",
                "Age of the oldest due message with recipients waiting, by priority (0: none). Set by the releaser; 0 elsewhere.",
                "priority",
                PRIORITIES,
            ),
            sims_online: registry.gauge_vec(
                "smsgate_sim_online",
                "1 when an active SIM's agent sent a heartbeat within SIM_OFFLINE_AFTER_SECS, else 0; by SIM id (inactive SIMs are absent). Set by the releaser.",
                &["sim"],
            ),
            sim_signal: registry.gauge_vec(
                "smsgate_sim_signal_rssi",
                "An active SIM's last +CSQ signal, rssi 0..=31 (about -113 to -51 dBm); absent until its agent reports one. Set by the releaser.",
                &["sim"],
            ),
        }
    }

    /// The backlog gauges from one sample of [`super::repo::waiting`].
    pub(crate) fn backlog(&self, waiting: &[Waiting]) {
        for w in waiting {
            if let Some(i) = PRIORITIES.iter().position(|p| *p == w.priority) {
                self.backlog[i].set(w.recipients);
                self.oldest_waiting[i].set(w.oldest_secs as i64);
            }
        }
    }

    /// Clears what only the releaser knows, when this process stops being it: the new
    /// releaser's figures are the current ones.
    pub(crate) fn stood_down(&self) {
        self.leading.set(0);
        for gauge in self.backlog.iter().chain(&self.oldest_waiting) {
            gauge.set(0);
        }
        self.sims_online.reset();
        self.sim_signal.reset();
    }

    /// The SIM gauges from the releaser's look at every SIM. Rebuilt whole each time, so a
    /// SIM that is deleted or made inactive disappears rather than alerting as offline.
    pub(crate) fn sims(&self, states: &[SimState]) {
        self.sims_online.reset();
        self.sim_signal.reset();
        for sim in states.iter().filter(|s| s.active) {
            let id = sim.id.to_string();
            self.sims_online
                .with_label_values(&[&id])
                .set(i64::from(sim.online));
            if let Some(rssi) = sim.signal {
                self.sim_signal
                    .with_label_values(&[&id])
                    .set(i64::from(rssi));
            }
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
