//! `mock-hkt`: the mock HKT SMS gateway for the dev stack. Settings: `--help`, docs/mock-hkt.md.

use anyhow::Context;
use smsgate_mock_hkt::{MockHkt, Settings, USAGE};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let settings =
        Settings::parse(|key| std::env::var(key).ok(), args).context("mock-hkt settings")?;
    let mock = MockHkt::spawn(&settings.bind).await?;
    mock.set_config(settings.config);
    tracing::info!(
        gateway_url = %mock.gateway_url(),
        control_url = %format!("{}/mock/config", mock.base_url()),
        "mock HKT gateway listening"
    );

    shutdown_signal().await?;
    tracing::info!("stopping mock HKT gateway");
    mock.shutdown().await
}

/// Ctrl-C locally, SIGTERM from compose/systemd.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for ctrl-c")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}
