//! The database's schema: the migrations under `migrations/`, embedded in every binary.

use anyhow::Context;
use sqlx::PgPool;

/// Migrations of every crate, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Runs pending migrations.
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(db).await.context("running migrations")
}
