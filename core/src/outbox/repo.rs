//! SQL of the outbox: `message_outbox` holds a row per message whose jobs are not all
//! confirmed yet, with the lease that says who publishes them.

use sqlx::{PgPool, Postgres, Transaction};

#[derive(Debug)]
pub struct ClaimedMessage {
    pub id: i64,
    pub content: String,
    /// `hkt` or `sim.<id>`: the routing key its jobs are published with.
    pub route: String,
}

/// Puts a message (back) in the outbox with its lease held by the caller, inside the
/// caller's transaction. The accept statements insert their outbox rows themselves.
pub async fn hold(
    tx: &mut Transaction<'_, Postgres>,
    message_id: i64,
    lease_secs: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO message_outbox (message_id, lease_until)
         VALUES ($1, now() + make_interval(secs => $2))
         ON CONFLICT (message_id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
        message_id,
        lease_secs
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// `WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))`, joined
// into a statement by `EXISTS (SELECT FROM async_commit)`, makes the statement's own
// transaction commit without waiting for its WAL flush (`synchronous_commit = off`, local
// to that transaction), in the same round trip.
//
// Only for outbox bookkeeping (the two statements below), where losing the write is
// already a case the outbox recovers from: if PostgreSQL crashes before the WAL writer
// flushes it (within ~3 × `wal_writer_delay`), the outbox row reappears with its lease and
// the reconciler republishes the still-pending recipients, as after an API crash between
// confirm and mark. Anything committed synchronously later (a dispatcher's result write)
// flushes the WAL up to itself, so it can't outlive a lost mark that came before it. Every
// single send used to wait for two fsyncs per batch, its insert's and the previous batch's
// mark's, which are serialized on the WAL; under disk load that doubled the stalls a
// caller could sit behind.

/// Takes messages whose jobs are all confirmed out of the outbox.
pub async fn mark_enqueued(db: &PgPool, message_ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))
         DELETE FROM message_outbox
         WHERE message_id = ANY($1) AND EXISTS (SELECT FROM async_commit)",
        message_ids
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn release_lease(db: &PgPool, message_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true))
         UPDATE message_outbox SET lease_until = NULL
         WHERE message_id = $1 AND EXISTS (SELECT FROM async_commit)",
        message_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Takes the lease of up to `limit` outbox messages whose lease is free or expired, oldest
/// first. SKIP LOCKED lets several API instances reconcile at once without taking the same
/// rows.
pub async fn claim_unenqueued(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<ClaimedMessage>, sqlx::Error> {
    sqlx::query_as!(
        ClaimedMessage,
        "WITH claimed AS (
             UPDATE message_outbox SET lease_until = now() + make_interval(secs => $2)
             WHERE message_id IN (
                 SELECT message_id FROM message_outbox
                 WHERE lease_until IS NULL OR lease_until < now()
                 ORDER BY queued_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
             RETURNING message_id)
         SELECT m.id, m.content, m.route FROM claimed c JOIN messages m ON m.id = c.message_id",
        limit,
        lease_secs
    )
    .fetch_all(db)
    .await
}

/// Recipients of a message that no result has been written for yet.
pub async fn pending_recipients(
    db: &PgPool,
    message_id: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let pending = sqlx::query!(
        "SELECT id, phone FROM recipients WHERE message_id = $1 AND status = 'pending' ORDER BY id",
        message_id
    )
    .fetch_all(db)
    .await?;
    Ok(pending.into_iter().map(|r| (r.id, r.phone)).collect())
}
