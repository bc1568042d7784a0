//! The audit log: who did what to whom, and when. Written in the same transaction as the
//! change it records, so the log never claims a change that rolled back.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

/// Records `action` by `actor_id` (None: the system) on `target` (`user:42`, `message:7`)
/// through `db`: a transaction's connection, so the entry commits with the change it
/// records, or the pool where there is no transaction to join.
pub async fn record<'e>(
    db: impl PgExecutor<'e>,
    actor_id: Option<i64>,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (actor_id, action, target, details) VALUES ($1, $2, $3, $4)",
        actor_id,
        action,
        target,
        details
    )
    .execute(db)
    .await?;
    Ok(())
}

/// One entry with its actor's name (`None` for the system or a deleted user).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Newest first; `before` is the id of the last entry of the previous page (the log only
/// grows, so ids order it the same way as time).
pub async fn list(
    db: &PgPool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    sqlx::query_as!(
        AuditEntry,
        r#"SELECT a.id, u.username AS "actor?", a.action, a.target, a.details, a.created_at
         FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
         WHERE ($1::bigint IS NULL OR a.id < $1)
         ORDER BY a.id DESC LIMIT $2"#,
        before,
        limit
    )
    .fetch_all(db)
    .await
}
