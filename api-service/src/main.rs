use anyhow::Context;
use smsgate_api::settings::Settings;

/// jemalloc rather than glibc's malloc: every request allocates and frees across the
/// runtime's worker threads, and glibc's arenas spent about a fifth of the API's CPU on it
/// under single-send load (perf; docs/benchmarks.md). Blocks of 8 MiB and more (argon2's
/// 19 MiB per password hash) go to jemalloc's oversize arena, which returns them to the
/// kernel at once, so idle memory stays low after logins. Its options (a background thread
/// that returns freed pages after about a second) are built in from `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `smsgate-api [serve]` runs the service; `smsgate-api migrate` migrates (and seals
/// plain-text webhook secrets) and exits;
/// `smsgate-api rotate-webhook-secrets` seals every webhook secret under the first key of
/// WEBHOOK_SECRET_KEYS (as `serve` does at start) and fails if any does not open.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain (anyhow's default spreads it over
            // several): a start refused for a changed queue setting says what to do in it.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let _telemetry = smsgate_shared::telemetry::init("smsgate-api")
        .context("invalid telemetry configuration")?;
    let settings = Settings::from_env().context("invalid configuration")?;
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => {
            let api = smsgate_api::start(settings).await?;
            smsgate_shared::shutdown::signal().await;
            tracing::info!("shutting down");
            api.stop().await;
            Ok(())
        }
        Some("migrate") => {
            let db = smsgate_api::connect_database(&settings).await?;
            smsgate_api::migrate(&db).await?;
            // Rows from before encryption at rest are sealed with the schema change, so
            // the dispatchers never meet a plain-text secret.
            smsgate_core::webhooks::reseal_secrets(&db, &settings.core.webhook_secret_keys)
                .await
                .context("sealing webhook secrets")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some("rotate-webhook-secrets") => {
            let db = smsgate_api::connect_database(&settings).await?;
            let keys = &settings.core.webhook_secret_keys;
            let done = smsgate_core::webhooks::reseal_secrets(&db, keys)
                .await
                .context("sealing webhook secrets")?;
            println!(
                "webhook secrets under key `{}`: {} encrypted from plain text, {} re-sealed from older keys, {} unreadable",
                keys.primary_key_id(),
                done.encrypted,
                done.rotated,
                done.unreadable.len()
            );
            if !done.unreadable.is_empty() {
                anyhow::bail!(
                    "some webhook secrets do not open with WEBHOOK_SECRET_KEYS (see the log): keep every key they were sealed with"
                );
            }
            Ok(())
        }
        Some(other) => anyhow::bail!(
            "unknown command `{other}`; use `serve`, `migrate` or `rotate-webhook-secrets`"
        ),
    }
}
