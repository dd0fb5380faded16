//! `tributary`: the admin CLI (see `broker::cli` and docs/operations.md).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = broker::cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    match broker::cli::run(cli, &mut out).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
