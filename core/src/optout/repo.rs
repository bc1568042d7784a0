//! SQL of the opt-out list. One function per statement.

use smsgate_shared::domain::MessageStatus;
use sqlx::PgConnection;

/// A recipient a send found on the opt-out list, with its message's counters after it.
#[derive(Debug, Clone)]
pub struct OptedOut {
    pub recipient_id: i64,
    pub phone: String,
    pub message_id: i64,
    pub status: MessageStatus,
    pub total_count: i32,
    pub sent_count: i32,
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub expired_count: i32,
    pub opted_out_count: i32,
    pub has_webhooks: bool,
}

/// Puts `phone` on the global list because its owner replied with an opt-out keyword to
/// `sim_id`; false when it was on the global list already (the first reason stays).
pub async fn add_reply(
    conn: &mut PgConnection,
    phone: &str,
    sim_id: Option<i64>,
    inbound_id: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "INSERT INTO opt_outs (phone, user_id, source, sim_card_id, inbound_message_id)
         VALUES ($1, NULL, 'reply', $2, $3)
         ON CONFLICT ON CONSTRAINT opt_outs_phone_user_key DO NOTHING",
        phone,
        sim_id,
        inbound_id
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Takes `phone` off the global list if a reply put it there; an opt-out an admin or the
/// API made stays (an SMS does not overrule them). False when there was none to remove.
pub async fn remove_reply(conn: &mut PgConnection, phone: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM opt_outs WHERE phone = $1 AND user_id IS NULL AND source = 'reply'",
        phone
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Marks the pending recipients of `message_ids` whose number is listed (globally or by
/// the message's owner) `opted_out`, adds them to their messages' counters (deriving the
/// status) and takes them off the release queue's `unreleased` count; returns them. One
/// statement that looks each recipient up in the list by number: for sends with a few
/// recipients (see [`mark_listed_in_bulk`] for large ones).
pub async fn mark_listed_recipients(
    conn: &mut PgConnection,
    message_ids: &[i64],
) -> Result<Vec<OptedOut>, sqlx::Error> {
    sqlx::query_as!(
        OptedOut,
        r#"WITH hit AS (
             UPDATE recipients r SET status = 'opted_out', updated_at = now(),
                    last_error = 'the number is on the opt-out list'
             FROM messages m
             WHERE m.id = ANY($1) AND r.message_id = m.id AND r.status = 'pending'
               AND EXISTS (SELECT 1 FROM opt_outs o
                           WHERE o.phone = r.phone AND (o.user_id IS NULL OR o.user_id = m.user_id))
             RETURNING r.id, r.message_id, r.phone),
         counts AS (SELECT message_id, count(*)::int AS n FROM hit GROUP BY message_id),
         queue AS (
             UPDATE message_outbox o SET unreleased = GREATEST(o.unreleased - c.n, 0)
             FROM counts c WHERE o.message_id = c.message_id),
         tally AS (
             UPDATE messages m SET
                 opted_out_count = m.opted_out_count + c.n,
                 status = message_status_of(m.status, m.total_count, m.sent_count,
                     m.failed_count, m.cancelled_count, m.expired_count, m.opted_out_count + c.n),
                 completed_at = CASE
                     WHEN m.status <> 'cancelled'
                          AND m.sent_count + m.failed_count + m.cancelled_count + m.expired_count
                              + m.opted_out_count + c.n >= m.total_count
                         THEN COALESCE(m.completed_at, now())
                     ELSE m.completed_at END
             FROM counts c WHERE m.id = c.message_id
             RETURNING m.id, m.status, m.total_count, m.sent_count, m.failed_count,
                       m.cancelled_count, m.expired_count, m.opted_out_count,
                       EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                           AS has_webhooks)
         SELECT h.id AS recipient_id, h.phone, t.id AS message_id,
                t.status AS "status!: MessageStatus", t.total_count AS "total_count!",
                t.sent_count AS "sent_count!", t.failed_count AS "failed_count!",
                t.cancelled_count AS "cancelled_count!", t.expired_count AS "expired_count!",
                t.opted_out_count AS "opted_out_count!", t.has_webhooks AS "has_webhooks!"
         FROM hit h JOIN tally t ON t.id = h.message_id
         ORDER BY h.id"#,
        message_ids
    )
    .fetch_all(conn)
    .await
}

/// [`mark_listed_recipients`] for one large message: starts from the list (the global
/// rows and the owner's) and probes the message's recipients by (message, number), so a
/// 100,000-recipient bulk costs one probe per listed number instead of a list lookup per
/// recipient; with an empty list it costs next to nothing. The probe is a `LATERAL … LIMIT
/// 1` on purpose: as a plain join, the planner read all 100,000 recipients into a hash
/// (~100 ms) to match 1,000 listed numbers, because the message's rows are newer than its
/// statistics. (message_id, phone) is unique, so the limit drops nothing.
pub async fn mark_listed_in_bulk(
    conn: &mut PgConnection,
    message_id: i64,
    user_id: i64,
) -> Result<Vec<OptedOut>, sqlx::Error> {
    sqlx::query_as!(
        OptedOut,
        r#"WITH listed AS MATERIALIZED (
             SELECT phone FROM opt_outs WHERE user_id IS NULL
             UNION
             SELECT phone FROM opt_outs WHERE user_id = $2),
         found AS (
             SELECT f.id FROM listed l
             CROSS JOIN LATERAL (
                 SELECT id FROM recipients
                 WHERE message_id = $1 AND phone = l.phone AND status = 'pending'
                 LIMIT 1) f),
         hit AS (
             UPDATE recipients r SET status = 'opted_out', updated_at = now(),
                    last_error = 'the number is on the opt-out list'
             FROM found f
             WHERE r.id = f.id
             RETURNING r.id, r.message_id, r.phone),
         counts AS (SELECT message_id, count(*)::int AS n FROM hit GROUP BY message_id),
         queue AS (
             UPDATE message_outbox o SET unreleased = GREATEST(o.unreleased - c.n, 0)
             FROM counts c WHERE o.message_id = c.message_id),
         tally AS (
             UPDATE messages m SET
                 opted_out_count = m.opted_out_count + c.n,
                 status = message_status_of(m.status, m.total_count, m.sent_count,
                     m.failed_count, m.cancelled_count, m.expired_count, m.opted_out_count + c.n),
                 completed_at = CASE
                     WHEN m.status <> 'cancelled'
                          AND m.sent_count + m.failed_count + m.cancelled_count + m.expired_count
                              + m.opted_out_count + c.n >= m.total_count
                         THEN COALESCE(m.completed_at, now())
                     ELSE m.completed_at END
             FROM counts c WHERE m.id = c.message_id
             RETURNING m.id, m.status, m.total_count, m.sent_count, m.failed_count,
                       m.cancelled_count, m.expired_count, m.opted_out_count,
                       EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                           AS has_webhooks)
         SELECT h.id AS recipient_id, h.phone, t.id AS message_id,
                t.status AS "status!: MessageStatus", t.total_count AS "total_count!",
                t.sent_count AS "sent_count!", t.failed_count AS "failed_count!",
                t.cancelled_count AS "cancelled_count!", t.expired_count AS "expired_count!",
                t.opted_out_count AS "opted_out_count!", t.has_webhooks AS "has_webhooks!"
         FROM hit h JOIN tally t ON t.id = h.message_id
         ORDER BY h.id"#,
        message_id,
        user_id
    )
    .fetch_all(conn)
    .await
}

/// One entry of a list, as the opt-out API and page show it.
#[derive(Debug, Clone)]
pub struct ListedRow {
    pub phone: String,
    /// None: the global list.
    pub user_id: Option<i64>,
    pub source: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A page of `user_id`'s own list, newest first, of numbers containing `digits` if given.
pub async fn list_user(
    db: impl sqlx::PgExecutor<'_>,
    user_id: i64,
    digits: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ListedRow>, sqlx::Error> {
    sqlx::query_as!(
        ListedRow,
        "SELECT phone, user_id, source, created_at FROM opt_outs
         WHERE user_id = $1 AND ($2::text IS NULL OR strpos(phone, $2) > 0)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
        user_id,
        digits,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

pub async fn count_user(
    db: impl sqlx::PgExecutor<'_>,
    user_id: i64,
    digits: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM opt_outs
           WHERE user_id = $1 AND ($2::text IS NULL OR strpos(phone, $2) > 0)"#,
        user_id,
        digits
    )
    .fetch_one(db)
    .await
}

/// A page of the global list, newest first, of numbers containing `digits` if given.
pub async fn list_global(
    db: impl sqlx::PgExecutor<'_>,
    digits: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ListedRow>, sqlx::Error> {
    sqlx::query_as!(
        ListedRow,
        "SELECT phone, user_id, source, created_at FROM opt_outs
         WHERE user_id IS NULL AND ($1::text IS NULL OR strpos(phone, $1) > 0)
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
        digits,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

pub async fn count_global(
    db: impl sqlx::PgExecutor<'_>,
    digits: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM opt_outs
           WHERE user_id IS NULL AND ($1::text IS NULL OR strpos(phone, $1) > 0)"#,
        digits
    )
    .fetch_one(db)
    .await
}

/// Puts `phone` on `user_id`'s list (None: the global one) unless it is there; the new
/// row, or None when it was listed already.
pub async fn insert(
    conn: &mut PgConnection,
    phone: &str,
    user_id: Option<i64>,
    source: &str,
) -> Result<Option<ListedRow>, sqlx::Error> {
    sqlx::query_as!(
        ListedRow,
        r#"INSERT INTO opt_outs (phone, user_id, source) VALUES ($1, $2, $3)
           ON CONFLICT ON CONSTRAINT opt_outs_phone_user_key DO NOTHING
           RETURNING phone, user_id, source, created_at"#,
        phone,
        user_id,
        source
    )
    .fetch_optional(conn)
    .await
}

/// `phone`'s entry on `user_id`'s list (None: the global one).
pub async fn find(
    conn: &mut PgConnection,
    phone: &str,
    user_id: Option<i64>,
) -> Result<Option<ListedRow>, sqlx::Error> {
    sqlx::query_as!(
        ListedRow,
        "SELECT phone, user_id, source, created_at FROM opt_outs
         WHERE phone = $1 AND user_id IS NOT DISTINCT FROM $2",
        phone,
        user_id
    )
    .fetch_optional(conn)
    .await
}

/// Takes `phone` off `user_id`'s list (None: the global one), whatever put it there; the
/// removed entry's source, or None when it was not listed.
pub async fn delete(
    conn: &mut PgConnection,
    phone: &str,
    user_id: Option<i64>,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "DELETE FROM opt_outs WHERE phone = $1 AND user_id IS NOT DISTINCT FROM $2
         RETURNING source",
        phone,
        user_id
    )
    .fetch_optional(conn)
    .await
}

/// Puts every number of `phones` on `user_id`'s list (None: the global one) in one
/// statement; how many were not listed before.
pub async fn insert_many(
    conn: &mut PgConnection,
    phones: &[String],
    user_id: Option<i64>,
    source: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "INSERT INTO opt_outs (phone, user_id, source)
         SELECT phone, $2, $3 FROM unnest($1::text[]) AS p(phone)
         ON CONFLICT ON CONSTRAINT opt_outs_phone_user_key DO NOTHING",
        phones,
        user_id,
        source
    )
    .execute(conn)
    .await?
    .rows_affected())
}
