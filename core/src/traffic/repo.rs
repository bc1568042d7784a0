//! SQL of cancel, ETA and queue status.

use chrono::{DateTime, Utc};
use smsgate_shared::domain::{MessageStatus, Priority};
use sqlx::{PgConnection, PgPool};

use crate::progress::MessageTally;

pub struct LockedMessage {
    pub user_id: i64,
    pub status: MessageStatus,
}

/// The message's owner and status, unlocked: see [`cancel_recipients`] for the order
/// locks are taken in.
pub async fn find_message(
    conn: &mut PgConnection,
    message_id: i64,
) -> Result<Option<LockedMessage>, sqlx::Error> {
    sqlx::query_as!(
        LockedMessage,
        r#"SELECT user_id, status AS "status: MessageStatus" FROM messages WHERE id = $1"#,
        message_id
    )
    .fetch_optional(conn)
    .await
}

pub async fn lock_message(
    conn: &mut PgConnection,
    message_id: i64,
) -> Result<Option<LockedMessage>, sqlx::Error> {
    sqlx::query_as!(
        LockedMessage,
        r#"SELECT user_id, status AS "status: MessageStatus" FROM messages WHERE id = $1 FOR UPDATE"#,
        message_id
    )
    .fetch_optional(conn)
    .await
}

pub async fn tally(conn: &mut PgConnection, message_id: i64) -> Result<MessageTally, sqlx::Error> {
    sqlx::query_as!(
        MessageTally,
        r#"SELECT m.id, m.status AS "status: MessageStatus", m.total_count, m.sent_count,
                m.failed_count, m.cancelled_count, m.expired_count, m.opted_out_count,
                EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                    AS "has_webhooks!"
         FROM messages m WHERE m.id = $1"#,
        message_id
    )
    .fetch_one(conn)
    .await
}

/// Takes the message out of the release queue, so no more of it is published. First of a
/// cancel's locks, as it is first of the releaser's expiry.
pub async fn leave_release_queue(
    conn: &mut PgConnection,
    message_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM message_outbox WHERE message_id = $1",
        message_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks every pending recipient of the message `cancelled`, in id order (the
/// dispatchers' result writes lock recipients in id order and then their message; taking
/// them in the same order means a cancel and a result batch never deadlock). Returns how
/// many it cancelled.
pub async fn cancel_recipients(
    conn: &mut PgConnection,
    message_id: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH c AS (
             UPDATE recipients SET status = 'cancelled', updated_at = now(),
                    last_error = 'cancelled before it was sent'
             WHERE id IN (SELECT id FROM recipients
                          WHERE message_id = $1 AND status = 'pending'
                          ORDER BY id FOR UPDATE)
             RETURNING 1)
         SELECT count(*) AS "cancelled!" FROM c"#,
        message_id
    )
    .fetch_one(conn)
    .await
}

/// Marks the (locked) message cancelled with `recipients` more cancelled.
pub async fn mark_cancelled(
    conn: &mut PgConnection,
    message_id: i64,
    recipients: i64,
) -> Result<MessageTally, sqlx::Error> {
    sqlx::query!(
        "UPDATE messages SET status = 'cancelled', completed_at = now(),
                cancelled_count = cancelled_count + $2
         WHERE id = $1",
        message_id,
        recipients as i32
    )
    .execute(&mut *conn)
    .await?;
    tally(conn, message_id).await
}

/// Recipients waiting on the HKT route, per (priority, user), with the user's weight:
/// what an ETA divides the gateway's rate by.
#[derive(Debug, Clone)]
pub struct WaitingGroup {
    pub priority: Priority,
    pub user_id: i64,
    pub weight: i32,
    pub recipients: i64,
}

pub async fn waiting_groups(db: &PgPool) -> Result<Vec<WaitingGroup>, sqlx::Error> {
    sqlx::query_as!(
        WaitingGroup,
        r#"SELECT m.priority AS "priority: Priority", m.user_id, u.share_weight AS weight,
                sum(m.total_count - m.sent_count - m.failed_count - m.cancelled_count
                    - m.expired_count - m.opted_out_count)::bigint AS "recipients!"
         FROM messages m JOIN users u ON u.id = m.user_id
         WHERE m.status IN ('pending', 'sending') AND m.route = 'hkt'
         GROUP BY 1, 2, 3"#
    )
    .fetch_all(db)
    .await
}

/// Recipients of `user_id`'s messages in `priority` on HKT that go before or with message
/// `message_id` (a user's messages go oldest first).
pub async fn waiting_through(
    db: &PgPool,
    user_id: i64,
    priority: Priority,
    message_id: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(total_count - sent_count - failed_count - cancelled_count
                            - expired_count - opted_out_count), 0)::bigint AS "n!"
         FROM messages
         WHERE user_id = $1 AND priority = $2 AND id <= $3 AND route = 'hkt'
           AND status IN ('pending', 'sending')"#,
        user_id,
        priority.as_str(),
        message_id
    )
    .fetch_one(db)
    .await
}

/// Gateway results a second over the last full minute (all dispatchers).
pub async fn measured_rate(db: &PgPool) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(sent + failed), 0)::float8 / 60.0 AS "rate!"
         FROM traffic_minutes
         WHERE minute = date_trunc('minute', now()) - interval '1 minute'"#
    )
    .fetch_one(db)
    .await
}

/// Counts for the queue status.
pub struct QueueCounts {
    pub pending_messages: i64,
    pub sending_messages: i64,
    pub scheduled_messages: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

pub async fn queue_counts(db: &PgPool) -> Result<QueueCounts, sqlx::Error> {
    sqlx::query_as!(
        QueueCounts,
        r#"SELECT count(*) FILTER (WHERE status = 'pending') AS "pending_messages!",
                count(*) FILTER (WHERE status = 'sending') AS "sending_messages!",
                count(*) FILTER (WHERE status = 'scheduled') AS "scheduled_messages!",
                min(created_at) FILTER (WHERE status IN ('pending', 'sending')) AS oldest_pending_at
         FROM messages WHERE status IN ('pending', 'sending', 'scheduled')"#
    )
    .fetch_one(db)
    .await
}
