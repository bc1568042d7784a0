//! Idempotency keys: a client that repeats a send (after a timeout, a dropped connection, a
//! double click) with the same key gets the first request's message back instead of a
//! second send.
//!
//! The key is written by [`KeyClaim::record`] inside the transaction that stores the
//! message, so a key names a durable message or nothing; no crash can leave a key that
//! blocks its retries. Two requests racing with one key: the second's insert waits for the
//! first's uncommitted row, finds the key taken once that commits, rolls its own message
//! back, and answers with the first one's (see `docs/architecture.md`).

mod key;
mod repo;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use key::{IdempotencyKey, IdempotencyKeyError, HEADER};

/// SHA-256 of what a request asked for, so that a key reused for a different request is
/// told apart from a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The digest of `parts` in order. Each part is length-prefixed, so no two different
    /// lists of parts share a fingerprint by running into each other.
    pub fn of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Fingerprint {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Fingerprint(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A request that wants to happen at most once: its key, what it asks for, and how long
/// the key is honoured (`IDEMPOTENCY_KEY_TTL`).
pub struct KeyClaim {
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub ttl: Duration,
}

/// The message an earlier request with the same key produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorSend {
    pub message_id: i64,
    pub created_at: DateTime<Utc>,
    pub total: usize,
    pub sender_sim: Option<String>,
    /// The message's route: `hkt`, `sim.<id>` or `sim` (the pool).
    pub route: String,
    /// Whether that request asked for exactly what this one asks for.
    pub same_request: bool,
}

impl KeyClaim {
    /// What an earlier request of `user_id` with this key produced, while the key is live.
    pub async fn prior(&self, db: &PgPool, user_id: i64) -> Result<Option<PriorSend>, sqlx::Error> {
        let row = repo::find_live(db, user_id, self.key.as_str(), self.ttl.as_secs_f64()).await?;
        Ok(row.map(|row| PriorSend {
            message_id: row.message_id,
            created_at: row.created_at,
            total: usize::try_from(row.total_count).unwrap_or_default(),
            sender_sim: row.sender_sim,
            route: row.route,
            same_request: row.fingerprint == self.fingerprint.0,
        }))
    }

    /// Ties the key to `message_id`, inside the transaction that stores the message. False
    /// when another request took the key first: the caller rolls back and replays that one.
    pub async fn record(
        &self,
        tx: &mut PgConnection,
        user_id: i64,
        message_id: i64,
    ) -> Result<bool, sqlx::Error> {
        repo::insert_key(
            tx,
            user_id,
            self.key.as_str(),
            &self.fingerprint.0,
            message_id,
            self.ttl.as_secs_f64(),
        )
        .await
    }
}

/// How often expired keys are swept, and how many go per statement (so a sweep never holds
/// a long transaction over the table).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
const SWEEP_CHUNK: i64 = 10_000;

/// Deletes keys older than `ttl` every ten minutes until `shutdown`. Expired keys are
/// already ignored by [`KeyClaim::prior`]; this only keeps the table small.
pub fn spawn_sweeper(
    db: PgPool,
    ttl: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
            }
            match sweep(&db, ttl).await {
                Ok(0) => {}
                Ok(swept) => info!(swept, "expired idempotency keys deleted"),
                Err(e) => {
                    warn!(error = %e, "sweeping expired idempotency keys failed; next try in {SWEEP_EVERY:?}")
                }
            }
        }
    })
}

/// Deletes every key older than `ttl`; returns how many went.
pub async fn sweep(db: &PgPool, ttl: Duration) -> Result<u64, sqlx::Error> {
    let mut swept = 0;
    loop {
        let deleted = repo::delete_expired(db, ttl.as_secs_f64(), SWEEP_CHUNK).await?;
        swept += deleted;
        if deleted < SWEEP_CHUNK as u64 {
            return Ok(swept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_apart_parts_that_concatenate_alike() {
        let a = Fingerprint::of([b"ab".as_slice(), b"c".as_slice()]);
        let b = Fingerprint::of([b"a".as_slice(), b"bc".as_slice()]);
        assert_ne!(a, b);
        assert_eq!(a, Fingerprint::of([b"ab".as_slice(), b"c".as_slice()]));
    }
}
