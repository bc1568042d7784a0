//! Estimates: when a message will be done, and the queue's status.
//!
//! The model follows the releaser's (docs/architecture.md, "Traffic control"): a priority
//! class gets the gateway's rate in proportion to its weight among the classes with work
//! (high 64, normal 8, low 1), and a user gets the class's rate in proportion to their
//! share weight among its users with work. A message is done when its user's recipients in
//! its class up to and including it are sent at that rate. It assumes today's competition
//! lasts, so it errs late: when others finish, the share grows. Only HKT has a known rate;
//! a message routed through a SIM gets no ETA.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use smsgate_shared::domain::Priority;
use sqlx::PgPool;

use super::repo::{self, WaitingGroup};
use crate::settings::CoreSettings;
use crate::sms::repo::MessageRow;

fn class_weight(priority: Priority) -> f64 {
    match priority {
        Priority::High => 64.0,
        Priority::Normal => 8.0,
        Priority::Low => 1.0,
    }
}

/// The rate (recipients a second) that `user_id`'s work in `priority` gets out of `rate`,
/// competing with `groups` (the user counts as having work).
fn user_rate(groups: &[WaitingGroup], priority: Priority, user_id: i64, rate: f64) -> f64 {
    let weight = groups
        .iter()
        .find(|g| g.user_id == user_id)
        .map_or(1, |g| g.weight);
    let busy = |g: &&WaitingGroup| g.recipients > 0;
    let mut classes: HashSet<Priority> = groups.iter().filter(busy).map(|g| g.priority).collect();
    classes.insert(priority);
    let class_share =
        class_weight(priority) / classes.iter().map(|p| class_weight(*p)).sum::<f64>();
    let others: i64 = groups
        .iter()
        .filter(busy)
        .filter(|g| g.priority == priority && g.user_id != user_id)
        .map(|g| i64::from(g.weight.max(1)))
        .sum();
    let own = i64::from(weight.max(1));
    rate * class_share * own as f64 / (own + others) as f64
}

/// When `recipients` will be through at `rate` a second, starting at `start`.
fn finish_at(start: DateTime<Utc>, recipients: i64, rate: f64) -> Option<DateTime<Utc>> {
    if rate <= 0.0 || !rate.is_finite() {
        return None;
    }
    let millis = (recipients.max(0) as f64 / rate * 1000.0).ceil() as i64;
    Some(start + Duration::milliseconds(millis))
}

/// The gateway's configured limit and what it did over the last full minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateFigures {
    /// HKT_RATE_LIMIT; `None`: unlimited.
    pub configured: Option<f64>,
    pub measured: f64,
}

impl RateFigures {
    /// The rate estimates use: the limit, or what was measured when there is none.
    fn for_estimates(&self) -> f64 {
        self.configured.unwrap_or(self.measured)
    }
}

async fn rates(db: &PgPool, settings: &CoreSettings) -> Result<RateFigures, sqlx::Error> {
    Ok(RateFigures {
        configured: settings.release.hkt_rate_limit,
        measured: repo::measured_rate(db).await?,
    })
}

/// When the message is estimated to be done; `None` once it is final, for a SIM route, or
/// when no rate is known.
pub async fn message_eta(
    db: &PgPool,
    settings: &CoreSettings,
    message: &MessageRow,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    if message.status.is_final() || message.route != "hkt" {
        return Ok(None);
    }
    let rate = rates(db, settings).await?.for_estimates();
    let groups = repo::waiting_groups(db).await?;
    let share = user_rate(&groups, message.priority, message.user_id, rate);
    let now = Utc::now();
    let (start, ahead) = match message.send_at {
        Some(at) if at > now => (at, message.tally().pending()),
        _ => (
            now,
            repo::waiting_through(db, message.user_id, message.priority, message.id).await?,
        ),
    };
    Ok(finish_at(start, ahead, share))
}

/// Recipients waiting, per priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub high: i64,
    pub normal: i64,
    pub low: i64,
}

impl Backlog {
    fn of(groups: &[WaitingGroup], user: Option<i64>) -> Backlog {
        let mut backlog = Backlog::default();
        for g in groups
            .iter()
            .filter(|g| user.is_none_or(|u| g.user_id == u))
        {
            match g.priority {
                Priority::High => backlog.high += g.recipients,
                Priority::Normal => backlog.normal += g.recipients,
                Priority::Low => backlog.low += g.recipients,
            }
        }
        backlog
    }

    pub fn total(&self) -> i64 {
        self.high + self.normal + self.low
    }
}

/// `GET /api/queue/status`.
#[derive(Debug, Clone)]
pub struct QueueStatus {
    pub rates: RateFigures,
    pub pending_messages: i64,
    pub sending_messages: i64,
    pub scheduled_messages: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Recipients waiting for the HKT gateway, by priority (scheduled ones not counted).
    pub backlog: Backlog,
    /// The caller's own.
    pub own_backlog: Backlog,
    /// When the caller's waiting recipients are estimated to be through.
    pub own_eta: Option<DateTime<Utc>>,
}

pub async fn queue_status(
    db: &PgPool,
    settings: &CoreSettings,
    user_id: i64,
) -> Result<QueueStatus, sqlx::Error> {
    let rates = rates(db, settings).await?;
    let groups = repo::waiting_groups(db).await?;
    let counts = repo::queue_counts(db).await?;
    let own_backlog = Backlog::of(&groups, Some(user_id));
    // The caller's work is through when its slowest class is.
    let now = Utc::now();
    let own_eta = [
        (Priority::High, own_backlog.high),
        (Priority::Normal, own_backlog.normal),
        (Priority::Low, own_backlog.low),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .filter_map(|(p, n)| {
        finish_at(
            now,
            n,
            user_rate(&groups, p, user_id, rates.for_estimates()),
        )
    })
    .max();
    Ok(QueueStatus {
        rates,
        pending_messages: counts.pending_messages,
        sending_messages: counts.sending_messages,
        scheduled_messages: counts.scheduled_messages,
        oldest_pending_at: counts.oldest_pending_at,
        backlog: Backlog::of(&groups, None),
        own_backlog,
        own_eta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(priority: Priority, user_id: i64, weight: i32, recipients: i64) -> WaitingGroup {
        WaitingGroup {
            priority,
            user_id,
            weight,
            recipients,
        }
    }

    #[test]
    fn alone_a_user_gets_the_whole_rate() {
        let groups = [group(Priority::Normal, 1, 1, 100)];
        assert_eq!(user_rate(&groups, Priority::Normal, 1, 50.0), 50.0);
    }

    #[test]
    fn users_of_a_class_split_it_by_weight_and_classes_by_theirs() {
        let groups = [
            group(Priority::Normal, 1, 1, 100),
            group(Priority::Normal, 2, 3, 100),
            group(Priority::High, 3, 1, 5),
        ];
        let normal = 50.0 * 8.0 / 72.0;
        assert!((user_rate(&groups, Priority::Normal, 1, 50.0) - normal / 4.0).abs() < 1e-9);
        assert!((user_rate(&groups, Priority::Normal, 2, 50.0) - normal * 0.75).abs() < 1e-9);
        assert!((user_rate(&groups, Priority::High, 3, 50.0) - 50.0 * 64.0 / 72.0).abs() < 1e-9);
    }

    #[test]
    fn a_finish_time_needs_a_rate() {
        let start: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        assert_eq!(
            finish_at(start, 100, 50.0),
            Some("2026-12-06T10:00:02Z".parse().unwrap())
        );
        assert_eq!(finish_at(start, 100, 0.0), None);
    }

    #[test]
    fn backlogs_add_up_per_priority_and_per_user() {
        let groups = [
            group(Priority::Normal, 1, 1, 100),
            group(Priority::High, 1, 1, 2),
            group(Priority::Normal, 2, 1, 10),
        ];
        let all = Backlog::of(&groups, None);
        assert_eq!(
            (all.high, all.normal, all.low, all.total()),
            (2, 110, 0, 112)
        );
        assert_eq!(Backlog::of(&groups, Some(2)).normal, 10);
    }
}
