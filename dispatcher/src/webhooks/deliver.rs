//! The delivery loop: claims due deliveries, POSTs each (a bounded number at once, and a
//! bounded number per endpoint), and records how each attempt ended. Every dispatcher runs
//! one; they share the work through `FOR UPDATE SKIP LOCKED` claims, so any number can run.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use smsgate_shared::secret_box::{webhook_secret_context, SecretBox};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, info_span, warn, Instrument};

use super::client::{Answer, DeliveryError, WebhookClient};
use super::repo::{self, Due, Recorded};
use crate::metrics::{DispatcherMetrics, WebhookOutcome};
use crate::retry::{NextStep, RetryPolicy};
use crate::settings::WebhookSettings;

/// How often finished deliveries older than the retention are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// What one delivery task needs.
struct Deliverer {
    db: sqlx::PgPool,
    client: WebhookClient,
    /// Opens the webhooks' stored secrets (WEBHOOK_SECRET_KEYS).
    keys: SecretBox,
    policy: RetryPolicy,
    lease: Duration,
    kill: CancellationToken,
    metrics: DispatcherMetrics,
}

/// Runs until `shutdown` (attempts in flight finish and are recorded) or `kill` (a crash:
/// attempts are abandoned unrecorded, and their leases bring them back). `db` is a pool of
/// its own, so deliveries never wait behind the result writer's connections, nor it behind
/// them.
pub async fn run(
    db: sqlx::PgPool,
    client: WebhookClient,
    settings: WebhookSettings,
    metrics: DispatcherMetrics,
    shutdown: CancellationToken,
    kill: CancellationToken,
) {
    let deliverer = Arc::new(Deliverer {
        db,
        client,
        keys: settings.secret_keys.clone(),
        policy: RetryPolicy::new(settings.retry_schedule.clone()),
        // The lease outlives an attempt (the POST's timeout, then recording it), so a live
        // dispatcher's rows are not taken by another.
        lease: settings.timeout * 2 + Duration::from_secs(1),
        kill: kill.clone(),
        metrics,
    });
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let attempts = TaskTracker::new();
    let mut next_sweep = Instant::now();
    let mut idle = settings.poll_interval;
    loop {
        if Instant::now() >= next_sweep {
            sweep(&deliverer.db, settings.retention).await;
            next_sweep = Instant::now() + SWEEP_EVERY;
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
        let claimed = repo::claim_due(
            &deliverer.db,
            asked as i64,
            deliverer.lease.as_secs_f64(),
            settings.max_in_flight_per_endpoint as i64,
        )
        .await;
        let due = match claimed {
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
        let leased_at = Instant::now();
        for (due, slot) in due.into_iter().zip(free) {
            attempts.spawn(deliverer.clone().attempt(due, leased_at, slot));
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
    async fn attempt(self: Arc<Self>, due: Due, leased_at: Instant, _slot: OwnedSemaphorePermit) {
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
            self.metrics.webhook_attempt(match outcome.recorded {
                Recorded::Delivered => WebhookOutcome::Delivered,
                Recorded::RetryIn(_) => WebhookOutcome::Retry,
                Recorded::Failed => WebhookOutcome::Failed,
            });
            self.record(&due, &outcome, leased_at + self.lease).await;
        }
        .instrument(span)
        .await
    }

    async fn try_once(&self, due: &Due) -> Outcome {
        if !due.is_active {
            return Outcome::failed(None, "the webhook was disabled before this delivery".into());
        }
        let secret = match self
            .keys
            .open(&due.sealed_secret, &webhook_secret_context(due.webhook_id))
        {
            Ok(secret) => secret,
            Err(e) => {
                // Never sent unsigned. Retried on the schedule: a key missing from this
                // dispatcher's WEBHOOK_SECRET_KEYS (a rotation done in the wrong order) is
                // fixed by configuring it, and the delivery then goes out.
                error!(error = %e, "a webhook secret cannot be opened with WEBHOOK_SECRET_KEYS; the delivery waits for a retry");
                let error = "the webhook's signing secret could not be decrypted on the server \
                             (a key configuration problem for the operator); nothing was sent";
                return self.retry_or_fail(due.attempts, None, error.into(), None);
            }
        };
        let started = Instant::now();
        let answer = self.client.post(due, &secret).await;
        self.metrics
            .webhook_request
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Answer::Accepted { status }) => Outcome {
                recorded: Recorded::Delivered,
                status_code: Some(status.as_u16()),
                error: None,
            },
            Ok(Answer::Refused {
                status,
                retry_after,
            }) => {
                let error = format!("HTTP {}", status.as_u16());
                match classify_status(status) {
                    Next::Retry => {
                        self.retry_or_fail(due.attempts, Some(status.as_u16()), error, retry_after)
                    }
                    Next::GiveUp => Outcome::failed(Some(status.as_u16()), error),
                }
            }
            Err(e) => match classify_error(&e) {
                Next::Retry => self.retry_or_fail(due.attempts, None, e.to_string(), None),
                Next::GiveUp => Outcome::failed(None, e.to_string()),
            },
        }
    }

    /// A failed attempt worth repeating: again after the schedule's delay for this attempt
    /// (or the endpoint's `Retry-After`, moved to the next longer step), give or take a
    /// tenth so that a burst of failures doesn't come back as a burst; failed once the
    /// schedule ends.
    fn retry_or_fail(
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

    /// Writes the attempt's end, retrying while its lease lasts; after that another
    /// dispatcher may have claimed the row, and the record would be fenced off anyway
    /// (the delivery is then made again: at-least-once).
    async fn record(&self, due: &Due, outcome: &Outcome, lease_end: Instant) {
        let mut wait = Duration::from_millis(200);
        loop {
            let recorded = repo::record_attempt(
                &self.db,
                due.id,
                due.attempts,
                &outcome.recorded,
                outcome.status_code,
                outcome.error.as_deref(),
            )
            .await;
            match recorded {
                Ok(true) => return,
                Ok(false) => {
                    warn!("a webhook attempt outlived its lease; its result was not recorded");
                    return;
                }
                Err(e) if Instant::now() + wait < lease_end => {
                    warn!(error = %e, "recording a webhook attempt failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    warn!(error = %e, "recording a webhook attempt failed; it will be made again after its lease");
                    return;
                }
            }
        }
    }
}

/// Whether trying a delivery again can help.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Retry,
    GiveUp,
}

/// Any answer but 2xx is retried, as receivers expect of webhooks (a 4xx is often a
/// receiver being deployed), except 410 Gone: the endpoint says it is gone for good.
fn classify_status(status: reqwest::StatusCode) -> Next {
    if status == reqwest::StatusCode::GONE {
        Next::GiveUp
    } else {
        Next::Retry
    }
}

/// No answer: a URL that can't be called, or one we refuse to call, stays so; the network
/// failing is worth another try.
fn classify_error(error: &DeliveryError) -> Next {
    match error {
        DeliveryError::InvalidUrl(_) | DeliveryError::InternalTarget(_) => Next::GiveUp,
        DeliveryError::Http(_) => Next::Retry,
    }
}

/// How an attempt ended, ready to record.
struct Outcome {
    recorded: Recorded,
    status_code: Option<u16>,
    error: Option<String>,
}

impl Outcome {
    fn failed(status_code: Option<u16>, error: String) -> Outcome {
        Outcome {
            recorded: Recorded::Failed,
            status_code,
            error: Some(error),
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn every_answer_but_gone_is_retried() {
        for status in [400, 401, 404, 408, 429, 500, 502, 503] {
            assert_eq!(
                classify_status(StatusCode::from_u16(status).unwrap()),
                Next::Retry,
                "{status}"
            );
        }
        assert_eq!(classify_status(StatusCode::GONE), Next::GiveUp);
    }

    #[test]
    fn refused_and_invalid_urls_are_not_retried_but_network_errors_are() {
        assert_eq!(
            classify_error(&DeliveryError::InternalTarget("x".into())),
            Next::GiveUp
        );
        assert_eq!(
            classify_error(&DeliveryError::InvalidUrl("x".into())),
            Next::GiveUp
        );
        assert_eq!(
            classify_error(&DeliveryError::Http("timed out".into())),
            Next::Retry
        );
    }
}
