//! The `livegate-recorder` binary: command line, configuration, logging, then the library.

use std::process::ExitCode;

use clap::Parser;
use livegate_core::service::{ConfigArgs, OnDefaults};
use livegate_recorder::Config;

/// Turns the origins' recordings into MP4s in storage.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Without a file: the embedded defaults (SQLite, in-process bus, local storage).
    let config: Config = match cli.config.load("recorder", OnDefaults::Run) {
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
        .map_err(livegate_recorder::RunError::Runtime)
        .and_then(|runtime| runtime.block_on(livegate_recorder::serve(config)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, cause = ?std::error::Error::source(&err), "livegate-recorder failed");
            ExitCode::FAILURE
        }
    }
}
