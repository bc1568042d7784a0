//! SQL of the edge gateway: SIM cards, SIM-routed sends, the inbox, the outbox, API keys.
//! One function per statement.

use chrono::{DateTime, Utc};
use smsgate_shared::domain::RecipientStatus;
use sqlx::{PgPool, Postgres, Transaction};

/// A SIM card with its agent's last report.
#[derive(Debug, Clone)]
pub struct SimRow {
    pub id: i64,
    pub number: String,
    pub label: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub signal: Option<i16>,
    pub registration: Option<String>,
    pub operator: Option<String>,
    /// Usable by every user; otherwise only by its assignees (and admins).
    pub assigned_to_all: bool,
    /// Carrier caps: jobs released per minute, hour and day; `None`: no cap.
    pub max_per_minute: Option<i32>,
    pub max_per_hour: Option<i32>,
    pub max_per_day: Option<i32>,
    /// Average spacing between jobs, seconds; `None`: none.
    pub send_interval_secs: Option<i32>,
}

// Who may use a SIM: SIM `s` is usable by a viewer when it is assigned to all, or to them,
// or they are an admin. The admin flag is read in the same statement, so the API and the
// panel apply one rule and a role change applies to the next request. The query macros take
// literal SQL only, so the rule is written out in every statement that applies it:
// `list_sims_usable_by`, `find_sim_usable_by`, `any_online_sim_usable_by`, `list_inbound`,
// `count_inbound` here, `system::repo`'s `totals` and `daily`, and `outbox::pool_repo`'s
// `usable_sims` and `fall_back_to_hkt`; change them together.

/// Every SIM card, whoever it is assigned to: for admins' views and aggregate counts.
pub async fn list_sims(db: &PgPool) -> Result<Vec<SimRow>, sqlx::Error> {
    sqlx::query_as!(
        SimRow,
        "SELECT id, number, label, status, created_at, updated_at, last_heartbeat_at,
                signal, registration, operator, assigned_to_all,
                max_per_minute, max_per_hour, max_per_day, send_interval_secs
         FROM sim_cards ORDER BY id"
    )
    .fetch_all(db)
    .await
}

/// The SIM cards user `viewer` may see and send through.
pub async fn list_sims_usable_by(db: &PgPool, viewer: i64) -> Result<Vec<SimRow>, sqlx::Error> {
    sqlx::query_as!(
        SimRow,
        "SELECT id, number, label, status, created_at, updated_at, last_heartbeat_at,
                signal, registration, operator, assigned_to_all,
                max_per_minute, max_per_hour, max_per_day, send_interval_secs
         FROM sim_cards s
         WHERE (s.assigned_to_all
                 OR EXISTS (SELECT 1 FROM sim_card_assignees a
                            WHERE a.sim_card_id = s.id AND a.user_id = $1)
                 OR EXISTS (SELECT 1 FROM users u WHERE u.id = $1 AND u.is_admin))
         ORDER BY id",
        viewer
    )
    .fetch_all(db)
    .await
}

/// SIM `id` if user `viewer` may see and send through it; `None` whether it is missing or
/// not theirs, so callers cannot tell the two apart.
pub async fn find_sim_usable_by(
    db: &PgPool,
    id: i64,
    viewer: i64,
) -> Result<Option<SimRow>, sqlx::Error> {
    sqlx::query_as!(
        SimRow,
        "SELECT id, number, label, status, created_at, updated_at, last_heartbeat_at,
                signal, registration, operator, assigned_to_all,
                max_per_minute, max_per_hour, max_per_day, send_interval_secs
         FROM sim_cards s
         WHERE id = $1
           AND (s.assigned_to_all
                 OR EXISTS (SELECT 1 FROM sim_card_assignees a
                            WHERE a.sim_card_id = s.id AND a.user_id = $2)
                 OR EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.is_admin))",
        id,
        viewer
    )
    .fetch_optional(db)
    .await
}

/// A user a SIM card is assigned to.
#[derive(Debug, Clone)]
pub struct AssigneeRow {
    pub sim_card_id: i64,
    pub user_id: i64,
    pub username: String,
}

/// The assignees of the given SIMs, by SIM then username.
pub async fn list_assignees(db: &PgPool, sim_ids: &[i64]) -> Result<Vec<AssigneeRow>, sqlx::Error> {
    sqlx::query_as!(
        AssigneeRow,
        "SELECT a.sim_card_id, a.user_id, u.username
         FROM sim_card_assignees a JOIN users u ON u.id = a.user_id
         WHERE a.sim_card_id = ANY($1)
         ORDER BY a.sim_card_id, lower(u.username)",
        sim_ids
    )
    .fetch_all(db)
    .await
}

/// Those of `ids` that name no user.
pub async fn missing_users(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT t.id AS "id!" FROM unnest($1::bigint[]) AS t(id)
         WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = t.id)
         ORDER BY t.id"#,
        ids
    )
    .fetch_all(&mut **tx)
    .await
}

/// Sets who SIM `id` is assigned to: everyone (`all`, which clears the list) or exactly
/// `users`.
pub async fn set_assignees(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    all: bool,
    users: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sim_cards SET assigned_to_all = $2 WHERE id = $1",
        id,
        all
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!("DELETE FROM sim_card_assignees WHERE sim_card_id = $1", id)
        .execute(&mut **tx)
        .await?;
    sqlx::query!(
        "INSERT INTO sim_card_assignees (sim_card_id, user_id)
         SELECT $1, user_id FROM unnest($2::bigint[]) AS t(user_id)
         ON CONFLICT DO NOTHING",
        id,
        users
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A user an admin can assign a SIM to.
#[derive(Debug, Clone)]
pub struct UserChoice {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub is_active: bool,
}

/// Every user, by name, for the SIM form's assignee choice.
pub async fn list_user_choices(db: &PgPool) -> Result<Vec<UserChoice>, sqlx::Error> {
    sqlx::query_as!(
        UserChoice,
        "SELECT id, username, is_admin, is_active FROM users ORDER BY lower(username)"
    )
    .fetch_all(db)
    .await
}

pub async fn find_sim(db: &PgPool, id: i64) -> Result<Option<SimRow>, sqlx::Error> {
    sqlx::query_as!(
        SimRow,
        "SELECT id, number, label, status, created_at, updated_at, last_heartbeat_at,
                signal, registration, operator, assigned_to_all,
                max_per_minute, max_per_hour, max_per_day, send_interval_secs
         FROM sim_cards WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// Inserts a SIM; a taken number is a unique violation the service turns into
/// `SimError::NumberTaken`.
pub async fn insert_sim(
    tx: &mut Transaction<'_, Postgres>,
    number: &str,
    label: &str,
    status: &str,
) -> Result<SimRow, sqlx::Error> {
    sqlx::query_as!(
        SimRow,
        "INSERT INTO sim_cards (number, label, status) VALUES ($1, $2, $3)
         RETURNING id, number, label, status, created_at, updated_at, last_heartbeat_at,
                   signal, registration, operator, assigned_to_all,
                max_per_minute, max_per_hour, max_per_day, send_interval_secs",
        number,
        label,
        status
    )
    .fetch_one(&mut **tx)
    .await
}

/// Changes the given fields; `None` keeps a field as it is.
pub async fn update_sim(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    number: Option<&str>,
    label: Option<&str>,
    status: Option<&str>,
) -> Result<Option<SimRow>, sqlx::Error> {
    sqlx::query_as!(
        SimRow,
        "UPDATE sim_cards SET number = COALESCE($2, number), label = COALESCE($3, label),
             status = COALESCE($4, status), updated_at = now()
         WHERE id = $1
         RETURNING id, number, label, status, created_at, updated_at, last_heartbeat_at,
                   signal, registration, operator, assigned_to_all,
                max_per_minute, max_per_hour, max_per_day, send_interval_secs",
        id,
        number,
        label,
        status
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Sets the caps whose `set_*` flag is true to the value beside it (`None` clears it).
#[allow(clippy::too_many_arguments)] // four optional columns, each with its flag
pub async fn update_caps(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    set_minute: bool,
    minute: Option<i32>,
    set_hour: bool,
    hour: Option<i32>,
    set_day: bool,
    day: Option<i32>,
    set_interval: bool,
    interval: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sim_cards SET
             max_per_minute = CASE WHEN $2 THEN $3 ELSE max_per_minute END,
             max_per_hour = CASE WHEN $4 THEN $5 ELSE max_per_hour END,
             max_per_day = CASE WHEN $6 THEN $7 ELSE max_per_day END,
             send_interval_secs = CASE WHEN $8 THEN $9 ELSE send_interval_secs END,
             -- A cleared or changed spacing applies from the next job on.
             next_release_at = CASE WHEN $8 THEN NULL ELSE next_release_at END,
             updated_at = now()
         WHERE id = $1",
        id,
        set_minute,
        minute,
        set_hour,
        hour,
        set_day,
        day,
        set_interval,
        interval
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Jobs released to a SIM in the caps' windows.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimUsage {
    pub sim_card_id: i64,
    pub last_minute: i64,
    pub last_hour: i64,
    pub last_24h: i64,
}

/// What each of `ids` was given in the caps' windows, counted as the releaser counts them
/// (whole minutes overlapping each window; see `outbox::pool_repo::sim_states`).
pub async fn sim_usage(db: &PgPool, ids: &[i64]) -> Result<Vec<SimUsage>, sqlx::Error> {
    sqlx::query_as!(
        SimUsage,
        r#"SELECT sim_card_id,
                COALESCE(sum(released) FILTER (
                    WHERE minute > now() - interval '2 minutes'), 0)::bigint AS "last_minute!",
                COALESCE(sum(released) FILTER (
                    WHERE minute > now() - interval '61 minutes'), 0)::bigint AS "last_hour!",
                COALESCE(sum(released), 0)::bigint AS "last_24h!"
         FROM sim_usage_minutes
         WHERE sim_card_id = ANY($1) AND minute > now() - interval '1441 minutes'
         GROUP BY sim_card_id"#,
        ids
    )
    .fetch_all(db)
    .await
}

/// Recipients still waiting to go out through `route`.
pub async fn count_pending_on_route(db: &PgPool, route: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE m.route = $1 AND r.status = 'pending'"#,
        route
    )
    .fetch_one(db)
    .await
}

/// Fails every pending recipient of `route` and updates their messages' counters and
/// status in one statement, so a forced SIM deletion leaves every recipient terminal.
pub async fn fail_pending_on_route(
    tx: &mut Transaction<'_, Postgres>,
    route: &str,
    reason: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH failed AS (
             UPDATE recipients r SET status = 'failed', last_error = $2, updated_at = now()
             FROM messages m
             WHERE m.id = r.message_id AND m.route = $1 AND r.status = 'pending'
             RETURNING r.message_id),
         counts AS (SELECT message_id, count(*)::int AS n FROM failed GROUP BY message_id),
         updated AS (
             UPDATE messages m SET
                 failed_count = m.failed_count + c.n,
                 status = CASE
                     WHEN m.sent_count + m.failed_count + c.n < m.total_count THEN 'sending'
                     WHEN m.sent_count = 0 THEN 'failed'
                     ELSE 'partial' END,
                 completed_at = CASE
                     WHEN m.sent_count + m.failed_count + c.n >= m.total_count THEN now()
                     ELSE m.completed_at END
             FROM counts c WHERE m.id = c.message_id
             RETURNING c.n)
         SELECT COALESCE(sum(n), 0)::bigint AS "failed!" FROM updated"#,
        route,
        reason
    )
    .fetch_one(&mut **tx)
    .await
}

pub async fn delete_sim(tx: &mut Transaction<'_, Postgres>, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("DELETE FROM sim_cards WHERE id = $1", id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether any active SIM heard from within `online_secs` is usable by `viewer`: a pool
/// send with no such SIM goes to HKT unless it asked to wait.
pub async fn any_online_sim_usable_by(
    db: &PgPool,
    online_secs: f64,
    viewer: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (
             SELECT 1 FROM sim_cards s
             WHERE status = 'active' AND last_heartbeat_at > now() - make_interval(secs => $1)
               AND (s.assigned_to_all
                     OR EXISTS (SELECT 1 FROM sim_card_assignees a
                                WHERE a.sim_card_id = s.id AND a.user_id = $2)
                     OR EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.is_admin))
         ) AS "any!""#,
        online_secs,
        viewer
    )
    .fetch_one(db)
    .await
}

/// Lets the SIM work of message `id` move to HKT when no SIM can take it (`fallback: hkt`).
pub async fn allow_hkt_fallback(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE messages SET fallback = 'hkt' WHERE id = $1", id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts the recipients of a message routed through a SIM (a few, in request order), in
/// the caller's transaction; the message and its release row are already there. Their SIM
/// (`sim_card_id`) is left for the releaser to set as it publishes each job, for single-SIM
/// and pool messages alike, so it stays right when jobs move.
pub async fn insert_sim_recipients(
    tx: &mut Transaction<'_, Postgres>,
    message_id: i64,
    phones: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO recipients (message_id, phone)
         SELECT $1, phone FROM unnest($2::text[]) WITH ORDINALITY AS t(phone, ord) ORDER BY ord",
        message_id,
        phones as &[&str]
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A received SMS.
#[derive(Debug, Clone)]
pub struct InboundRow {
    pub id: i64,
    pub sim_card_id: Option<i64>,
    pub sim_number: String,
    pub sender: String,
    pub content: String,
    pub parts: i16,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// The received SMS user `viewer` may read, newest first.
///
/// Here and in [`count_inbound`], user `$2` may read, optionally only those of SIM `$1`, the
/// received SMS of the SIMs usable by them. Received SMS are often one-time codes; an SMS
/// whose SIM was deleted (`sim_card_id` NULL) has no assignees left and is for admins only.
pub async fn list_inbound(
    db: &PgPool,
    sim_id: Option<i64>,
    viewer: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<InboundRow>, sqlx::Error> {
    sqlx::query_as!(
        InboundRow,
        "SELECT i.id, i.sim_card_id, i.sim_number, i.sender, i.content, i.parts, i.sent_at,
                i.received_at, i.created_at
         FROM inbound_messages i
         WHERE ($1::bigint IS NULL OR i.sim_card_id = $1)
           AND (EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.is_admin)
                OR EXISTS (SELECT 1 FROM sim_cards s
                           WHERE s.id = i.sim_card_id
                             AND (s.assigned_to_all
                                   OR EXISTS (SELECT 1 FROM sim_card_assignees a
                                              WHERE a.sim_card_id = s.id AND a.user_id = $2)
                                   OR EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.is_admin))))
         ORDER BY i.created_at DESC, i.id DESC LIMIT $3 OFFSET $4",
        sim_id,
        viewer,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

pub async fn count_inbound(
    db: &PgPool,
    sim_id: Option<i64>,
    viewer: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM inbound_messages i
         WHERE ($1::bigint IS NULL OR i.sim_card_id = $1)
           AND (EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.is_admin)
                OR EXISTS (SELECT 1 FROM sim_cards s
                           WHERE s.id = i.sim_card_id
                             AND (s.assigned_to_all
                                   OR EXISTS (SELECT 1 FROM sim_card_assignees a
                                              WHERE a.sim_card_id = s.id AND a.user_id = $2)
                                   OR EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.is_admin))))"#,
        sim_id,
        viewer
    )
    .fetch_one(db)
    .await
}

/// One outgoing SMS (a recipient of a message) as the edge gateway's clients list them.
#[derive(Debug, Clone)]
pub struct OutgoingRow {
    pub id: i64,
    pub message_id: i64,
    pub phone: String,
    pub content: String,
    pub status: RecipientStatus,
    pub route: String,
    pub sender_sim: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Outgoing SMS, newest first: the caller's own, or everyone's for an admin, optionally
/// only those of one route.
pub async fn list_outgoing(
    db: &PgPool,
    user_id: Option<i64>,
    route: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<OutgoingRow>, sqlx::Error> {
    sqlx::query_as!(
        OutgoingRow,
        r#"SELECT r.id, r.message_id, r.phone, m.content, r.status AS "status: RecipientStatus",
                m.route, s.number AS "sender_sim?",
                r.last_error, r.created_at, r.updated_at, r.sent_at, r.delivered_at
         FROM recipients r
         JOIN messages m ON m.id = r.message_id
         -- The SIM a job went to; before that (and for jobs released before SIMs were
         -- recorded) the message's own SIM.
         LEFT JOIN sim_cards s ON s.id = COALESCE(
             r.sim_card_id,
             CASE WHEN m.route LIKE 'sim.%' THEN substr(m.route, 5)::bigint END)
         WHERE ($1::bigint IS NULL OR m.user_id = $1) AND ($2::text IS NULL OR m.route = $2)
         ORDER BY r.id DESC LIMIT $3 OFFSET $4"#,
        user_id,
        route,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

/// How many outgoing SMS `list_outgoing` pages through: summed from the messages'
/// recipient totals, not counted row by row.
pub async fn count_outgoing(
    db: &PgPool,
    user_id: Option<i64>,
    route: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(total_count), 0)::bigint AS "total!" FROM messages
         WHERE ($1::bigint IS NULL OR user_id = $1) AND ($2::text IS NULL OR route = $2)"#,
        user_id,
        route
    )
    .fetch_one(db)
    .await
}

/// One API key of a user, never its secret.
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: i64,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn list_api_keys(db: &PgPool, user_id: i64) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "SELECT id, label, created_at, last_used_at, revoked_at FROM api_tokens
         WHERE user_id = $1 ORDER BY id DESC",
        user_id
    )
    .fetch_all(db)
    .await
}

/// Revokes one of the user's keys; false when it is not theirs or already revoked.
pub async fn revoke_api_key(db: &PgPool, user_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        id,
        user_id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
