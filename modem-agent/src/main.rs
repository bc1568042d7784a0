use anyhow::Context;
use smsgate_modem_agent::{settings, SerialDevice, Settings};

// One modem, one SIM queue: a single-threaded runtime is plenty, and each worker thread
// would cost the Pi its own stack and malloc arena (the idle budget is 8 MB).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        print!("{}", settings::HELP);
        return Ok(());
    }
    let _telemetry = smsgate_shared::telemetry::init_without_export("smsgate-modem-agent")
        .context("invalid telemetry configuration")?;
    let settings = Settings::from_env().context("invalid configuration")?;
    let port = SerialDevice {
        path: settings.serial_device.clone(),
        baud: settings.baud,
    };
    let agent = smsgate_modem_agent::start(settings, port)
        .await
        .context("starting the modem agent")?;
    smsgate_shared::shutdown::signal().await;
    tracing::info!("shutting down: finishing the send in progress");
    agent.stop().await;
    Ok(())
}
