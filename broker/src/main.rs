//! `broker`: runs a Tributary node. With no arguments it is a single combined broker and
//! controller on 127.0.0.1:9092 with data under ./data (see `config` for every source).

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The configuration first: it says how to log (`log.format`).
    let config =
        broker::config::BrokerConfig::from_args_and_env(std::env::args().skip(1), std::env::vars())
            .context("invalid configuration")?;
    broker::logging::init(config.log_format);
    let effective: Vec<String> = config.all().map(|(k, v, _)| format!("{k}={v}")).collect();
    tracing::info!(config = %effective.join(" "), "effective configuration");
    if config.get("cordoned.log.dirs").is_some() {
        tracing::warn!("cordoned.log.dirs is ignored in the properties: cordon a broker with a dynamic config (IncrementalAlterConfigs on the broker), which the controller sees");
    }
    // Before starting: a SIGTERM that arrives while the node starts stops it cleanly after.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let running = broker::broker::start(config)
        .await
        .context("broker failed to start")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    running.shutdown().await;
    Ok(())
}
