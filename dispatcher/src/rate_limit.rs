//! A global rate limit across every dispatcher replica, kept in PostgreSQL.
//!
//! The limiter hands out time slots, not tokens: `rate_limits.next_slot` is the earliest
//! moment the next gateway request may start. A replica reserves `batch` consecutive slots
//! in one UPDATE (moving `next_slot` forward by `batch` intervals) and then spends them
//! locally, one per request, sleeping until each slot's time. Why slots:
//! - correct under crashes: a replica that dies holds nothing; the slots it reserved simply
//!   pass unused, so at most `batch` slots (about 50 ms of capacity) are lost;
//! - no clock agreement needed: slot times come from the database clock and are turned into
//!   local instants by the offset measured in the same statement;
//! - no burst after idleness: `greatest(next_slot, now)` restarts the schedule at now.

use std::time::Duration;

use smsgate_shared::metrics::Histogram;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::warn;

/// The row name of the HKT gateway's limit.
pub const HKT_LIMIT: &str = "hkt";

/// Slots reserved per database round trip: about 50 ms worth, at least one. Small enough
/// that a crash wastes little, large enough that high rates cost few round trips.
fn batch_for(rate_per_sec: f64) -> u32 {
    ((rate_per_sec / 20.0).floor() as u32).max(1)
}

pub struct GlobalRateLimiter {
    db: PgPool,
    name: String,
    interval: Duration,
    batch: u32,
    local: Mutex<Reserved>,
    /// How long each `acquire` waited.
    waits: Histogram,
}

/// Slots this replica reserved and has not spent yet.
struct Reserved {
    next: Instant,
    remaining: u32,
}

impl GlobalRateLimiter {
    /// A limiter allowing `rate_per_sec` requests per second across all replicas.
    pub fn new(db: PgPool, name: &str, rate_per_sec: f64, waits: Histogram) -> GlobalRateLimiter {
        assert!(rate_per_sec > 0.0, "a rate limit must be positive");
        GlobalRateLimiter {
            db,
            name: name.to_owned(),
            interval: Duration::from_secs_f64(1.0 / rate_per_sec),
            batch: batch_for(rate_per_sec),
            local: Mutex::new(Reserved {
                next: Instant::now(),
                remaining: 0,
            }),
            waits,
        }
    }

    /// Waits until this caller may send one request.
    pub async fn acquire(&self) {
        let asked = Instant::now();
        let slot = {
            let mut local = self.local.lock().await;
            if local.remaining == 0 {
                local.next = self.reserve().await;
                local.remaining = self.batch;
            }
            let slot = local.next;
            local.next += self.interval;
            local.remaining -= 1;
            slot
        };
        tokio::time::sleep_until(slot).await;
        self.waits.observe(asked.elapsed().as_secs_f64());
    }

    /// Reserves `batch` slots; returns the local instant of the first. Retries while the
    /// database is unavailable: sending without a slot could exceed the gateway's limit.
    async fn reserve(&self) -> Instant {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.try_reserve().await {
                Ok(first) => return first,
                Err(e) => {
                    warn!(error = %e, "rate limiter could not reserve slots; holding sends");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn try_reserve(&self) -> Result<Instant, sqlx::Error> {
        let span = self.interval.as_secs_f64() * f64::from(self.batch);
        // `wait` is how far in the future (by the database's clock) the first slot lies.
        let wait = crate::repo::reserve_slots(&self.db, &self.name, span).await?;
        Ok(Instant::now() + Duration::from_secs_f64(wait.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_cover_about_fifty_milliseconds_and_at_least_one_slot() {
        assert_eq!(batch_for(2.0), 1);
        assert_eq!(batch_for(50.0), 2);
        assert_eq!(batch_for(1000.0), 50);
    }
}
