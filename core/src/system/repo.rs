//! SQL of the system calls. Counts that would scan the messages table come from the
//! trigger-maintained per-user counters or from index ranges (a day, a SIM's route).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::admin::audit::AuditEntry;

#[derive(Debug)]
pub struct Totals {
    pub database_bytes: i64,
    pub outgoing: i64,
    pub incoming: i64,
}

/// Database size and all-time message counts; `owner` limits outgoing to one user's
/// messages and incoming to what their SIMs received.
///
/// Inbound message `i` is `$1`'s to see (here and in [`daily`]): any for an admin (`$1`
/// NULL), else only those received by a SIM usable by them, the rule of
/// `sims::repo::list_sims_usable_by` (received SMS are often one-time codes).
pub async fn totals(db: &PgPool, owner: Option<i64>) -> Result<Totals, sqlx::Error> {
    sqlx::query_as!(
        Totals,
        r#"SELECT pg_database_size(current_database()) AS "database_bytes!",
                (SELECT coalesce(sum(messages), 0)::bigint FROM user_message_counts
                 WHERE $1::bigint IS NULL OR user_id = $1) AS "outgoing!",
                (SELECT count(*) FROM inbound_messages i
                 WHERE ($1::bigint IS NULL OR i.sim_card_id IN (
                     SELECT s.id FROM sim_cards s
                     WHERE (s.assigned_to_all
                            OR EXISTS (SELECT 1 FROM sim_card_assignees a
                                       WHERE a.sim_card_id = s.id AND a.user_id = $1)
                            OR EXISTS (SELECT 1 FROM users u WHERE u.id = $1 AND u.is_admin)))))
                    AS "incoming!""#,
        owner
    )
    .fetch_one(db)
    .await
}

#[derive(Debug)]
pub struct Day {
    pub day: NaiveDate,
    pub outgoing: i64,
    pub recipients: i64,
    pub incoming: i64,
}

/// Messages sent (and their recipients) and received on each of the `days` UTC days up to
/// today, oldest first, days without any included. Days are 24-hour steps from UTC
/// midnight, so the session's time zone (and its DST changes) can't shift them.
pub async fn daily(db: &PgPool, owner: Option<i64>, days: i32) -> Result<Vec<Day>, sqlx::Error> {
    sqlx::query_as!(
        Day,
        r#"WITH days AS (
             SELECT d AS day_start
             FROM generate_series(date_trunc('day', now(), 'UTC') - interval '24 hours' * ($2 - 1),
                                  date_trunc('day', now(), 'UTC'), interval '24 hours') d)
         SELECT (day_start AT TIME ZONE 'UTC')::date AS "day!",
                sent.messages AS "outgoing!", sent.recipients AS "recipients!",
                (SELECT count(*) FROM inbound_messages i
                 WHERE i.created_at >= day_start AND i.created_at < day_start + interval '24 hours'
                   AND ($1::bigint IS NULL OR i.sim_card_id IN (
                       SELECT s.id FROM sim_cards s
                       WHERE (s.assigned_to_all
                              OR EXISTS (SELECT 1 FROM sim_card_assignees a
                                         WHERE a.sim_card_id = s.id AND a.user_id = $1)
                              OR EXISTS (SELECT 1 FROM users u WHERE u.id = $1 AND u.is_admin)))))
                    AS "incoming!"
         FROM days,
              LATERAL (SELECT count(*) AS messages, coalesce(sum(total_count), 0)::bigint AS recipients
                       FROM messages m
                       WHERE m.created_at >= day_start AND m.created_at < day_start + interval '24 hours'
                         AND ($1::bigint IS NULL OR m.user_id = $1)) sent
         ORDER BY day_start"#,
        owner,
        days
    )
    .fetch_all(db)
    .await
}

/// Recipients sent and failed per SIM route (`sim.<id>`), all time.
pub async fn sent_per_sim_route(db: &PgPool) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    // `route` is COLLATE "C", so the prefix match is a range on its index.
    let routes = sqlx::query!(
        r#"SELECT route, coalesce(sum(sent_count), 0)::bigint AS "sent!",
                coalesce(sum(failed_count), 0)::bigint AS "failed!"
         FROM messages WHERE route LIKE 'sim.%' GROUP BY route"#
    )
    .fetch_all(db)
    .await?;
    Ok(routes
        .into_iter()
        .map(|r| (r.route, r.sent, r.failed))
        .collect())
}

/// Recipients of pool messages (route `sim`) sent and failed per SIM, all time: a pool
/// message's recipients go out through several SIMs, each recorded on the recipient.
pub async fn sent_per_sim_in_pool(db: &PgPool) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    let sims = sqlx::query!(
        r#"SELECT r.sim_card_id AS "sim_card_id!",
                count(*) FILTER (WHERE r.status IN ('sent', 'delivered')) AS "sent!",
                count(*) FILTER (WHERE r.status = 'failed') AS "failed!"
         FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.sim_card_id IS NOT NULL AND m.route = 'sim'
         GROUP BY r.sim_card_id"#
    )
    .fetch_all(db)
    .await?;
    Ok(sims
        .into_iter()
        .map(|r| (r.sim_card_id, r.sent, r.failed))
        .collect())
}

/// SMS received per SIM card, all time.
pub async fn received_per_sim(db: &PgPool) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let sims = sqlx::query!(
        r#"SELECT sim_card_id AS "sim_card_id!", count(*) AS "received!" FROM inbound_messages
         WHERE sim_card_id IS NOT NULL GROUP BY sim_card_id"#
    )
    .fetch_all(db)
    .await?;
    Ok(sims
        .into_iter()
        .map(|r| (r.sim_card_id, r.received))
        .collect())
}

/// Which audit entries a caller may read, and which of them they asked for.
pub struct LogFilter<'a> {
    /// Only this user's own actions (everyone but admins).
    pub actor: Option<i64>,
    /// An action (`sim.update`) or a family of them (`sim`).
    pub action: Option<&'a str>,
}

/// Newest first, a page at a time; the log holds people's actions, so it stays small
/// enough to count.
pub async fn logs(
    db: &PgPool,
    filter: &LogFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditEntry>, i64), sqlx::Error> {
    // The page and the count share their WHERE clause.
    let page = sqlx::query_as!(
        AuditEntry,
        r#"SELECT a.id, u.username AS "actor?", a.action, a.target, a.details, a.created_at
         FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
         WHERE ($1::bigint IS NULL OR a.actor_id = $1)
           AND ($2::text IS NULL OR a.action = $2 OR starts_with(a.action, $2 || '.'))
         ORDER BY a.id DESC LIMIT $3 OFFSET $4"#,
        filter.actor,
        filter.action,
        limit,
        offset
    )
    .fetch_all(db);
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM audit_log a
         WHERE ($1::bigint IS NULL OR a.actor_id = $1)
           AND ($2::text IS NULL OR a.action = $2 OR starts_with(a.action, $2 || '.'))"#,
        filter.actor,
        filter.action
    )
    .fetch_one(db);
    tokio::try_join!(page, total)
}

/// The moment today began in UTC, for today's counts.
pub fn start_of_utc_day(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}
