//! Login throttling: after repeated failures a username (guessing one account) or a client
//! address (spraying many) is refused for a while, before any password is checked. Counted
//! in PostgreSQL so that every API instance shares the budget.

use sqlx::PgPool;

use super::settings::PanelSettings;

/// True when this username or address has used up its failures in the current window.
pub async fn is_throttled(
    db: &PgPool,
    settings: &PanelSettings,
    username: &str,
    address: &str,
) -> Result<bool, sqlx::Error> {
    let (by_user, by_address): (i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM login_failures WHERE username = $1 AND failed_at > now() - make_interval(secs => $3)),
           (SELECT count(*) FROM login_failures WHERE address = $2 AND failed_at > now() - make_interval(secs => $3))",
    )
    .bind(username.to_lowercase())
    .bind(address)
    .bind(settings.login_window.as_secs_f64())
    .fetch_one(db)
    .await?;
    Ok(by_user >= settings.max_failures_per_username
        || by_address >= settings.max_failures_per_address)
}

/// Records a failure, and forgets failures older than a day.
pub async fn record_failure(db: &PgPool, username: &str, address: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO login_failures (username, address) VALUES ($1, $2)")
        .bind(username.to_lowercase())
        .bind(address)
        .execute(db)
        .await?;
    sqlx::query("DELETE FROM login_failures WHERE failed_at < now() - interval '1 day'")
        .execute(db)
        .await?;
    Ok(())
}

/// A successful login clears the username's failures (not the address's: one good
/// password must not reset a sprayer's budget).
pub async fn clear_username(db: &PgPool, username: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE username = $1")
        .bind(username.to_lowercase())
        .execute(db)
        .await?;
    Ok(())
}
