//! SQL of the release queue: `message_outbox` holds a row per message with recipients not
//! yet published, with what the releaser needs to choose (route, priority, user, due time,
//! validity) and how far it got (`released_through`).

use chrono::{DateTime, Utc};
use smsgate_shared::domain::{MessageStatus, Priority};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::progress::MessageTally;

/// Puts a message (back) in the release queue, inside the caller's transaction, for every
/// recipient of it still pending: a requeue of failed recipients, a SIM's messages moved
/// to another route. The accept statements insert their rows themselves.
pub async fn hold(tx: &mut Transaction<'_, Postgres>, message_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO message_outbox
             (message_id, user_id, priority, route, due_at, released_through, unreleased, valid_until)
         SELECT m.id, m.user_id, m.priority, m.route, now(), 0,
                (SELECT count(*) FROM recipients r
                 WHERE r.message_id = m.id AND r.status = 'pending')::int,
                m.valid_until
         FROM messages m WHERE m.id = $1
         ON CONFLICT (message_id) DO UPDATE
             SET released_through = 0, unreleased = EXCLUDED.unreleased, route = EXCLUDED.route",
        message_id
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes the lock that makes this connection's session the releaser of this database.
/// Held until the session ends: a releaser that dies lets another take over at once.
pub async fn try_lead(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock(hashtext('smsgate.releaser')) AS "locked!""#)
        .fetch_one(conn)
        .await
}

/// Scheduled messages whose time came: `pending` now; their rows in the release queue
/// became due at the same moment.
pub async fn release_due_scheduled(
    conn: &mut PgConnection,
) -> Result<Vec<MessageTally>, sqlx::Error> {
    sqlx::query_as!(
        MessageTally,
        r#"UPDATE messages m SET status = 'pending'
         WHERE m.status = 'scheduled' AND m.send_at <= now()
         RETURNING m.id, m.status AS "status: MessageStatus", m.total_count, m.sent_count,
                   m.failed_count, m.cancelled_count, m.expired_count, m.opted_out_count,
                   EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                       AS "has_webhooks!""#
    )
    .fetch_all(conn)
    .await
}

/// Messages whose validity ran out: their recipients not yet published become `expired`
/// and they leave the release queue. (Published ones are the dispatchers': their jobs
/// carry the validity and expire there. After a SIM's jobs were taken back, recipients
/// above the position may be queued at other SIMs: those, placed on a SIM, are not
/// expired here.)
pub async fn expire_unreleased(conn: &mut PgConnection) -> Result<Vec<MessageTally>, sqlx::Error> {
    sqlx::query_as!(
        MessageTally,
        r#"WITH gone AS (
             DELETE FROM message_outbox WHERE valid_until <= now()
             RETURNING message_id, released_through),
         expired AS (
             UPDATE recipients r SET status = 'expired', updated_at = now(),
                    last_error = 'validity ran out before it could be sent'
             FROM gone g
             WHERE r.message_id = g.message_id AND r.id > g.released_through AND r.status = 'pending'
               AND r.sim_card_id IS NULL
             RETURNING r.message_id),
         counts AS (SELECT message_id, count(*)::int AS n FROM expired GROUP BY message_id)
         UPDATE messages m SET
             expired_count = m.expired_count + c.n,
             status = message_status_of(m.status, m.total_count, m.sent_count, m.failed_count,
                                        m.cancelled_count, m.expired_count + c.n,
                                        m.opted_out_count),
             completed_at = CASE
                 WHEN m.sent_count + m.failed_count + m.cancelled_count + m.expired_count + c.n
                      + m.opted_out_count
                      >= m.total_count THEN COALESCE(m.completed_at, now())
                 ELSE m.completed_at END
         FROM counts c WHERE m.id = c.message_id AND m.status <> 'cancelled'
         RETURNING m.id, m.status AS "status: MessageStatus", m.total_count, m.sent_count,
                   m.failed_count, m.cancelled_count, m.expired_count, m.opted_out_count,
                   EXISTS (SELECT 1 FROM webhooks w WHERE w.user_id = m.user_id AND w.is_active)
                       AS "has_webhooks!""#
    )
    .fetch_all(conn)
    .await
}

/// A due message with recipients to publish.
#[derive(Debug)]
pub struct Candidate {
    pub message_id: i64,
    pub user_id: i64,
    pub priority: Priority,
    pub route: String,
    pub released_through: i64,
    pub unreleased: i32,
    pub weight: i32,
}

/// The oldest `per_group` due messages of every (route, priority, user) with any.
pub async fn candidates(
    conn: &mut PgConnection,
    per_group: i64,
) -> Result<Vec<Candidate>, sqlx::Error> {
    sqlx::query_as!(
        Candidate,
        r#"SELECT o.message_id, o.user_id, o.priority AS "priority: Priority", o.route,
                o.released_through, o.unreleased, u.share_weight AS weight
         FROM (SELECT DISTINCT route, priority, user_id FROM message_outbox
               WHERE due_at <= now()) g
         CROSS JOIN LATERAL (
             SELECT * FROM message_outbox o
             WHERE o.route = g.route AND o.priority = g.priority AND o.user_id = g.user_id
               AND o.due_at <= now()
             ORDER BY o.message_id
             LIMIT $1) o
         JOIN users u ON u.id = o.user_id"#,
        per_group
    )
    .fetch_all(conn)
    .await
}

/// A recipient to publish.
#[derive(Debug)]
pub struct Released {
    pub message_id: i64,
    pub id: i64,
    pub phone: String,
}

/// Up to `limits[i]` pending recipients of `message_ids[i]` with ids above `after[i]`, in
/// id order. Recipients already placed on a SIM are skipped: after a SIM's jobs were taken
/// back the position moves back, and the jobs still queued at other SIMs must not go twice.
pub async fn next_recipients(
    conn: &mut PgConnection,
    message_ids: &[i64],
    after: &[i64],
    limits: &[i32],
) -> Result<Vec<Released>, sqlx::Error> {
    sqlx::query_as!(
        Released,
        r#"SELECT t.message_id AS "message_id!", r.id, r.phone
         FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS t(message_id, after, lim)
         CROSS JOIN LATERAL (
             SELECT id, phone FROM recipients
             WHERE message_id = t.message_id AND id > t.after AND status = 'pending'
               AND sim_card_id IS NULL
             ORDER BY id LIMIT t.lim) r"#,
        message_ids,
        after,
        limits
    )
    .fetch_all(conn)
    .await
}

/// What the jobs of a message carry besides the recipient.
#[derive(Debug)]
pub struct JobTemplate {
    pub id: i64,
    pub content: String,
    pub valid_until: Option<DateTime<Utc>>,
    /// The accepting request's trace context.
    pub traceparent: Option<String>,
}

pub async fn job_templates(
    conn: &mut PgConnection,
    message_ids: &[i64],
) -> Result<Vec<JobTemplate>, sqlx::Error> {
    sqlx::query_as!(
        JobTemplate,
        "SELECT m.id, m.content, m.valid_until, o.traceparent
         FROM messages m LEFT JOIN message_outbox o ON o.message_id = m.id
         WHERE m.id = ANY($1)",
        message_ids
    )
    .fetch_all(conn)
    .await
}

/// Records what a round published: each message's new `released_through` and how many
/// went; a message whose recipients ran out (`exhausted`, or all counted out) leaves the
/// queue. Compares
/// `released_through` with what the round started from, so a requeue that reset it
/// meanwhile is not overwritten.
pub async fn advance(
    conn: &mut PgConnection,
    message_ids: &[i64],
    from: &[i64],
    through: &[i64],
    published: &[i32],
    exhausted: &[bool],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH a AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[], $5::bool[])
                 AS a(message_id, from_id, through, published, exhausted)),
         done AS (
             DELETE FROM message_outbox o USING a
             WHERE o.message_id = a.message_id AND o.released_through = a.from_id
               AND (a.exhausted OR o.unreleased <= a.published))
         UPDATE message_outbox o
         SET released_through = a.through, unreleased = o.unreleased - a.published
         FROM a
         WHERE o.message_id = a.message_id AND o.released_through = a.from_id
           AND NOT (a.exhausted OR o.unreleased <= a.published)",
        message_ids,
        from,
        through,
        published,
        exhausted
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Recipients waiting in one priority class (scheduled included), and how long the
/// oldest due message with any has waited (0 when none).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub priority: String,
    pub recipients: i64,
    pub oldest_secs: f64,
}

/// The backlog now, one row per priority class (classes with nothing waiting included):
/// what the metrics' gauges show and the dashboard's chart samples. A message is due from
/// its `send_at` (scheduled) or its creation.
pub async fn waiting(conn: &mut PgConnection) -> Result<Vec<Waiting>, sqlx::Error> {
    sqlx::query_as!(
        Waiting,
        r#"WITH waiting AS (
             SELECT priority, COALESCE(send_at, created_at) AS due_at,
                    total_count - sent_count - failed_count - cancelled_count - expired_count
                        - opted_out_count AS n
             FROM messages WHERE status IN ('scheduled', 'pending', 'sending'))
         SELECT p.priority AS "priority!",
                COALESCE(sum(w.n), 0)::bigint AS "recipients!",
                COALESCE(EXTRACT(EPOCH FROM now() - min(w.due_at)
                    FILTER (WHERE w.n > 0 AND w.due_at <= now())), 0)::float8 AS "oldest_secs!"
         FROM (VALUES ('high'), ('normal'), ('low')) AS p (priority)
         LEFT JOIN waiting w ON w.priority = p.priority
         GROUP BY p.priority"#
    )
    .fetch_all(conn)
    .await
}

/// Writes `waiting` (from [`waiting`]) into this minute's row of `backlog_minutes`, and
/// drops traffic rows older than two days: the dashboard shows 24 h (and SIM caps look back
/// 24 h at most).
pub async fn sample_backlog(
    conn: &mut PgConnection,
    waiting: &[Waiting],
) -> Result<(), sqlx::Error> {
    let of = |priority: &str| {
        waiting
            .iter()
            .filter(|w| w.priority == priority)
            .map(|w| w.recipients)
            .sum::<i64>()
    };
    sqlx::query!(
        "WITH old_traffic AS (DELETE FROM traffic_minutes WHERE minute < now() - interval '2 days'),
         old_backlog AS (DELETE FROM backlog_minutes WHERE minute < now() - interval '2 days'),
         old_sim_usage AS (
             DELETE FROM sim_usage_minutes WHERE minute < now() - interval '2 days')
         INSERT INTO backlog_minutes (minute, pending, high, normal, low)
         VALUES (date_trunc('minute', now()), $1::bigint + $2::bigint + $3::bigint, $1, $2, $3)
         ON CONFLICT (minute) DO UPDATE
             SET pending = EXCLUDED.pending, high = EXCLUDED.high, normal = EXCLUDED.normal,
                 low = EXCLUDED.low",
        of("high"),
        of("normal"),
        of("low")
    )
    .execute(conn)
    .await?;
    Ok(())
}
