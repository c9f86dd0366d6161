//! The `livegate-hooks` binary: CLI, configuration, logging, then the library's `App`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use livegate_core::config::load;
use livegate_core::db::Database;
use livegate_hooks::config::ENV_PREFIX;
use livegate_hooks::{shutdown_signal, App, Config};
use tokio_util::sync::CancellationToken;

/// Receives SRS, ZLMediaKit and nginx-rtmp callbacks.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file; `LIVEGATE_HOOKS__SECTION__KEY` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load and validate the configuration, print `ok`, and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations and exit.
    Migrate,
}

/// `EX_USAGE`: the configuration is unusable.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: Config = match load(cli.config.as_deref(), ENV_PREFIX) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if cli.check_config {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    livegate_core::telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "livegate-hooks failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(command: Option<Command>, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(Command::Migrate) = command {
        Database::connect(&config.database).await?.migrate().await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    let listener = bind("server.listen", config.server.listen).await?;
    let admin = bind("server.admin_listen", config.server.admin_listen).await?;
    let app = App::build(config).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    let signal = async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        trigger.cancel();
    };
    let (served, ()) = tokio::join!(app.run(listener, admin, shutdown.clone()), async {
        tokio::select! {
            () = signal => {}
            () = shutdown.cancelled() => {}
        }
    });
    Ok(served?)
}

/// A listener that could not be opened, naming its address and configuration key.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({key}): {source}")]
struct BindError {
    key: &'static str,
    addr: SocketAddr,
    source: std::io::Error,
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { key, addr, source })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
