//! SQL for history. The search is built with `QueryBuilder` because its filters are
//! optional, so it is checked at run time only (docs/architecture.md, "SQL checked at
//! compile time"); every value is a bind parameter. The other statements are macros.

use chrono::{DateTime, Utc};
use smsgate_shared::domain::{MessageStatus, Priority, RecipientStatus};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

use crate::outbox::hold_in_outbox;

/// A message row of a history page; the content is cut to a preview in SQL, so a page of
/// long texts stays small.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub preview: String,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
    pub created_at: DateTime<Utc>,
}

/// Everything the detail page shows about a message.
#[derive(Debug, Clone)]
pub struct MessageDetailRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub content: String,
    pub encoding: String,
    pub segments: i32,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub expired_count: i32,
    pub opted_out_count: i32,
    pub priority: Priority,
    /// `hkt` or `sim.<id>`.
    pub route: String,
    pub send_at: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct RecipientRow {
    pub id: i64,
    pub phone: String,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Filters already parsed into SQL-ready values (built by `HistoryFilter::to_sql`).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub user_id: Option<i64>,
    pub status: Option<MessageStatus>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// A LIKE pattern, already escaped and wrapped in `%`.
    pub content_like: Option<String>,
    /// E.164.
    pub phone: Option<String>,
}

/// Which side of a cursor to read.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Older than the cursor, newest first (the default reading order).
    Older,
    /// Newer than the cursor, read oldest first and reversed by the caller.
    Newer,
}

/// One page in keyset order `(created_at DESC, id DESC)`: every filter keeps an index on
/// that order usable (see the migrations), so page 1,000 costs what page 1 costs.
pub async fn search_messages(
    db: &PgPool,
    filter: &Filter,
    cursor: Option<(DateTime<Utc>, i64)>,
    direction: Direction,
    limit: i64,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT m.id, m.user_id, u.username, left(m.content, 160) AS preview, m.status,
                m.total_count, m.sent_count, m.failed_count, m.created_at
         FROM messages m JOIN users u ON u.id = m.user_id WHERE TRUE",
    );
    if let Some(user_id) = filter.user_id {
        q.push(" AND m.user_id = ").push_bind(user_id);
    }
    if let Some(status) = filter.status {
        q.push(" AND m.status = ").push_bind(status.as_str());
    }
    if let Some(from) = filter.from {
        q.push(" AND m.created_at >= ").push_bind(from);
    }
    if let Some(until) = filter.until {
        q.push(" AND m.created_at < ").push_bind(until);
    }
    if let Some(pattern) = &filter.content_like {
        q.push(" AND m.content ILIKE ").push_bind(pattern.clone());
    }
    if let Some(phone) = &filter.phone {
        q.push(" AND m.id IN (SELECT r.message_id FROM recipients r WHERE r.phone = ")
            .push_bind(phone.clone())
            .push(")");
    }
    if let Some((at, id)) = cursor {
        let op = match direction {
            Direction::Older => " < ",
            Direction::Newer => " > ",
        };
        q.push(" AND (m.created_at, m.id)")
            .push(op)
            .push("(")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(match direction {
        Direction::Older => " ORDER BY m.created_at DESC, m.id DESC LIMIT ",
        Direction::Newer => " ORDER BY m.created_at ASC, m.id ASC LIMIT ",
    })
    .push_bind(limit);
    q.build_query_as().fetch_all(db).await
}

/// Messages matching `filter` before `before` in `(created_at DESC, id DESC)` order,
/// skipping `offset`: numbered pages pass [`START`] and an offset, the export walks the
/// keyset with offset 0. The same conditions as [`search_messages`], as a macro: each is
/// switched off by a NULL, and the keyset bound is always a real value, so it stays an
/// index condition in a generic plan too.
pub async fn list_matching(
    db: &PgPool,
    filter: &Filter,
    before: (DateTime<Utc>, i64),
    limit: i64,
    offset: i64,
) -> Result<Vec<MessageDetailRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageDetailRow,
        r#"SELECT m.id, m.user_id, u.username, m.content, m.encoding, m.segments,
                m.status AS "status: MessageStatus",
                m.total_count, m.sent_count, m.failed_count, m.cancelled_count, m.expired_count,
                m.opted_out_count,
                m.priority AS "priority: Priority", m.route, m.send_at, m.valid_until,
                m.created_at, m.completed_at
         FROM messages m JOIN users u ON u.id = m.user_id
         WHERE ($1::bigint IS NULL OR m.user_id = $1)
           AND ($2::text IS NULL OR m.status = $2)
           AND ($3::timestamptz IS NULL OR m.created_at >= $3)
           AND ($4::timestamptz IS NULL OR m.created_at < $4)
           AND ($5::text IS NULL OR m.content ILIKE $5)
           AND ($6::text IS NULL OR m.id IN (SELECT r.message_id FROM recipients r WHERE r.phone = $6))
           AND (m.created_at, m.id) < ($7, $8)
         ORDER BY m.created_at DESC, m.id DESC LIMIT $9 OFFSET $10"#,
        filter.user_id,
        filter.status.map(|s| s.as_str()),
        filter.from,
        filter.until,
        filter.content_like,
        filter.phone,
        before.0,
        before.1,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

/// Where the `(created_at DESC, id DESC)` order starts: after every stored message.
pub const START: (DateTime<Utc>, i64) = (DateTime::<Utc>::MAX_UTC, i64::MAX);

/// How many messages match `filter` (the conditions of [`list_matching`]).
pub async fn count_matching(db: &PgPool, filter: &Filter) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM messages m
         WHERE ($1::bigint IS NULL OR m.user_id = $1)
           AND ($2::text IS NULL OR m.status = $2)
           AND ($3::timestamptz IS NULL OR m.created_at >= $3)
           AND ($4::timestamptz IS NULL OR m.created_at < $4)
           AND ($5::text IS NULL OR m.content ILIKE $5)
           AND ($6::text IS NULL OR m.id IN (SELECT r.message_id FROM recipients r WHERE r.phone = $6))"#,
        filter.user_id,
        filter.status.map(|s| s.as_str()),
        filter.from,
        filter.until,
        filter.content_like,
        filter.phone,
    )
    .fetch_one(db)
    .await
}

/// A recipient with everything the CSV export shows.
#[derive(Debug, Clone)]
pub struct ExportedRecipient {
    pub id: i64,
    pub phone: String,
    pub status: RecipientStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The gateway's answer (HKT's body excerpt, or what the SIM's agent reported).
    pub gateway_response: Option<String>,
    pub sim_card_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The next `limit` recipients of a message with ids above `after`, by
/// `recipients_message_idx (message_id, id)`: each batch of an export costs the same.
pub async fn recipients_after(
    db: &PgPool,
    message_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<ExportedRecipient>, sqlx::Error> {
    sqlx::query_as!(
        ExportedRecipient,
        r#"SELECT id, phone, status AS "status: RecipientStatus", attempts, last_error,
                gateway_response, sim_card_id, created_at, updated_at, sent_at, delivered_at
         FROM recipients WHERE message_id = $1 AND id > $2 ORDER BY id LIMIT $3"#,
        message_id,
        after,
        limit
    )
    .fetch_all(db)
    .await
}

pub async fn find_message(db: &PgPool, id: i64) -> Result<Option<MessageDetailRow>, sqlx::Error> {
    sqlx::query_as!(
        MessageDetailRow,
        r#"SELECT m.id, m.user_id, u.username, m.content, m.encoding, m.segments,
                m.status AS "status: MessageStatus",
                m.total_count, m.sent_count, m.failed_count, m.cancelled_count, m.expired_count,
                m.opted_out_count,
                m.priority AS "priority: Priority", m.route, m.send_at, m.valid_until,
                m.created_at, m.completed_at
         FROM messages m JOIN users u ON u.id = m.user_id WHERE m.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// Recipients by id, after (`Older`: ids above `cursor`) or before (`Newer`: ids below) it,
/// served by `recipients_message_idx (message_id, id)`.
pub async fn list_recipients(
    db: &PgPool,
    message_id: i64,
    cursor: Option<i64>,
    direction: Direction,
    limit: i64,
) -> Result<Vec<RecipientRow>, sqlx::Error> {
    match direction {
        Direction::Older => {
            sqlx::query_as!(
                RecipientRow,
                r#"SELECT id, phone, status AS "status: RecipientStatus", attempts, last_error, updated_at
                 FROM recipients
                 WHERE message_id = $1 AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $3"#,
                message_id,
                cursor,
                limit
            )
            .fetch_all(db)
            .await
        }
        Direction::Newer => {
            sqlx::query_as!(
                RecipientRow,
                r#"SELECT id, phone, status AS "status: RecipientStatus", attempts, last_error, updated_at
                 FROM recipients
                 WHERE message_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"#,
                message_id,
                cursor,
                limit
            )
            .fetch_all(db)
            .await
        }
    }
}

/// Recipient figures of the messages created since `since`: (sent, failed, pending).
/// Cancelled and expired recipients are none of the three: they will not be sent.
pub async fn counts_since(
    db: &PgPool,
    since: DateTime<Utc>,
    user_id: Option<i64>,
) -> Result<(i64, i64, i64), sqlx::Error> {
    let counts = sqlx::query!(
        r#"SELECT coalesce(sum(sent_count), 0)::bigint AS "sent!",
                coalesce(sum(failed_count), 0)::bigint AS "failed!",
                coalesce(sum(total_count - sent_count - failed_count - cancelled_count
                             - expired_count - opted_out_count), 0)::bigint AS "pending!"
         FROM messages WHERE created_at >= $1 AND ($2::bigint IS NULL OR user_id = $2)"#,
        since,
        user_id
    )
    .fetch_one(db)
    .await?;
    Ok((counts.sent, counts.failed, counts.pending))
}

/// Locks the message row against the dispatcher's result writer (which locks it too) and
/// returns its content, status and counters.
/// What retrying a message needs to know, read under the row lock.
#[derive(Debug)]
pub struct LockedMessage {
    pub content: String,
    /// `hkt` or `sim.<id>`: retried jobs go out the way the message went.
    pub route: String,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
}

pub async fn lock_message(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<Option<LockedMessage>, sqlx::Error> {
    sqlx::query_as!(
        LockedMessage,
        r#"SELECT content, route, status AS "status: MessageStatus", total_count, sent_count, failed_count
         FROM messages WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Puts failed recipients back to `pending` (all of the message's, or only `only`), with
/// no SIM: the releaser places them again, as it skips recipients already placed.
pub async fn reset_failed(
    tx: &mut Transaction<'_, Postgres>,
    message_id: i64,
    only: Option<&[i64]>,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let reset = sqlx::query!(
        "UPDATE recipients SET status = 'pending', updated_at = now(), sim_card_id = NULL
         WHERE message_id = $1 AND status = 'failed' AND ($2::bigint[] IS NULL OR id = ANY($2))
         RETURNING id, phone",
        message_id,
        only as Option<&[i64]>
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(reset.into_iter().map(|r| (r.id, r.phone)).collect())
}

/// Gives back `retried` failures to the message, sets its status, clears its completion and
/// puts it back in the release queue, which publishes the recipients now pending again.
pub async fn reopen_message(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    retried: i32,
    status: MessageStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE messages SET failed_count = failed_count - $2, status = $3, completed_at = NULL
         WHERE id = $1",
        id,
        retried,
        status.as_str()
    )
    .execute(&mut **tx)
    .await?;
    hold_in_outbox(tx, id).await
}

/// Closes the open dead letters of recipients that are being sent again.
pub async fn resolve_dead_letters(
    tx: &mut Transaction<'_, Postgres>,
    recipient_ids: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE dead_letters SET resolved_at = now(), resolution = 'retried'
         WHERE recipient_id = ANY($1) AND resolved_at IS NULL",
        recipient_ids
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A scheduled message as the scheduled list shows it.
#[derive(Debug, Clone)]
pub struct ScheduledRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub preview: String,
    pub priority: Priority,
    pub total_count: i32,
    pub send_at: DateTime<Utc>,
}

/// Scheduled messages in `(send_at, id)` order after (`Older`: later than) or before
/// (`Newer`: earlier than, read backwards) the cursor; served by `messages_scheduled_idx`,
/// which holds only scheduled rows.
pub async fn list_scheduled(
    db: &PgPool,
    user_id: Option<i64>,
    cursor: Option<(DateTime<Utc>, i64)>,
    direction: Direction,
    limit: i64,
) -> Result<Vec<ScheduledRow>, sqlx::Error> {
    let (at, id) = cursor.unzip();
    match direction {
        Direction::Older => {
            sqlx::query_as!(
                ScheduledRow,
                r#"SELECT m.id, m.user_id, u.username, left(m.content, 160) AS "preview!",
                        m.priority AS "priority: Priority", m.total_count, m.send_at AS "send_at!"
                 FROM messages m JOIN users u ON u.id = m.user_id
                 WHERE m.status = 'scheduled' AND ($1::bigint IS NULL OR m.user_id = $1)
                   AND ($2::timestamptz IS NULL OR (m.send_at, m.id) > ($2, $3))
                 ORDER BY m.send_at, m.id LIMIT $4"#,
                user_id,
                at,
                id,
                limit
            )
            .fetch_all(db)
            .await
        }
        Direction::Newer => {
            sqlx::query_as!(
                ScheduledRow,
                r#"SELECT m.id, m.user_id, u.username, left(m.content, 160) AS "preview!",
                        m.priority AS "priority: Priority", m.total_count, m.send_at AS "send_at!"
                 FROM messages m JOIN users u ON u.id = m.user_id
                 WHERE m.status = 'scheduled' AND ($1::bigint IS NULL OR m.user_id = $1)
                   AND ($2::timestamptz IS NULL OR (m.send_at, m.id) < ($2, $3))
                 ORDER BY m.send_at DESC, m.id DESC LIMIT $4"#,
                user_id,
                at,
                id,
                limit
            )
            .fetch_all(db)
            .await
        }
    }
}

/// Gateway results of one minute, summed over the dispatchers' shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficMinute {
    pub minute: DateTime<Utc>,
    pub sent: i64,
    pub failed: i64,
}

/// Per-minute results since `since`, oldest first; minutes without a row had none.
pub async fn traffic_since(
    db: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<TrafficMinute>, sqlx::Error> {
    sqlx::query_as!(
        TrafficMinute,
        r#"SELECT minute, sum(sent)::bigint AS "sent!", sum(failed)::bigint AS "failed!"
         FROM traffic_minutes WHERE minute >= $1
         GROUP BY minute ORDER BY minute"#,
        since
    )
    .fetch_all(db)
    .await
}

/// Recipients waiting at one minute, as the releaser sampled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogMinute {
    pub minute: DateTime<Utc>,
    pub pending: i64,
}

/// Backlog samples since `since`, oldest first; a missing minute was not sampled.
pub async fn backlog_since(
    db: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<BacklogMinute>, sqlx::Error> {
    sqlx::query_as!(
        BacklogMinute,
        "SELECT minute, pending FROM backlog_minutes WHERE minute >= $1 ORDER BY minute",
        since
    )
    .fetch_all(db)
    .await
}
