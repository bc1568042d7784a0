//! SQL of the edge ingest. One function per statement.

use smsgate_shared::domain::{MessageStatus, RecipientStatus};
use sqlx::{PgPool, Postgres, Transaction};

pub use crate::repo::{ChangedRecipient, MessageProgress};

/// Records a SIM job's result. Only a `pending` recipient changes, so a result published
/// twice (agent redelivery) counts once. `attempts` comes from the agent: retries of SIM
/// jobs go through the retry queues without a row write in between.
pub async fn record_sim_result(
    tx: &mut Transaction<'_, Postgres>,
    recipient_id: i64,
    status: RecipientStatus,
    attempts: i32,
    error: Option<&str>,
    response: Option<&str>,
) -> Result<Option<ChangedRecipient>, sqlx::Error> {
    sqlx::query_as!(
        ChangedRecipient,
        r#"UPDATE recipients SET
             status = $2,
             attempts = GREATEST(attempts, $3),
             last_error = $4,
             gateway_response = COALESCE($5, gateway_response),
             updated_at = now(),
             sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
         WHERE id = $1 AND status = 'pending'
         RETURNING id, message_id, phone, status AS "status: RecipientStatus", attempts, last_error"#,
        recipient_id,
        status.as_str(),
        attempts,
        error,
        response
    )
    .fetch_optional(&mut **tx)
    .await
}

/// One row per sent part, so delivery reports find their recipient by (SIM, reference).
pub async fn insert_part_refs(
    tx: &mut Transaction<'_, Postgres>,
    sim_id: i64,
    recipient_id: i64,
    references: &[i16],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO sim_part_refs (sim_card_id, recipient_id, part, reference)
         SELECT $1, $2, (ord - 1)::smallint, reference
         FROM unnest($3::smallint[]) WITH ORDINALITY AS t(reference, ord)
         ON CONFLICT (recipient_id, part) DO NOTHING",
        sim_id,
        recipient_id,
        references
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the newest undelivered part with this reference on this SIM as reported, and
/// returns its recipient and message. References wrap at 256, hence newest and recent.
pub async fn mark_part_reported(
    tx: &mut Transaction<'_, Postgres>,
    sim_id: i64,
    reference: i16,
    delivered: bool,
    status: i16,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let reported = sqlx::query!(
        "UPDATE sim_part_refs p SET
             delivered_at = CASE WHEN $3 THEN now() ELSE NULL END,
             report_status = $4
         FROM recipients r
         WHERE p.id = (
                 SELECT id FROM sim_part_refs
                 WHERE sim_card_id = $1 AND reference = $2 AND report_status IS NULL
                   AND sent_at > now() - interval '7 days'
                 ORDER BY sent_at DESC, id DESC LIMIT 1)
           AND r.id = p.recipient_id
         RETURNING p.recipient_id, r.message_id",
        sim_id,
        reference,
        delivered,
        status
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(reported.map(|r| (r.recipient_id, r.message_id)))
}

/// `sent` → `delivered` once every part of the recipient was reported delivered.
pub async fn mark_delivered_if_complete(
    tx: &mut Transaction<'_, Postgres>,
    recipient_id: i64,
) -> Result<Option<ChangedRecipient>, sqlx::Error> {
    sqlx::query_as!(
        ChangedRecipient,
        r#"UPDATE recipients SET status = 'delivered', delivered_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'sent'
           AND NOT EXISTS (SELECT 1 FROM sim_part_refs
                           WHERE recipient_id = $1 AND delivered_at IS NULL)
         RETURNING id, message_id, phone, status AS "status: RecipientStatus", attempts, last_error"#,
        recipient_id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// A report that the network gave up on a part: the recipient stays `sent` (the states
/// only move forward) but carries the reason.
pub async fn note_delivery_failure(
    tx: &mut Transaction<'_, Postgres>,
    recipient_id: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE recipients SET last_error = $2, updated_at = now() WHERE id = $1",
        recipient_id,
        reason
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A received SMS as stored.
pub struct StoredInbound {
    pub id: i64,
    pub sim_card_id: Option<i64>,
    pub sim_number: String,
}

/// Stores a received SMS once per dedupe key; `None` when it was stored before. The SIM
/// may have been deleted meanwhile: the row then keeps no SIM id and an empty number.
#[allow(clippy::too_many_arguments)]
pub async fn insert_inbound(
    tx: &mut Transaction<'_, Postgres>,
    sim_id: i64,
    key: &str,
    sender: &str,
    content: &str,
    parts: i16,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
    received_at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<StoredInbound>, sqlx::Error> {
    sqlx::query_as!(
        StoredInbound,
        "INSERT INTO inbound_messages
             (sim_card_id, sim_number, sender, content, parts, sent_at, received_at, dedupe_key)
         SELECT s.id, COALESCE(s.number, ''), $3, $4, $5, $6, $7, $2
         FROM (SELECT 1) AS one LEFT JOIN sim_cards s ON s.id = $1
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id, sim_card_id, sim_number",
        sim_id,
        key,
        sender,
        content,
        parts,
        sent_at,
        received_at
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Records a heartbeat; returns the SIM's registered number, `None` for an unknown SIM.
/// The time is the server's, not the Pi's: a Pi has no real-time clock and may run before
/// NTP set it.
pub async fn record_heartbeat(
    db: &PgPool,
    sim_id: i64,
    signal: Option<i16>,
    registration: &str,
    operator: Option<&str>,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE sim_cards SET last_heartbeat_at = now(), signal = $2, registration = $3, operator = $4
         WHERE id = $1 RETURNING number",
        sim_id,
        signal,
        registration,
        operator
    )
    .fetch_optional(db)
    .await
}

pub async fn message_progress(
    tx: &mut Transaction<'_, Postgres>,
    message_id: i64,
) -> Result<Option<MessageProgress>, sqlx::Error> {
    sqlx::query_as!(
        MessageProgress,
        r#"SELECT m.id, m.status AS "status: MessageStatus", m.total_count, m.sent_count,
                m.failed_count, m.cancelled_count, m.expired_count, m.opted_out_count,
                EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                    AS "has_webhooks!"
         FROM messages m WHERE m.id = $1"#,
        message_id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Where a SIM job's recipient stands, locked until the transaction ends: its message, its
/// status, the SIM its job was released to (the releaser records it before publishing) and
/// what a retry needs.
pub struct SimJobState {
    pub message_id: i64,
    pub status: RecipientStatus,
    pub sim_card_id: Option<i64>,
    pub phone: String,
    pub content: String,
    pub valid_until: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn lock_sim_job(
    tx: &mut Transaction<'_, Postgres>,
    recipient_id: i64,
) -> Result<Option<SimJobState>, sqlx::Error> {
    sqlx::query_as!(
        SimJobState,
        r#"SELECT r.message_id, r.status AS "status: RecipientStatus", r.sim_card_id, r.phone,
                  m.content, m.valid_until
         FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.id = $1
         FOR UPDATE OF r"#,
        recipient_id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Notes a transient failure of a SIM job whose next attempt was scheduled: the recipient
/// stays pending, with the attempt count and the reason for `GET /api/sms/{id}`.
pub async fn note_sim_retry(
    tx: &mut Transaction<'_, Postgres>,
    recipient_id: i64,
    attempts: i32,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE recipients SET attempts = GREATEST(attempts, $2), last_error = $3, updated_at = now()
         WHERE id = $1 AND status = 'pending'",
        recipient_id,
        attempts,
        error
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An edge event the ingest refused, in the audit log (actor: the system).
pub async fn audit_rejection(
    db: &PgPool,
    target: &str,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (actor_id, action, target, details)
         VALUES (NULL, 'edge.event_rejected', $1, $2)",
        target,
        details
    )
    .execute(db)
    .await?;
    Ok(())
}
