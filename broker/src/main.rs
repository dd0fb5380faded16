//! `broker`: runs a Tributary node. With no arguments it is a single combined broker and
//! controller on 127.0.0.1:9092 with data under ./data (see `config` for every source).

use anyhow::Context;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let config =
        broker::config::BrokerConfig::from_args_and_env(std::env::args().skip(1), std::env::vars())
            .context("invalid configuration")?;
    let effective: Vec<String> = config.all().map(|(k, v, _)| format!("{k}={v}")).collect();
    tracing::info!(config = %effective.join(" "), "effective configuration");
    if config.get("cordoned.log.dirs").is_some() {
        tracing::warn!("cordoned.log.dirs is ignored in the properties: cordon a broker with a dynamic config (IncrementalAlterConfigs on the broker), which the controller sees");
    }
    let running = broker::broker::start(config)
        .await
        .context("broker failed to start")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    running.shutdown().await;
    Ok(())
}
