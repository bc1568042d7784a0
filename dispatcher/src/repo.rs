//! SQL of the dispatcher: status lookups for a batch of jobs, the batched result write and
//! the global rate limit's slot reservation.

use std::collections::HashMap;

use smsgate_shared::domain::{MessageStatus, RecipientStatus};
use smsgate_shared::queue::{RecipientUpdate, StatusEvent};
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

/// The results as the UNNEST of a result write takes them: ids, statuses, errors, responses.
#[allow(clippy::type_complexity)]
fn result_columns(
    rows: &[ResultRow],
) -> (Vec<i64>, Vec<&str>, Vec<Option<&str>>, Vec<Option<&str>>) {
    (
        rows.iter().map(|r| r.recipient_id).collect(),
        rows.iter().map(|r| r.status.as_str()).collect(),
        rows.iter().map(|r| r.error.as_deref()).collect(),
        rows.iter().map(|r| r.response.as_deref()).collect(),
    )
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
    pub cancelled_count: i32,
    pub expired_count: i32,
    pub opted_out_count: i32,
    /// Whether its owner has an active webhook: events are serialised only for those.
    pub has_webhooks: bool,
}

impl MessageProgress {
    /// The status event that reports this progress with the recipients that changed.
    pub fn event(&self, recipients: Vec<RecipientUpdate>) -> StatusEvent {
        StatusEvent::MessageProgressV1 {
            message_id: self.id,
            status: self.status,
            total: i64::from(self.total_count),
            sent: i64::from(self.sent_count),
            failed: i64::from(self.failed_count),
            cancelled: i64::from(self.cancelled_count),
            expired: i64::from(self.expired_count),
            opted_out: i64::from(self.opted_out_count),
            recipients,
        }
    }
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
    let (ids, statuses, errors, responses) = result_columns(rows);
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

/// Counts a batch's results into their messages, per message. A field per outcome.
#[derive(Debug, Default, Clone, Copy)]
pub struct CounterDelta {
    pub sent: i32,
    pub failed: i32,
    pub expired: i32,
    /// Recipients a cancel marked `cancelled` while their request was in flight, whose
    /// result (counted in `sent` or `failed`) is now recorded instead.
    pub uncancelled: i32,
}

/// Records the gateway's answer for recipients a cancel marked `cancelled` while their
/// request was already in flight (it passed its last look before the cancel committed):
/// the SMS went out, or failed, and the record says so. Only final answers; a retry of a
/// cancelled recipient stays cancelled. Rarely has anything to do: callers pass only the
/// rows the first update left unchanged.
pub async fn record_in_flight_at_cancel(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[ResultRow],
) -> Result<Vec<ChangedRecipient>, sqlx::Error> {
    let (ids, statuses, errors, responses) = result_columns(rows);
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
         WHERE r.id = i.id AND r.status = 'cancelled' AND i.status IN ('sent', 'failed')
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

/// Adds a batch's results to the current minute's traffic counts (the dashboard's chart
/// and the measured send rate), in one of eight shards so dispatchers rarely share a row.
pub async fn count_traffic(
    tx: &mut Transaction<'_, Postgres>,
    shard: i16,
    sent: i32,
    failed: i32,
    expired: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO traffic_minutes AS t (minute, shard, sent, failed, expired)
         VALUES (date_trunc('minute', now()), $1, $2, $3, $4)
         ON CONFLICT (minute, shard) DO UPDATE
             SET sent = t.sent + EXCLUDED.sent, failed = t.failed + EXCLUDED.failed,
                 expired = t.expired + EXCLUDED.expired",
        shard,
        sent,
        failed,
        expired
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds each message's new sent/failed/expired counts and derives its status once per
/// batch (SQL `message_status_of`, as `MessageStatus::from_tally`): `sending` while
/// recipients remain, then `sent`, `failed`, `expired` or `partial`. A cancelled message
/// keeps its status; its counters still take what requests in flight at the cancel recorded.
pub async fn update_message_counters(
    tx: &mut Transaction<'_, Postgres>,
    message_ids: &[i64],
    deltas: &[CounterDelta],
) -> Result<Vec<MessageProgress>, sqlx::Error> {
    let sent: Vec<i32> = deltas.iter().map(|d| d.sent).collect();
    let failed: Vec<i32> = deltas.iter().map(|d| d.failed).collect();
    let expired: Vec<i32> = deltas.iter().map(|d| d.expired).collect();
    let uncancelled: Vec<i32> = deltas.iter().map(|d| d.uncancelled).collect();
    sqlx::query_as!(
        MessageProgress,
        r#"UPDATE messages m SET
             sent_count = m.sent_count + d.sent,
             failed_count = m.failed_count + d.failed,
             expired_count = m.expired_count + d.expired,
             cancelled_count = m.cancelled_count - d.uncancelled,
             status = message_status_of(m.status, m.total_count, m.sent_count + d.sent,
                 m.failed_count + d.failed, m.cancelled_count - d.uncancelled,
                 m.expired_count + d.expired, m.opted_out_count),
             completed_at = CASE
                 WHEN m.status = 'cancelled' THEN m.completed_at
                 WHEN m.sent_count + d.sent + m.failed_count + d.failed + m.cancelled_count
                      - d.uncancelled + m.expired_count + d.expired + m.opted_out_count
                      >= m.total_count
                     THEN COALESCE(m.completed_at, now())
                 ELSE NULL END
         FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[], $5::int[])
              AS d(id, sent, failed, expired, uncancelled)
         WHERE m.id = d.id
         RETURNING m.id, m.status AS "status: MessageStatus", m.total_count, m.sent_count,
                   m.failed_count, m.cancelled_count, m.expired_count, m.opted_out_count,
                   EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                       AS "has_webhooks!""#,
        message_ids,
        &sent,
        &failed,
        &expired,
        &uncancelled
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
