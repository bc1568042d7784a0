//! The login throttle's counters (`login_attempts`): one row per budget, keyed by scope
//! (`user_address` or `address`) and key.

use std::time::Duration;

use sqlx::PgPool;

/// One budget after a charge.
pub struct Budget {
    pub scope: String,
    pub failures: i32,
    /// Seconds until the budget's window is over.
    pub retry_after_secs: f64,
}

/// Charges one attempt to both budgets in one statement (a window that is over starts
/// afresh at 1), so parallel attempts cannot all pass a check made before any failure is
/// recorded.
pub async fn charge(
    db: &PgPool,
    user_key: &str,
    address: &str,
    window: Duration,
) -> Result<Vec<Budget>, sqlx::Error> {
    sqlx::query_as!(
        Budget,
        r#"INSERT INTO login_attempts AS a (scope, key, failures)
         VALUES ('user_address', $1, 1), ('address', $2, 1)
         ON CONFLICT (scope, key) DO UPDATE SET
           failures = CASE WHEN a.window_start <= now() - make_interval(secs => $3)
                           THEN 1 ELSE a.failures + 1 END,
           window_start = CASE WHEN a.window_start <= now() - make_interval(secs => $3)
                               THEN now() ELSE a.window_start END
         RETURNING scope, failures,
           GREATEST(0, EXTRACT(EPOCH FROM (window_start + make_interval(secs => $3) - now())))::float8
             AS "retry_after_secs!""#,
        user_key,
        address,
        window.as_secs_f64()
    )
    .fetch_all(db)
    .await
}

/// Removes one budget's counter.
pub async fn delete(db: &PgPool, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM login_attempts WHERE scope = $1 AND key = $2",
        scope,
        key
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the counters of windows that are over.
pub async fn delete_windows_over(db: &PgPool, window: Duration) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM login_attempts WHERE window_start < now() - make_interval(secs => $1)",
        window.as_secs_f64()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Takes one charge back from a budget; its failures left, if it exists.
pub async fn take_one_back(
    db: &PgPool,
    scope: &str,
    key: &str,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE login_attempts SET failures = GREATEST(failures - 1, 0)
         WHERE scope = $1 AND key = $2 RETURNING failures",
        scope,
        key
    )
    .fetch_optional(db)
    .await
}

/// Deletes a budget's counter if it is (still) at zero: a charge made in between keeps it.
pub async fn delete_if_zero(db: &PgPool, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM login_attempts WHERE scope = $1 AND key = $2 AND failures = 0",
        scope,
        key
    )
    .execute(db)
    .await?;
    Ok(())
}
