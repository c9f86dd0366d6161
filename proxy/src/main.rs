//! The `livegate-proxy` binary: parse the command line, load the configuration, run.

use std::process::ExitCode;

use clap::Parser;
use livegate_core::service::{ConfigArgs, OnDefaults};
use livegate_proxy::{Config, StartOptions};

/// Token-checking edge proxy for HTTP-FLV and HLS.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Take over the listeners of a running instance (send it SIGQUIT right after).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A proxy has no useful defaults (origins, token keys): without a file it says how to
    // give one.
    let config: Config = match cli.config.load("proxy", OnDefaults::Refuse) {
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
    let options = StartOptions {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
    };
    match livegate_proxy::run(&config, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("livegate-proxy: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
