//! SQL of webhook deliveries, dispatcher side. One function per statement.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

/// Inserts a `message.status` delivery per (event, active webhook of the message's owner
/// that subscribes to it).
pub async fn insert_status_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    message_ids: &[i64],
    payloads: &[serde_json::Value],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, message_id, payload)
         SELECT w.id, 'message.status', e.message_id, e.payload
         FROM unnest($1::bigint[], $2::jsonb[]) AS e(message_id, payload)
         JOIN messages m ON m.id = e.message_id
         JOIN webhooks w ON w.user_id = m.user_id AND w.is_active
              AND 'message.status' = ANY(w.events)",
        message_ids,
        payloads
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts a `message.received` delivery for every active webhook subscribed to it whose
/// owner may see SIM `sim_id`: admins, the SIM's assignees, or everyone when the SIM is
/// assigned to all (the inbox's rule, `core::sims::repo`). A SIM deleted meanwhile is
/// seen by admins only. Owners whose account is disabled get none.
pub async fn insert_received_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    sim_id: i64,
    payload: &serde_json::Value,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
         SELECT w.id, 'message.received', $2
         FROM webhooks w JOIN users u ON u.id = w.user_id
         WHERE w.is_active AND 'message.received' = ANY(w.events) AND u.is_active
           AND (u.is_admin
                OR EXISTS (SELECT 1 FROM sim_cards s
                           WHERE s.id = $1 AND (s.assigned_to_all
                                 OR EXISTS (SELECT 1 FROM sim_card_assignees a
                                            WHERE a.sim_card_id = s.id AND a.user_id = w.user_id))))",
        sim_id,
        payload
    )
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// A delivery this dispatcher claimed, with its endpoint.
#[derive(Clone)]
pub struct Due {
    pub id: i64,
    pub webhook_id: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    /// This attempt's number (the claim counted it); recording it is fenced on it.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub url: String,
    /// The signing key, encrypted (`smsgate_shared::secret_box`, sealed to `webhook_id`).
    /// Kept out of log lines all the same, hence the hand-written `Debug`.
    pub sealed_secret: String,
    pub is_active: bool,
}

impl std::fmt::Debug for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("event_type", &self.event_type)
            .field("attempts", &self.attempts)
            .field("url", &self.url)
            .field("sealed_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Claims up to `limit` due deliveries, oldest first, skipping rows other dispatchers hold,
/// and at most `per_endpoint` in flight per webhook (across all dispatchers), so that one
/// slow or hanging endpoint can't take every slot from the others. The claim counts the
/// attempt and leases the row for `lease_secs`: if this dispatcher dies mid-attempt, the
/// row is due again when the lease ends.
pub async fn claim_due(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
    per_endpoint: i64,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as!(
        Due,
        "WITH due AS (
             SELECT d.id
             FROM webhooks w
             CROSS JOIN LATERAL (
                 SELECT id, next_attempt_at FROM webhook_deliveries
                 WHERE webhook_id = w.id AND status = 'pending' AND next_attempt_at <= now()
                 ORDER BY next_attempt_at, id
                 LIMIT GREATEST(0, $3 - (
                     SELECT count(*) FROM webhook_deliveries
                     WHERE webhook_id = w.id AND status = 'pending'
                       AND claimed_until IS NOT NULL AND claimed_until > now()))
                 FOR UPDATE SKIP LOCKED) d
             ORDER BY d.next_attempt_at, d.id
             LIMIT $1)
         UPDATE webhook_deliveries d
         SET attempts = d.attempts + 1,
             next_attempt_at = now() + make_interval(secs => $2),
             claimed_until = now() + make_interval(secs => $2)
         FROM due, webhooks w
         WHERE d.id = due.id AND w.id = d.webhook_id
         RETURNING d.id, d.webhook_id, d.event_type, d.payload, d.attempts, d.created_at,
                   w.url, w.secret AS sealed_secret, w.is_active",
        limit,
        lease_secs,
        per_endpoint
    )
    .fetch_all(db)
    .await
}

/// How an attempt ended, as the row records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Delivered,
    /// Due again after this many seconds.
    RetryIn(f64),
    Failed,
}

/// Records how attempt `attempt` ended. Fenced on the attempt number: once this attempt's
/// lease ran out and another dispatcher claimed the row (counting a new attempt), a late
/// record of this one changes nothing. False when it was fenced off.
pub async fn record_attempt(
    db: &PgPool,
    id: i64,
    attempt: i32,
    recorded: &Recorded,
    status_code: Option<u16>,
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let (status, retry_in) = match recorded {
        Recorded::Delivered => ("delivered", None),
        Recorded::RetryIn(secs) => ("pending", Some(*secs)),
        Recorded::Failed => ("failed", None),
    };
    Ok(sqlx::query!(
        "UPDATE webhook_deliveries SET
             status = $3,
             next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at
                                    ELSE now() + make_interval(secs => $4) END,
             claimed_until = NULL,
             last_status_code = $5,
             last_error = $6,
             completed_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
         WHERE id = $1 AND attempts = $2 AND status = 'pending'",
        id,
        attempt,
        status,
        retry_in,
        status_code.map(i32::from),
        error
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Deletes up to `limit` finished deliveries older than `retention_secs`; returns how many.
pub async fn delete_finished(
    db: &PgPool,
    retention_secs: f64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(
             SELECT id FROM webhook_deliveries
             WHERE status <> 'pending' AND completed_at < now() - make_interval(secs => $1)
             ORDER BY completed_at LIMIT $2))",
        retention_secs,
        limit
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Deletes every finished delivery older than `retention`, a bounded statement at a time.
pub async fn sweep_finished(
    db: &PgPool,
    retention: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    const CHUNK: i64 = 10_000;
    let mut swept = 0;
    loop {
        let deleted = delete_finished(db, retention.as_secs_f64(), CHUNK).await?;
        swept += deleted;
        if deleted < CHUNK as u64 {
            return Ok(swept);
        }
    }
}
