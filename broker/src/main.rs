//! `broker`: runs a Tributary node. With no arguments it is a single combined broker and
//! controller on 127.0.0.1:9092 with data under ./data (see `config` for every source).
//!
//! A fatal start-up error prints one line to stderr (`start_error::explain`: what failed, why,
//! what to do) and exits with status 1; the error's full structure (`Debug`) follows only when
//! `RUST_BACKTRACE` asks for detail.

use std::error::Error;
use std::process::ExitCode;

use broker::config::BrokerConfig;

fn main() -> ExitCode {
    // The configuration first: it says how to log (`log.format`).
    let config = match BrokerConfig::from_args_and_env(std::env::args().skip(1), std::env::vars()) {
        Ok(config) => config,
        Err(e) => return fatal(&e),
    };
    broker::logging::init(config.log_format);
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fatal(&e),
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&*e),
    }
}

async fn run(config: BrokerConfig) -> Result<(), Box<dyn Error + Send + Sync>> {
    let effective: Vec<String> = config.all().map(|(k, v, _)| format!("{k}={v}")).collect();
    tracing::info!(config = %effective.join(" "), "effective configuration");
    if config.get("cordoned.log.dirs").is_some() {
        tracing::warn!("cordoned.log.dirs is ignored in the properties: cordon a broker with a dynamic config (IncrementalAlterConfigs on the broker), which the controller sees");
    }
    // Before starting, so that no SIGTERM is missed between start-up and the wait below. One
    // that arrives during start-up (e.g. while waiting for an unreachable quorum) ends it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let running = tokio::select! {
        biased;
        r = broker::broker::start(config) => r?,
        _ = term.recv() => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
        _ = tokio::signal::ctrl_c() => return Ok(()),
    };
    let health = running.health.clone();
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = health.fatal_notify.notified() => {
            // The metadata log cannot be written (a full disk): stop at once, as Kafka halts,
            // so that a supervisor restarts the node, which says on start what is wrong. The
            // partition logs need no clean close (recovery runs on start).
            let reason = health.fatal.lock().map(|r| r.clone()).ok().flatten().unwrap_or_default();
            return Err(Box::new(Fatal(reason)));
        }
    }
    running.shutdown().await;
    Ok(())
}

/// A failure after start-up that stops the node.
#[derive(Debug, thiserror::Error)]
#[error("{0}; free space in the log directory (or fix the I/O error) and restart the node")]
struct Fatal(String);

/// Each connection and segment is a descriptor: take the hard limit, and say what it is.
fn raise_open_files_limit() {
    let (raised, soft, hard) = broker::server::limits::raise_open_files_limit();
    let show = |l: Option<u64>| l.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    match raised {
        Ok(()) => tracing::info!(
            soft = %show(soft),
            hard = %show(hard),
            "open files limit (RLIMIT_NOFILE) in effect"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            soft = %show(soft),
            hard = %show(hard),
            "could not raise the open files limit (RLIMIT_NOFILE) to the hard limit"
        ),
    }
}

/// Prints the one-line explanation of a fatal error (and, when `RUST_BACKTRACE` is set, the
/// error's `Debug` form with every field of the chain) and returns the failure status.
fn fatal(err: &(dyn Error + 'static)) -> ExitCode {
    eprintln!("{}", broker::start_error::explain(err));
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("{err:?}");
    }
    ExitCode::FAILURE
}
