use anyhow::Context;
use smsgate_dispatcher::settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = smsgate_shared::telemetry::init("smsgate-dispatcher");
    let settings = Settings::from_env().context("invalid configuration")?;
    let dispatcher = smsgate_dispatcher::start(settings).await?;
    smsgate_shared::shutdown::signal().await;
    tracing::info!("shutting down: finishing in-flight sends");
    dispatcher.stop().await;
    Ok(())
}
