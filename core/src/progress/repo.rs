//! SQL of the progress the API side announces.

use smsgate_shared::domain::MessageStatus;
use sqlx::PgConnection;

/// A message's counters after a change. Statements that return it compute `has_webhooks`
/// as `EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)`.
#[derive(Debug, Clone)]
pub struct MessageTally {
    pub id: i64,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub expired_count: i32,
    pub opted_out_count: i32,
    pub has_webhooks: bool,
}

/// One `message.status` delivery per (payload, active webhook of the message's owner that
/// subscribes to it).
pub async fn insert_status_deliveries(
    conn: &mut PgConnection,
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
    .execute(conn)
    .await?;
    Ok(())
}
