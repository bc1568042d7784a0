//! SQL of the quotas. One function per statement.
//!
//! The clock is the database's, read with `statement_timestamp()`: one clock for every API
//! replica, and not `now()`, which is the start of the caller's transaction and may be
//! seconds old when a large send charges after inserting its recipients.

use sqlx::PgConnection;

/// The limits `charge` needs; NULL is unlimited.
pub(super) struct Limits {
    pub daily_recipient_limit: Option<i32>,
    pub requests_per_second: Option<i32>,
    pub high_priority_per_minute: i32,
}

/// Which GCRA state row (`user_rate_state.kind`).
#[derive(Debug, Clone, Copy)]
pub(super) enum RateKind {
    Requests,
    High,
}

impl RateKind {
    fn as_str(self) -> &'static str {
        match self {
            RateKind::Requests => "requests",
            RateKind::High => "high",
        }
    }
}

/// A plain read, not `FOR SHARE`: exactness comes from the counter rows' locks, and a share
/// lock would write a lock (a multixact, under concurrency) into the user's row on every
/// send and make admins' and logins' updates of that row wait for sends to commit. A limit
/// changed meanwhile applies from the next request.
pub(super) async fn limits_of(tx: &mut PgConnection, user_id: i64) -> Result<Limits, sqlx::Error> {
    sqlx::query_as!(
        Limits,
        "SELECT daily_recipient_limit, requests_per_second, high_priority_per_minute
         FROM users WHERE id = $1",
        user_id
    )
    .fetch_one(tx)
    .await
}

/// Moves the GCRA's theoretical arrival time on by `cost_us` when that keeps it within
/// `burst_us` of now; true when it did. The upsert locks the row, refused or not, until the
/// transaction ends. A first row is always admitted: the caller never asks for more than
/// the burst.
pub(super) async fn take_rate(
    tx: &mut PgConnection,
    user_id: i64,
    kind: RateKind,
    cost_us: i64,
    burst_us: i64,
) -> Result<bool, sqlx::Error> {
    let granted = sqlx::query_scalar!(
        r#"INSERT INTO user_rate_state AS s (user_id, kind, allowed_from)
           VALUES ($1, $2, statement_timestamp() + $3::float8 * interval '1 microsecond')
           ON CONFLICT (user_id, kind) DO UPDATE
           SET allowed_from = greatest(s.allowed_from, statement_timestamp())
                              + $3::float8 * interval '1 microsecond'
           WHERE greatest(s.allowed_from, statement_timestamp()) + $3::float8 * interval '1 microsecond'
                 <= statement_timestamp() + $4::float8 * interval '1 microsecond'
           RETURNING 1 AS "granted!""#,
        user_id,
        kind.as_str(),
        cost_us as f64,
        burst_us as f64
    )
    .fetch_optional(tx)
    .await?;
    Ok(granted.is_some())
}

/// Microseconds until `cost_us` would fit in the burst (read under the row lock that the
/// refused `take_rate` took).
pub(super) async fn rate_wait_us(
    tx: &mut PgConnection,
    user_id: i64,
    kind: RateKind,
    cost_us: i64,
    burst_us: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT (extract(epoch FROM greatest(allowed_from, statement_timestamp())
                    - statement_timestamp())
                  * 1000000)::bigint + $3::bigint - $4::bigint AS "wait_us!"
           FROM user_rate_state WHERE user_id = $1 AND kind = $2"#,
        user_id,
        kind.as_str(),
        cost_us,
        burst_us
    )
    .fetch_one(tx)
    .await
}

/// Adds `n` recipients to today's (UTC) usage when the total stays within `limit`; true
/// when it did. The row lock serialises every charge of the user's day, so concurrent
/// sends never pass the limit together. A request larger than the limit inserts nothing.
pub(super) async fn add_daily_usage(
    tx: &mut PgConnection,
    user_id: i64,
    n: i64,
    limit: i64,
) -> Result<bool, sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"INSERT INTO user_daily_usage AS u (user_id, day, recipients)
           SELECT $1::bigint, (statement_timestamp() AT TIME ZONE 'UTC')::date, $2::bigint
           WHERE $2::bigint <= $3::bigint
           ON CONFLICT (user_id, day) DO UPDATE
           SET recipients = u.recipients + excluded.recipients
           WHERE u.recipients + excluded.recipients <= $3::bigint
           RETURNING recipients"#,
        user_id,
        n,
        limit
    )
    .fetch_optional(tx)
    .await?;
    Ok(total.is_some())
}

/// Today's usage and the time to the next UTC midnight, for a refusal.
pub(super) struct DailyRefusal {
    pub used: i64,
    pub until_midnight_us: i64,
}

pub(super) async fn daily_refusal(
    tx: &mut PgConnection,
    user_id: i64,
) -> Result<DailyRefusal, sqlx::Error> {
    sqlx::query_as!(
        DailyRefusal,
        r#"SELECT
             coalesce((SELECT recipients FROM user_daily_usage
                       WHERE user_id = $1
                         AND day = (statement_timestamp() AT TIME ZONE 'UTC')::date), 0) AS "used!",
             (extract(epoch FROM
                 date_trunc('day', statement_timestamp() AT TIME ZONE 'UTC') + interval '1 day'
                 - (statement_timestamp() AT TIME ZONE 'UTC')) * 1000000)::bigint
               AS "until_midnight_us!""#,
        user_id
    )
    .fetch_one(tx)
    .await
}
