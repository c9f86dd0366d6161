//! The `livegate-api` binary: command line, configuration, logging, then the library.

use std::io::BufRead as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use livegate_api::{Config, RunError};
use livegate_core::service::{ConfigArgs, OnDefaults};

/// The room API: accounts, rooms and stream keys, kicks, play tokens.
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
    /// Manage admin accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an admin. The password is read from the first line of standard input (never
    /// from the command line, which other users can see).
    Create {
        /// The admin's username.
        #[arg(long)]
        username: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: Config = match cli.config.load("api", OnDefaults::Refuse) {
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
        .map_err(RunError::Runtime)
        .and_then(|runtime| {
            runtime.block_on(async {
                match cli.command {
                    Some(Command::Migrate) => livegate_api::migrate(&config)
                        .await
                        .map_err(RunError::Start),
                    Some(Command::Admin(AdminCommand::Create { username })) => {
                        let mut password = String::new();
                        std::io::stdin()
                            .lock()
                            .read_line(&mut password)
                            .map_err(RunError::Runtime)?;
                        let password = password.trim_end_matches(['\r', '\n']);
                        let id = livegate_api::admin_create(config, &username, password)
                            .await
                            .map_err(RunError::Start)?;
                        println!("created admin {username} (id {id})");
                        Ok(())
                    }
                    None => livegate_api::serve(config).await,
                }
            })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, cause = ?std::error::Error::source(&err), "livegate-api failed");
            eprintln!("livegate-api: {err}");
            ExitCode::FAILURE
        }
    }
}
