//! The database's schema: the migrations under `migrations/`, embedded in every binary.

use anyhow::Context;
use sqlx::PgPool;

/// Migrations of every crate, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Runs pending migrations.
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(db).await.context("running migrations")
}

/// Whether PostgreSQL answers a trivial query through `db` (readiness checks).
pub async fn is_reachable(db: &PgPool) -> bool {
    sqlx::query!("SELECT 1 AS up").fetch_one(db).await.is_ok()
}

/// Whether a database error means PostgreSQL is down or saturated (a pool that cannot hand
/// out a connection): the caller should answer "retry later" rather than report a bug.
/// Both edges (the JSON API and the panel) choose their 503 with this one test.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}
