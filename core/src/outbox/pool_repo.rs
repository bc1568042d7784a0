//! SQL of SIM release ([`super::pool`]): each SIM's caps and usage, who may use which SIM,
//! recording which SIM each job went to, and putting jobs back when a SIM goes away.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Transaction};

/// A SIM as the releaser weighs it: its state, caps and what it was given recently.
#[derive(Debug, Clone)]
pub struct SimState {
    pub id: i64,
    pub active: bool,
    /// A heartbeat within the offline window.
    pub online: bool,
    /// The agent's last `+CSQ` rssi (0..=31); `None` until it reports one.
    pub signal: Option<i16>,
    pub max_per_minute: Option<i32>,
    pub max_per_hour: Option<i32>,
    pub max_per_day: Option<i32>,
    pub send_interval_secs: Option<i32>,
    /// No spacing, or its next release time has come.
    pub spacing_due: bool,
    pub used_minute: i64,
    pub used_hour: i64,
    pub used_day: i64,
}

/// Every SIM with its usage. The windows count whole minute rows that overlap them (the
/// last 60 s reads this minute's row and the previous one), so a cap is never exceeded
/// over any window of its length, at the cost of holding back up to a minute early.
pub async fn sim_states(
    conn: &mut PgConnection,
    offline_secs: f64,
) -> Result<Vec<SimState>, sqlx::Error> {
    sqlx::query_as!(
        SimState,
        r#"SELECT s.id, s.status = 'active' AS "active!",
                COALESCE(s.last_heartbeat_at > now() - make_interval(secs => $1), false) AS "online!",
                s.signal,
                s.max_per_minute, s.max_per_hour, s.max_per_day, s.send_interval_secs,
                (s.next_release_at IS NULL OR s.next_release_at <= now()) AS "spacing_due!",
                COALESCE(sum(u.released) FILTER (
                    WHERE u.minute > now() - interval '2 minutes'), 0)::bigint AS "used_minute!",
                COALESCE(sum(u.released) FILTER (
                    WHERE u.minute > now() - interval '61 minutes'), 0)::bigint AS "used_hour!",
                COALESCE(sum(u.released), 0)::bigint AS "used_day!"
         FROM sim_cards s
         LEFT JOIN sim_usage_minutes u
             ON u.sim_card_id = s.id AND u.minute > now() - interval '1441 minutes'
         GROUP BY s.id
         ORDER BY s.id"#,
        offline_secs
    )
    .fetch_all(conn)
    .await
}

/// A SIM a user may send through.
#[derive(Debug)]
pub struct Usable {
    pub user_id: i64,
    pub sim_card_id: i64,
}

/// The active SIMs each of `users` may send through: assigned to all or to them, or every
/// SIM for an admin (the rule of `sims::repo`, written out again as the macros need).
pub async fn usable_sims(
    conn: &mut PgConnection,
    users: &[i64],
) -> Result<Vec<Usable>, sqlx::Error> {
    sqlx::query_as!(
        Usable,
        r#"SELECT u.id AS user_id, s.id AS sim_card_id
         FROM users u CROSS JOIN sim_cards s
         WHERE u.id = ANY($1) AND s.status = 'active'
           AND (s.assigned_to_all OR u.is_admin
                OR EXISTS (SELECT 1 FROM sim_card_assignees a
                           WHERE a.sim_card_id = s.id AND a.user_id = u.id))"#,
        users
    )
    .fetch_all(conn)
    .await
}

/// Records that each `recipients[i]` goes to SIM `sims[i]` (and that its job is not yet
/// confirmed: `sim_jobs_unconfirmed`), counts them in this minute's usage row, and sets the
/// next release time of each `spaced[j]` SIM `gaps[j]` seconds from now: one statement,
/// committed before the jobs are published, so a SIM's send result always finds its
/// recipient assigned to it.
pub async fn assign(
    conn: &mut PgConnection,
    recipients: &[i64],
    sims: &[i64],
    spaced: &[i64],
    gaps: &[f64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH a AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS a(recipient_id, sim_card_id)),
         assigned AS (
             UPDATE recipients r SET sim_card_id = a.sim_card_id
             FROM a WHERE r.id = a.recipient_id),
         unconfirmed AS (
             INSERT INTO sim_jobs_unconfirmed (recipient_id, sim_card_id)
             SELECT recipient_id, sim_card_id FROM a
             ON CONFLICT (recipient_id) DO UPDATE SET sim_card_id = EXCLUDED.sim_card_id,
                                                      placed_at = now()),
         counted AS (
             INSERT INTO sim_usage_minutes (sim_card_id, minute, released)
             SELECT sim_card_id, date_trunc('minute', now()), count(*)::int FROM a
             GROUP BY sim_card_id
             ON CONFLICT (sim_card_id, minute)
                 DO UPDATE SET released = sim_usage_minutes.released + EXCLUDED.released)
         UPDATE sim_cards s
         SET next_release_at = now() + make_interval(secs => g.gap), last_used_at = now()
         FROM unnest($3::bigint[], $4::float8[]) AS g(sim_card_id, gap)
         WHERE s.id = g.sim_card_id",
        recipients,
        sims,
        spaced,
        gaps
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Undoes [`assign`] for jobs whose publish failed: they were never in a queue, and the
/// next round releases them again. Their usage stays counted (erring towards the caps).
pub async fn unassign(conn: &mut PgConnection, recipients: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH done AS (DELETE FROM sim_jobs_unconfirmed WHERE recipient_id = ANY($1))
         UPDATE recipients SET sim_card_id = NULL WHERE id = ANY($1) AND status = 'pending'",
        recipients
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The broker confirmed these recipients' jobs: their placements are no longer in doubt.
pub async fn confirm(conn: &mut PgConnection, recipients: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM sim_jobs_unconfirmed WHERE recipient_id = ANY($1)",
        recipients
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A SIM job whose placement a previous releaser committed but whose publish it never saw
/// confirmed, with what it takes to publish it again.
#[derive(Debug)]
pub struct UnconfirmedJob {
    pub recipient_id: i64,
    pub message_id: i64,
    pub sim_card_id: i64,
    pub phone: String,
    pub content: String,
    pub valid_until: Option<DateTime<Utc>>,
}

/// Every unconfirmed placement whose recipient is still pending on that SIM; the others
/// (answered, cancelled, moved since) are forgotten in the same statement.
pub async fn unconfirmed_jobs(conn: &mut PgConnection) -> Result<Vec<UnconfirmedJob>, sqlx::Error> {
    sqlx::query!(
        "DELETE FROM sim_jobs_unconfirmed u
         WHERE NOT EXISTS (SELECT 1 FROM recipients r
                           WHERE r.id = u.recipient_id AND r.status = 'pending'
                             AND r.sim_card_id = u.sim_card_id)"
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_as!(
        UnconfirmedJob,
        "SELECT u.recipient_id, r.message_id, u.sim_card_id, r.phone, m.content, m.valid_until
         FROM sim_jobs_unconfirmed u
         JOIN recipients r ON r.id = u.recipient_id
         JOIN messages m ON m.id = r.message_id
         ORDER BY u.recipient_id"
    )
    .fetch_all(conn)
    .await
}

/// Puts the recipients of jobs taken back from SIM `sim_id`'s queue into the release queue:
/// their SIM is cleared (results from that SIM no longer match them) and each message's
/// release position moves back to its first one, its row recreated if it had left. Only
/// recipients still pending and assigned to that SIM (or to none: a job published before
/// SIMs were recorded, or whose placement was undone) move; a job whose recipient has
/// moved on to another SIM is a duplicate and is dropped. Returns how many moved.
pub async fn take_back(
    tx: &mut Transaction<'_, Postgres>,
    sim_id: i64,
    recipients: &[i64],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH back AS (
             UPDATE recipients r SET sim_card_id = NULL
             WHERE r.id = ANY($2) AND r.status = 'pending'
               AND (r.sim_card_id = $1 OR r.sim_card_id IS NULL)
             RETURNING r.message_id, r.id),
         forgotten AS (
             DELETE FROM sim_jobs_unconfirmed u USING back WHERE u.recipient_id = back.id),
         per AS (SELECT message_id, min(id) AS first, count(*)::int AS n
                 FROM back GROUP BY message_id),
         held AS (
             INSERT INTO message_outbox (message_id, user_id, priority, route, due_at,
                                         released_through, unreleased, valid_until)
             SELECT m.id, m.user_id, m.priority, m.route, now(), per.first - 1, per.n,
                    m.valid_until
             FROM per JOIN messages m ON m.id = per.message_id
             ON CONFLICT (message_id) DO UPDATE
                 SET released_through = LEAST(message_outbox.released_through,
                                              EXCLUDED.released_through),
                     unreleased = message_outbox.unreleased + EXCLUDED.unreleased)
         SELECT COALESCE(sum(n), 0)::bigint AS "moved!" FROM per"#,
        sim_id,
        recipients
    )
    .fetch_one(&mut **tx)
    .await
}

/// Messages that may fall back (`fallback = 'hkt'`) and that no SIM can take now (for a
/// pool message: none of its owner's usable SIMs is active and online; for a single-SIM
/// one: that SIM is not) move to the HKT route for what they have left to release.
/// Returns how many recipients that is at most.
pub async fn fall_back_to_hkt(
    conn: &mut PgConnection,
    offline_secs: f64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH moved AS (
             UPDATE message_outbox o SET route = 'hkt'
             FROM messages m
             WHERE m.id = o.message_id AND m.fallback = 'hkt'
               AND (o.route = 'sim' OR o.route LIKE 'sim.%')
               AND NOT EXISTS (
                   SELECT 1 FROM sim_cards s JOIN users u ON u.id = o.user_id
                   WHERE s.status = 'active'
                     AND s.last_heartbeat_at > now() - make_interval(secs => $1)
                     AND (o.route = 'sim.' || s.id
                          OR (o.route = 'sim'
                              AND (s.assigned_to_all OR u.is_admin
                                   OR EXISTS (SELECT 1 FROM sim_card_assignees a
                                              WHERE a.sim_card_id = s.id
                                                AND a.user_id = u.id)))))
             RETURNING o.unreleased)
         SELECT COALESCE(sum(unreleased), 0)::bigint AS "moved!" FROM moved"#,
        offline_secs
    )
    .fetch_one(conn)
    .await
}
