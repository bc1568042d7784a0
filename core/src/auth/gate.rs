//! A bound on argon2 work. Each hash or verification takes 19 MiB and a core for tens of
//! milliseconds; without a bound a login flood queues unlimited work and exhausts memory.
//! Callers wait briefly for a slot and are otherwise told to come back ([`Busy`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::credentials::{hash_password, verify_password};

/// No hashing slot came free within the wait: answer 503 with `Retry-After`, do not queue.
#[derive(Debug, thiserror::Error)]
#[error("password hashing is at capacity")]
pub struct Busy;

/// Why a gated password operation did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("password task failed")]
    Internal(#[from] anyhow::Error),
}

/// The slots for argon2 work of one API process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PasswordGate {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl PasswordGate {
    pub fn new(concurrency: usize, wait: Duration) -> PasswordGate {
        PasswordGate {
            slots: Arc::new(Semaphore::new(concurrency)),
            wait,
        }
    }

    /// Runs `work` on the blocking pool once a slot is free, or fails with [`Busy`] after
    /// the wait. The slot is held until the work ends, even if the caller goes away.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, GateError> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| GateError::Internal(anyhow::anyhow!("password task failed: {e}")))
    }

    /// [`verify_password`] within the bound.
    pub async fn verify(&self, password: &str, stored_hash: String) -> Result<bool, GateError> {
        let password = password.to_owned();
        self.run(move || verify_password(&password, &stored_hash))
            .await
    }

    /// [`hash_password`] within the bound.
    pub async fn hash(&self, password: String) -> Result<String, GateError> {
        self.run(move || hash_password(&password))
            .await?
            .map_err(GateError::Internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_gate_answers_busy_after_its_wait_instead_of_queueing() {
        let gate = PasswordGate::new(1, Duration::from_millis(20));
        let held = gate.slots.clone().acquire_owned().await.unwrap();
        let started = std::time::Instant::now();
        let refused = gate.verify("x", "not a hash".into()).await;
        assert!(matches!(refused, Err(GateError::Busy(_))), "{refused:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(held);
        assert!(!gate.verify("x", "not a hash".into()).await.unwrap());
    }
}
