//! SQL of the dispatcher: status lookups for a batch of jobs, the batched result write and
//! the global rate limit's slot reservation.

use std::collections::HashMap;

use smsgate_shared::domain::{MessageStatus, RecipientStatus};
use sqlx::{PgPool, Postgres, Transaction};

/// Current status of each recipient in `ids` (missing ids were deleted with their message).
pub async fn recipient_statuses(
    db: &PgPool,
    ids: &[i64],
) -> Result<HashMap<i64, RecipientStatus>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, status AS "status: RecipientStatus" FROM recipients WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.status)).collect())
}

/// One recipient's result as the batch writes it. `status` is `pending` for a retry.
pub struct ResultRow {
    pub recipient_id: i64,
    pub status: RecipientStatus,
    pub error: Option<String>,
    pub response: Option<String>,
}

/// A recipient row a write actually changed (a result batch, a SIM result, a delivery
/// report).
#[derive(Debug)]
pub struct ChangedRecipient {
    pub id: i64,
    pub message_id: i64,
    /// E.164; webhooks carry it so that senders can match results to their own lists.
    pub phone: String,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// A message's counters after the batch. Statements that return it compute `has_webhooks`
/// as `EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)` over
/// `messages m`: an index probe per message, so that users without webhooks pay no JSON
/// for them.
#[derive(Debug)]
pub struct MessageProgress {
    pub id: i64,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
    /// Whether its owner has an active webhook: events are serialised only for those.
    pub has_webhooks: bool,
}

/// Locks the batch's messages in id order, after its recipients are updated and just before
/// their counters are: two writers touching the same messages then queue up for the short
/// rest of their transactions instead of deadlocking on each other's rows.
pub async fn lock_messages(
    tx: &mut Transaction<'_, Postgres>,
    message_ids: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT id FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        message_ids
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(())
}

/// Writes every result in one statement. Only recipients still `pending` change, so a
/// duplicate job's result never counts twice. Rows are locked in the order of `rows`
/// (one index lookup per entry), so callers pass them sorted by id.
pub async fn update_recipients(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[ResultRow],
) -> Result<Vec<ChangedRecipient>, sqlx::Error> {
    let ids: Vec<i64> = rows.iter().map(|r| r.recipient_id).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let errors: Vec<Option<&str>> = rows.iter().map(|r| r.error.as_deref()).collect();
    let responses: Vec<Option<&str>> = rows.iter().map(|r| r.response.as_deref()).collect();
    sqlx::query_as!(
        ChangedRecipient,
        r#"UPDATE recipients r SET
             status = i.status,
             attempts = r.attempts + 1,
             last_error = i.error,
             gateway_response = COALESCE(i.response, r.gateway_response),
             updated_at = now(),
             sent_at = CASE WHEN i.status = 'sent' THEN now() ELSE r.sent_at END
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS i(id, status, error, response)
         WHERE r.id = i.id AND r.status = 'pending'
         RETURNING r.id, r.message_id, r.phone, r.status AS "status: RecipientStatus",
                   r.attempts, r.last_error"#,
        &ids,
        &statuses as &[&str],
        &errors as &[Option<&str>],
        &responses as &[Option<&str>]
    )
    .fetch_all(&mut **tx)
    .await
}

/// Adds each message's new sent/failed counts and derives its status once per batch:
/// `sending` while recipients remain, then `sent`, `failed` or `partial`.
pub async fn update_message_counters(
    tx: &mut Transaction<'_, Postgres>,
    message_ids: &[i64],
    sent_deltas: &[i32],
    failed_deltas: &[i32],
) -> Result<Vec<MessageProgress>, sqlx::Error> {
    sqlx::query_as!(
        MessageProgress,
        r#"UPDATE messages m SET
             sent_count = m.sent_count + d.sent,
             failed_count = m.failed_count + d.failed,
             status = CASE
                 WHEN m.sent_count + d.sent + m.failed_count + d.failed < m.total_count THEN 'sending'
                 WHEN m.failed_count + d.failed = 0 THEN 'sent'
                 WHEN m.sent_count + d.sent = 0 THEN 'failed'
                 ELSE 'partial' END,
             completed_at = CASE
                 WHEN m.sent_count + d.sent + m.failed_count + d.failed >= m.total_count THEN COALESCE(m.completed_at, now())
                 ELSE NULL END
         FROM unnest($1::bigint[], $2::int[], $3::int[]) AS d(id, sent, failed)
         WHERE m.id = d.id AND m.status NOT IN ('cancelled')
         RETURNING m.id, m.status AS "status: MessageStatus", m.total_count, m.sent_count,
                   m.failed_count,
                   EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                       AS "has_webhooks!""#,
        message_ids,
        sent_deltas,
        failed_deltas
    )
    .fetch_all(&mut **tx)
    .await
}

/// One dead letter per recipient that exhausted its retries.
pub struct DeadLetterRow {
    pub recipient_id: i64,
    pub message_id: i64,
    pub reason: String,
    pub attempts: i32,
    pub payload: serde_json::Value,
}

pub async fn insert_dead_letters(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[DeadLetterRow],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let recipient_ids: Vec<i64> = rows.iter().map(|r| r.recipient_id).collect();
    let message_ids: Vec<i64> = rows.iter().map(|r| r.message_id).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    let attempts: Vec<i32> = rows.iter().map(|r| r.attempts).collect();
    let payloads: Vec<serde_json::Value> = rows.iter().map(|r| r.payload.clone()).collect();
    sqlx::query!(
        "INSERT INTO dead_letters (recipient_id, message_id, reason, attempts, payload)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::jsonb[])",
        &recipient_ids,
        &message_ids,
        &reasons as &[&str],
        &attempts,
        &payloads
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reserves the next `span_secs` of the rate limit `name` (its row is created on first use)
/// and returns how far in the future, by the database's clock, the first reserved slot lies:
/// zero or a hair below when the schedule had fallen behind now.
pub async fn reserve_slots(db: &PgPool, name: &str, span_secs: f64) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO rate_limits AS r (name, next_slot) VALUES ($1, clock_timestamp() + make_interval(secs => $2))
         ON CONFLICT (name) DO UPDATE
             SET next_slot = greatest(r.next_slot, clock_timestamp()) + make_interval(secs => $2)
         RETURNING extract(epoch FROM (r.next_slot - make_interval(secs => $2) - clock_timestamp()))::float8 AS "wait!""#,
        name,
        span_secs
    )
    .fetch_one(db)
    .await
}
