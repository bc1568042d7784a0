use anyhow::Context;
use smsgate_dispatcher::settings::Settings;

/// jemalloc rather than glibc's malloc, as in the API: every job allocates on whichever
/// worker polls it and frees on another. The two dispatchers of `make bench`'s 100,000
/// recipient run used 15.1 s of CPU with glibc and 12.3 s with jemalloc (three runs each).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain, as the API prints it: a start refused
            // for a changed queue setting says what to do in it.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let _telemetry = smsgate_shared::telemetry::init("smsgate-dispatcher")
        .context("invalid telemetry configuration")?;
    let settings = Settings::from_env().context("invalid configuration")?;
    let dispatcher = smsgate_dispatcher::start(settings).await?;
    smsgate_shared::shutdown::signal().await;
    tracing::info!("shutting down: finishing in-flight sends");
    dispatcher.stop().await;
    Ok(())
}
