//! The delivery loop: claims due deliveries, POSTs each (a bounded number at once), and
//! records how each attempt ended. Every dispatcher runs one; they share the work through
//! `FOR UPDATE SKIP LOCKED` claims, so any number can run.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use super::client::{Answer, WebhookClient};
use super::repo::{self, Due, Recorded};
use crate::retry::{NextStep, RetryPolicy};
use crate::settings::WebhookSettings;

/// How often finished deliveries older than the retention are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// What one delivery task needs.
struct Deliverer {
    db: sqlx::PgPool,
    client: WebhookClient,
    policy: RetryPolicy,
    kill: CancellationToken,
}

/// Runs until `shutdown` (attempts in flight finish and are recorded) or `kill` (a crash:
/// attempts are abandoned unrecorded, and their leases bring them back).
pub async fn run(
    db: sqlx::PgPool,
    client: WebhookClient,
    settings: WebhookSettings,
    shutdown: CancellationToken,
    kill: CancellationToken,
) {
    let deliverer = Arc::new(Deliverer {
        db,
        client,
        policy: RetryPolicy::new(settings.retry_schedule.clone()),
        kill: kill.clone(),
    });
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let attempts = TaskTracker::new();
    // The lease outlives the longest attempt (the POST's timeout, then recording it), so a
    // live dispatcher's rows are never taken by another.
    let lease = settings.timeout * 2 + Duration::from_secs(1);
    let mut next_sweep = tokio::time::Instant::now();
    let mut idle = settings.poll_interval;
    loop {
        if tokio::time::Instant::now() >= next_sweep {
            sweep(&deliverer.db, settings.retention).await;
            next_sweep = tokio::time::Instant::now() + SWEEP_EVERY;
        }
        // Take every free slot before claiming, waiting for the first: a row claimed without
        // a slot would sit out its lease behind slow endpoints.
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = kill.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let mut free = vec![first];
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            free.push(slot);
        }
        let asked = free.len();
        let due = match repo::claim_due(&deliverer.db, asked as i64, lease.as_secs_f64()).await {
            Ok(due) => {
                idle = settings.poll_interval;
                due
            }
            Err(e) => {
                warn!(error = %e, "claiming webhook deliveries failed; retrying in {idle:?}");
                idle = (idle * 2).min(Duration::from_secs(30));
                Vec::new()
            }
        };
        let claimed = due.len();
        for (due, slot) in due.into_iter().zip(free) {
            attempts.spawn(deliverer.clone().attempt(due, slot));
        }
        if claimed < asked {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = kill.cancelled() => break,
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }
    attempts.close();
    attempts.wait().await;
}

impl Deliverer {
    /// One attempt: POST, then record. Holds its slot until recorded.
    async fn attempt(self: Arc<Self>, due: Due, _slot: OwnedSemaphorePermit) {
        let span = info_span!(
            "webhook.deliver",
            webhook.id = due.webhook_id,
            delivery.id = due.id,
            attempt = due.attempts,
            http.status = tracing::field::Empty
        );
        async {
            let outcome = tokio::select! {
                _ = self.kill.cancelled() => return,
                outcome = self.try_once(&due) => outcome,
            };
            if let Some(code) = outcome.status_code {
                tracing::Span::current().record("http.status", code);
            }
            self.record(&due, &outcome).await;
        }
        .instrument(span)
        .await
    }

    async fn try_once(&self, due: &Due) -> Outcome {
        if !due.is_active {
            return Outcome::give_up("the webhook was disabled before this delivery");
        }
        match self.client.post(due).await {
            Ok(Answer::Accepted { status }) => Outcome {
                recorded: Recorded::Delivered,
                status_code: Some(status.as_u16()),
                error: None,
            },
            Ok(Answer::Refused {
                status,
                retry_after,
            }) => self.failed(
                due.attempts,
                Some(status.as_u16()),
                format!("HTTP {}", status.as_u16()),
                retry_after,
            ),
            Err(e) => self.failed(due.attempts, None, e.to_string(), None),
        }
    }

    /// A failed attempt: again after the schedule's delay for this attempt (or the
    /// endpoint's `Retry-After`, moved to the next longer step), give or take a tenth so
    /// that a burst of failures doesn't come back as a burst; failed once the schedule ends.
    fn failed(
        &self,
        attempt: i32,
        status_code: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    ) -> Outcome {
        let attempt = u32::try_from(attempt).unwrap_or(1);
        let recorded = match self.policy.after_failure(attempt, retry_after) {
            NextStep::RetryIn { step, .. } => {
                let delay = self.policy.delay(step).as_secs_f64();
                Recorded::RetryIn(delay * rand::thread_rng().gen_range(0.9..1.1))
            }
            NextStep::GiveUp => Recorded::Failed,
        };
        Outcome {
            recorded,
            status_code,
            error: Some(error),
        }
    }

    /// Writes the attempt's end, retrying a few times; if PostgreSQL stays away the lease
    /// runs out and the delivery is attempted again (at-least-once).
    async fn record(&self, due: &Due, outcome: &Outcome) {
        let mut wait = Duration::from_millis(200);
        for _ in 0..5 {
            match repo::record_attempt(
                &self.db,
                due.id,
                &outcome.recorded,
                outcome.status_code,
                outcome.error.as_deref(),
            )
            .await
            {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, "recording a webhook attempt failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// How an attempt ended, ready to record.
struct Outcome {
    recorded: Recorded,
    status_code: Option<u16>,
    error: Option<String>,
}

impl Outcome {
    fn give_up(reason: &str) -> Outcome {
        Outcome {
            recorded: Recorded::Failed,
            status_code: None,
            error: Some(reason.to_owned()),
        }
    }
}

async fn sweep(db: &sqlx::PgPool, retention: Duration) {
    match repo::sweep_finished(db, retention).await {
        Ok(0) => {}
        Ok(swept) => info!(
            swept,
            "finished webhook deliveries past their retention deleted"
        ),
        Err(e) => warn!(error = %e, "sweeping finished webhook deliveries failed"),
    }
}
