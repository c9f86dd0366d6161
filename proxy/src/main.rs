//! The `livegate-proxy` binary: parse the command line, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use livegate_proxy::{Config, StartOptions};

/// Token-checking edge proxy for HTTP-FLV and HLS.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). `LIVEGATE_PROXY__SECTION__KEY` variables override it.
    #[arg(short, long, env = "LIVEGATE_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration, print `ok` and exit.
    #[arg(long)]
    check_config: bool,
    /// Take over the listeners of a running instance (send it SIGQUIT right after).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
}

/// `EX_USAGE`: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("livegate-proxy: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
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
