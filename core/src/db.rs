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
