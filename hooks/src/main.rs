//! The `livegate-hooks` binary: command line, configuration, logging, then the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use livegate_core::service::{ConfigArgs, OnDefaults};
use livegate_hooks::Config;

/// Receives SRS, ZLMediaKit and nginx-rtmp callbacks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations and exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Without a file: the embedded defaults plus overrides (docs/hooks.md, "Running").
    let config: Config = match cli.config.load("hooks", OnDefaults::Run) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(err.exit_code());
        }
    };
    if cli.config.check_config {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    livegate_core::telemetry::init_logging(&config.log);
    let outcome = tokio::runtime::Runtime::new()
        .map_err(livegate_hooks::RunError::Runtime)
        .and_then(|runtime| {
            runtime.block_on(async {
                match cli.command {
                    Some(Command::Migrate) => livegate_hooks::migrate(&config)
                        .await
                        .map_err(livegate_hooks::RunError::Start),
                    None => livegate_hooks::serve(config).await,
                }
            })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, cause = ?std::error::Error::source(&err), "livegate-hooks failed");
            ExitCode::FAILURE
        }
    }
}
