//! Quotas and allowances (issue #14): what one send request may cost a user.
//!
//! Three per-user limits, set by admins (`admin::users`), are charged by [`charge`] inside
//! the transaction that stores the message:
//!
//! - `requests_per_second`: send requests a second, a GCRA with a burst of one second's worth;
//! - `high_priority_per_minute`: recipients a minute sent with priority `high`, a GCRA with a
//!   burst of one minute's worth (0 forbids `high`);
//! - `daily_recipient_limit`: recipients a UTC day, counted exactly.
//!
//! The counts live in rows (`user_rate_state`, `user_daily_usage`) that the charge updates
//! under their row locks, in the caller's transaction: two API replicas charging the same
//! user queue on the lock, so the limits are exact across replicas, and a send that rolls
//! back (refused, or failed after the charge) took nothing. There are no in-memory counters.

mod repo;

use std::time::Duration;

use smsgate_shared::domain::Priority;
use sqlx::PgConnection;

use repo::RateKind;

/// What one send request asks for: how many recipients, at which priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRequest {
    pub recipients: u32,
    pub priority: Priority,
}

/// Why a send request was refused by a quota. Every variant but `Database` is the user's
/// limit speaking; the caller rolls its transaction back, so nothing was stored or counted.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// daily_recipient_limit would be exceeded; retry_after = until next UTC midnight
    #[error(
        "the daily limit of {limit} recipients would be exceeded ({used} already sent today, UTC)"
    )]
    DailyLimit {
        limit: i64,
        used: i64,
        retry_after: Duration,
    },
    /// requests_per_second exceeded
    #[error("too many send requests a second for this account's limit")]
    RateLimited { retry_after: Duration },
    /// high_priority_per_minute allowance used up for now
    #[error("the high-priority allowance (recipients a minute) is used up for now")]
    HighPriorityAllowance { retry_after: Duration },
    /// more high-priority recipients in one request than the allowance can ever admit (or high forbidden: allowance 0)
    #[error("{}", too_large_message(*.allowance))]
    HighPriorityTooLarge { allowance: i64 },
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

fn too_large_message(allowance: i64) -> String {
    if allowance == 0 {
        "this account may not send with priority high".to_owned()
    } else {
        format!(
            "a high-priority request may have at most {allowance} recipients (the account's allowance a minute)"
        )
    }
}

/// Charges one send request to the user's quotas inside the caller's transaction `tx`
/// (the same transaction that inserts the message): if the transaction rolls back, nothing
/// was counted; if a quota is exceeded, returns the error and the caller rolls back, so
/// nothing is stored. Exact across API replicas (row locks, no in-memory counters).
///
/// Cost: one primary-key SELECT of the user's limits, plus one upsert per limit that
/// applies (a user with no limits sending at normal priority costs that one SELECT). The
/// rows it locks stay locked until `tx` ends, so a user's concurrent sends queue behind
/// each other from here to their commit; keep what follows the charge short.
#[tracing::instrument(name = "quota.charge", skip_all, fields(user.id = user_id, recipients = request.recipients))]
pub async fn charge(
    tx: &mut PgConnection,
    user_id: i64,
    request: &QuotaRequest,
) -> Result<(), QuotaError> {
    let limits = repo::limits_of(&mut *tx, user_id).await?;
    // Checks run in a fixed order (requests, high, daily) on every path, so two
    // transactions of one user always take these row locks in the same order and never
    // deadlock on each other.
    if let Some(per_second) = limits.requests_per_second {
        let gcra = Gcra::requests_per_second(per_second);
        if let Err(wait_us) = take(&mut *tx, user_id, RateKind::Requests, gcra, 1).await? {
            return Err(QuotaError::RateLimited {
                retry_after: micros(wait_us),
            });
        }
    }
    if request.priority == Priority::High {
        let allowance = limits.high_priority_per_minute;
        let gcra = Gcra::per_minute(allowance)
            .filter(|g| g.admits(request.recipients))
            .ok_or(QuotaError::HighPriorityTooLarge {
                allowance: i64::from(allowance),
            })?;
        if let Err(wait_us) =
            take(&mut *tx, user_id, RateKind::High, gcra, request.recipients).await?
        {
            return Err(QuotaError::HighPriorityAllowance {
                retry_after: micros(wait_us),
            });
        }
    }
    if let Some(limit) = limits.daily_recipient_limit {
        let n = i64::from(request.recipients);
        let limit = i64::from(limit);
        if !repo::add_daily_usage(&mut *tx, user_id, n, limit).await? {
            let refusal = repo::daily_refusal(&mut *tx, user_id).await?;
            return Err(QuotaError::DailyLimit {
                limit,
                used: refusal.used,
                retry_after: micros(refusal.until_midnight_us),
            });
        }
    }
    Ok(())
}

/// Takes `units` from a GCRA allowance; `Err(wait)` (microseconds) when they do not fit yet.
async fn take(
    tx: &mut PgConnection,
    user_id: i64,
    kind: RateKind,
    gcra: Gcra,
    units: u32,
) -> Result<Result<(), i64>, sqlx::Error> {
    let cost_us = gcra.cost_us(units);
    if repo::take_rate(&mut *tx, user_id, kind, cost_us, gcra.burst_us).await? {
        Ok(Ok(()))
    } else {
        // The refused upsert still locked the row, so this reads the state that refused us.
        Ok(Err(repo::rate_wait_us(
            &mut *tx,
            user_id,
            kind,
            cost_us,
            gcra.burst_us,
        )
        .await?))
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// A GCRA allowance in whole microseconds: each unit pushes the theoretical arrival time
/// (`allowed_from`) `emission_us` further, and units are admitted while it stays within
/// `burst_us` of now. The interval is rounded up, so the long-run rate never exceeds the
/// configured one, and the burst is an exact number of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    emission_us: i64,
    burst_us: i64,
}

impl Gcra {
    /// `n` units per `period_us`, with a burst of `n`.
    fn new(n: i64, period_us: i64) -> Gcra {
        let emission_us = (period_us + n - 1) / n;
        Gcra {
            emission_us,
            burst_us: emission_us * n,
        }
    }

    /// Send requests a second (the column's CHECK keeps it at least 1).
    fn requests_per_second(per_second: i32) -> Gcra {
        Gcra::new(i64::from(per_second.max(1)), 1_000_000)
    }

    /// Recipients a minute; `None` when the allowance is 0 (nothing is ever admitted).
    fn per_minute(per_minute: i32) -> Option<Gcra> {
        (per_minute > 0).then(|| Gcra::new(i64::from(per_minute), 60_000_000))
    }

    /// Whether `units` can ever fit, even with the whole burst available.
    fn admits(&self, units: u32) -> bool {
        self.cost_us(units) <= self.burst_us
    }

    fn cost_us(&self, units: u32) -> i64 {
        self.emission_us.saturating_mul(i64::from(units))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_second_limit_bursts_exactly_that_many_requests() {
        let g = Gcra::requests_per_second(5);
        assert_eq!(g.emission_us, 200_000);
        assert_eq!(g.burst_us, 1_000_000);
        assert!(g.admits(5) && !g.admits(6));
    }

    #[test]
    fn rounding_never_raises_the_rate() {
        // 1 s / 3 is not whole microseconds: the interval rounds up, the burst stays 3.
        let g = Gcra::requests_per_second(3);
        assert_eq!(g.emission_us, 333_334);
        assert_eq!(g.burst_us, 3 * 333_334);
        assert!(g.admits(3) && !g.admits(4));
        for per_minute in [1, 7, 60, 61, 1_000_000, i32::MAX] {
            let g = Gcra::per_minute(per_minute).unwrap();
            assert!(g.emission_us * i64::from(per_minute) >= 60_000_000);
            assert!(g.admits(u32::try_from(per_minute).unwrap()));
        }
    }

    #[test]
    fn a_high_allowance_admits_up_to_a_minutes_worth_in_one_request() {
        let g = Gcra::per_minute(60).unwrap();
        assert_eq!(g.emission_us, 1_000_000);
        assert!(g.admits(60));
        assert!(!g.admits(61));
        assert!(g.admits(0));
    }

    #[test]
    fn an_allowance_of_zero_admits_nothing() {
        assert_eq!(Gcra::per_minute(0), None);
    }

    #[test]
    fn huge_requests_do_not_overflow() {
        let g = Gcra::per_minute(1).unwrap();
        assert!(!g.admits(u32::MAX));
    }

    #[test]
    fn refusals_say_the_limit() {
        let daily = QuotaError::DailyLimit {
            limit: 100,
            used: 95,
            retry_after: Duration::from_secs(60),
        };
        assert!(daily.to_string().contains("100 recipients"));
        assert!(daily.to_string().contains("95 already sent"));
        let large = QuotaError::HighPriorityTooLarge { allowance: 60 };
        assert!(large.to_string().contains("at most 60 recipients"));
        let forbidden = QuotaError::HighPriorityTooLarge { allowance: 0 };
        assert!(forbidden
            .to_string()
            .contains("may not send with priority high"));
    }

    #[test]
    fn negative_waits_are_no_wait() {
        assert_eq!(micros(-5), Duration::ZERO);
        assert_eq!(micros(1_500_000), Duration::from_millis(1500));
    }
}
