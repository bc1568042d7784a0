//! SQL of the outbox: the per-message marker and lease.

use sqlx::PgPool;

#[derive(Debug, sqlx::FromRow)]
pub struct ClaimedMessage {
    pub id: i64,
    pub content: String,
    /// `hkt` or `sim.<id>`: the routing key its jobs are published with.
    pub route: String,
}

/// Marks a message as fully enqueued and drops its lease.
pub async fn mark_enqueued(db: &PgPool, message_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET enqueued_at = now(), publish_lease_until = NULL WHERE id = $1",
    )
    .bind(message_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Marks many messages at once (the single-send lane's batches).
pub async fn mark_enqueued_many(db: &PgPool, message_ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET enqueued_at = now(), publish_lease_until = NULL WHERE id = ANY($1)",
    )
    .bind(message_ids)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn release_lease(db: &PgPool, message_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET publish_lease_until = NULL WHERE id = $1 AND enqueued_at IS NULL",
    )
    .bind(message_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes the lease of up to `limit` unmarked messages whose lease is free or expired.
/// SKIP LOCKED lets several API instances reconcile at once without taking the same rows.
pub async fn claim_unenqueued(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<ClaimedMessage>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE messages SET publish_lease_until = now() + make_interval(secs => $2)
         WHERE id IN (
             SELECT id FROM messages
             WHERE enqueued_at IS NULL AND (publish_lease_until IS NULL OR publish_lease_until < now())
             ORDER BY created_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         RETURNING id, content, route",
    )
    .bind(limit)
    .bind(lease_secs)
    .fetch_all(db)
    .await
}

/// Recipients of a message that no result has been written for yet.
pub async fn pending_recipients(
    db: &PgPool,
    message_id: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, phone FROM recipients WHERE message_id = $1 AND status = 'pending' ORDER BY id",
    )
    .bind(message_id)
    .fetch_all(db)
    .await
}
