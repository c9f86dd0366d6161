//! The `livegate` binary: the command line over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use livegate::token_tool::{self, Verdict};
use livegate::up::{Plan, UpOptions};
use livegate_core::service::Shutdown;
use livegate_core::Secret;

/// The livegate toolkit: `livegate up` runs all of it; the rest are operator tools.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole toolkit (proxy, hooks, API, recorder) in one process on embedded
    /// defaults (SQLite, in-process bus).
    Up {
        /// Where the database, recordings and keys live.
        #[arg(long, default_value = ".livegate")]
        data_dir: PathBuf,
        /// The origin's HTTP server (SRS's `http_server.listen`).
        #[arg(long, default_value = "127.0.0.1:8081")]
        origin: String,
        /// Use this Redis instead of the in-process bus.
        #[arg(long, value_name = "URL")]
        with_redis: Option<String>,
        /// Use this MySQL/MariaDB instead of the SQLite file.
        #[arg(long, value_name = "URL")]
        with_mysql: Option<String>,
        /// Host name used in the printed publish and play URLs.
        #[arg(long, default_value = "127.0.0.1")]
        public_host: String,
        /// Added to every port (8080, 8085, 8090 and the admin ports 9180, 9185, 9190, 9195),
        /// to run two side by side.
        #[arg(long, default_value_t = 0)]
        port_offset: u16,
        /// A directory the origin records into, besides DATA_DIR/recordings (nginx-rtmp's
        /// `record_path`, SRS's `dvr_path` directory): the recorder watches these, and takes
        /// the files its callbacks name only from them. Repeatable.
        #[arg(long, value_name = "DIR")]
        recordings_from: Vec<PathBuf>,
    },
    /// Mint or check play tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Validate configuration files, each as the proxy's, the hooks service's, the API's or
    /// the recorder's (recognised by its sections).
    CheckConfig {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a deployment from its configuration files: origin, hooks, database, bus, keys,
    /// clock.
    Doctor {
        /// The proxy's configuration.
        #[arg(long, value_name = "FILE")]
        proxy: Option<PathBuf>,
        /// The hooks service's configuration.
        #[arg(long, value_name = "FILE")]
        hooks: Option<PathBuf>,
        /// The API's configuration.
        #[arg(long, value_name = "FILE")]
        api: Option<PathBuf>,
        /// SRS's configuration (to check its hook URLs).
        #[arg(long, value_name = "FILE")]
        srs_config: Option<PathBuf>,
    },
    /// Apply pending database migrations.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage rooms.
    Room {
        #[command(subcommand)]
        command: RoomCommand,
    },
    /// Load a deployment with publishers and FLV/HLS viewers; report what viewers feel.
    Loadtest {
        #[command(flatten)]
        args: livegate::loadtest::Args,
    },
}

/// Which database: a URL, or the `livegate up` data directory's SQLite file.
#[derive(Debug, clap::Args)]
struct DbArgs {
    /// `mysql://…` or `sqlite:…` (may be `env:NAME`). Default: the data directory's.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// The data directory.
    #[arg(long, default_value = ".livegate")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input.
    Create {
        /// Its name.
        #[arg(long)]
        username: String,
        /// `admin`, `streamer` or `viewer`.
        #[arg(long, default_value = "streamer")]
        role: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Create a room for an account and print its stream key.
    Create {
        /// The owner's username.
        #[arg(long)]
        owner: String,
        /// The room's title.
        #[arg(long, default_value = "")]
        title: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List enabled rooms, live first.
    List {
        /// Most rooms shown.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Give a room a new stream key (the API's rotate also kicks a live publisher).
    RotateKey {
        /// The room.
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a token for a room.
    Mint {
        /// The room.
        #[arg(long)]
        room: u64,
        /// Seconds it stays valid.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Signing key (or `env:NAME`, `file:PATH`). Default: the `livegate up` data directory's.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// The data directory whose key to use.
        #[arg(long, default_value = ".livegate")]
        data_dir: PathBuf,
    },
    /// Explain whether a play URL (or a bare token) is accepted, and why not.
    Verify {
        /// `http://edge/live/42.flv?token=…`, or a token.
        input: String,
        /// Keys to try, newest first (repeat the flag). Default: the data directory's.
        #[arg(long, value_name = "KEY")]
        key: Vec<String>,
        /// Seconds a token stays valid past its expiry.
        #[arg(long, default_value_t = 0)]
        leeway: u64,
        /// The data directory whose key to use.
        #[arg(long, default_value = ".livegate")]
        data_dir: PathBuf,
    },
}

fn keys_from(flags: Vec<String>, data_dir: &std::path::Path) -> Result<Vec<Secret>, String> {
    if !flags.is_empty() {
        return flags
            .into_iter()
            .map(|flag| Secret::resolve(&flag))
            .collect();
    }
    let data = livegate::data::DataDir::open(data_dir).map_err(|err| err.to_string())?;
    let (secrets, made) = data.secrets().map_err(|err| err.to_string())?;
    if made {
        eprintln!(
            "made new keys in {} (no `livegate up` data there before)",
            data.root().display()
        );
    }
    Ok(vec![Secret::new(secrets.token_key)])
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Up {
            data_dir,
            origin,
            with_redis,
            with_mysql,
            public_host,
            port_offset,
            recordings_from,
        } => up(UpOptions {
            data_dir,
            origin,
            redis: with_redis,
            mysql: with_mysql,
            public_host,
            port_offset,
            recordings_from,
        }),
        Command::Token { command } => token(command),
        Command::Doctor {
            proxy,
            hooks,
            api,
            srs_config,
        } => doctor(proxy, hooks, api, srs_config),
        Command::Migrate { db } => ops(db, |db| async move {
            drop(db);
            println!("migrations applied");
            Ok(())
        }),
        Command::User {
            command: UserCommand::Create { username, role, db },
        } => {
            let mut password = String::new();
            if let Err(err) = std::io::stdin().read_line(&mut password) {
                eprintln!("livegate user create: reading the password: {err}");
                return ExitCode::from(livegate_core::service::EX_USAGE);
            }
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            ops(db, move |db| async move {
                let id = livegate::ops::create_user(&db, &username, &password, &role).await?;
                println!("user {id} ({username}, {role}) created");
                Ok(())
            })
        }
        Command::Room { command } => match command {
            RoomCommand::Create { owner, title, db } => ops(db, move |db| async move {
                let user = livegate_core::db::users::by_username(&db, &owner)
                    .await?
                    .ok_or_else(|| {
                        livegate::ops::OpsError::Refused(format!("owner: no user `{owner}`"))
                    })?;
                let room = livegate::ops::create_room(&db, user.id, &title).await?;
                println!("room {} created; stream key {}", room.id, room.stream_key);
                Ok(())
            }),
            RoomCommand::List { limit, db } => ops(db, move |db| async move {
                for room in livegate::ops::list_rooms(&db, limit).await? {
                    println!(
                        "{:>6}  {:<7}  owner {:<6}  {}",
                        room.id,
                        if room.is_live { "live" } else { "offline" },
                        room.owner_id,
                        room.title
                    );
                }
                Ok(())
            }),
            RoomCommand::RotateKey { id, db } => ops(db, move |db| async move {
                let key = livegate::ops::rotate_key(&db, id).await?;
                println!("room {id}: new stream key {key}");
                Ok(())
            }),
        },
        Command::CheckConfig { files } => {
            let mut failed = false;
            for file in files {
                match livegate::check::check(&file) {
                    Ok(service) => println!("{}: ok ({})", file.display(), service.name()),
                    Err(problems) => {
                        failed = true;
                        println!("{}: {problems}", file.display());
                    }
                }
            }
            if failed {
                ExitCode::from(livegate_core::service::EX_USAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Loadtest { args } => livegate::loadtest::main(args),
    }
}

/// Runs an operator command on the database `args` names.
fn ops<F, Fut>(args: DbArgs, command: F) -> ExitCode
where
    F: FnOnce(livegate_core::db::Database) -> Fut,
    Fut: std::future::Future<Output = Result<(), livegate::ops::OpsError>>,
{
    let url = match args.database.as_deref().map(Secret::resolve).transpose() {
        Ok(url) => url,
        Err(err) => {
            eprintln!("livegate: database: {err}");
            return ExitCode::from(livegate_core::service::EX_USAGE);
        }
    };
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|err| livegate::ops::OpsError::Refused(err.to_string()))
        .and_then(|runtime| {
            runtime.block_on(async {
                let db =
                    livegate::ops::open(url.as_ref().map(Secret::expose), &args.data_dir).await?;
                command(db).await
            })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("livegate: {err}");
            ExitCode::FAILURE
        }
    }
}

fn doctor(
    proxy: Option<PathBuf>,
    hooks: Option<PathBuf>,
    api: Option<PathBuf>,
    srs: Option<PathBuf>,
) -> ExitCode {
    let deployment = match livegate::doctor::load(
        proxy.as_deref(),
        hooks.as_deref(),
        api.as_deref(),
        srs.as_deref(),
    ) {
        Ok(deployment) => deployment,
        Err(err) => {
            eprintln!("livegate doctor: {err}");
            return ExitCode::from(livegate_core::service::EX_USAGE);
        }
    };
    let checks = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(livegate::doctor::run(&deployment)),
        Err(err) => {
            eprintln!("livegate doctor: {err}");
            return ExitCode::FAILURE;
        }
    };
    if checks.is_empty() {
        eprintln!("livegate doctor: give at least one of --proxy, --hooks, --api");
        return ExitCode::from(livegate_core::service::EX_USAGE);
    }
    let mut healthy = true;
    for check in &checks {
        match &check.outcome {
            Ok(detail) => println!("ok    {:<18} {detail}", check.what),
            Err(problem) => {
                healthy = false;
                println!("FAIL  {:<18} {problem}", check.what);
            }
        }
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn up(options: UpOptions) -> ExitCode {
    let plan = match Plan::new(options) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("livegate up: {err}");
            return ExitCode::from(livegate_core::service::EX_USAGE);
        }
    };
    livegate_core::telemetry::init_logging(&plan.hooks.log);
    let outcome = tokio::runtime::Runtime::new()
        .map_err(livegate::up::UpError::Io)
        .and_then(|runtime| runtime.block_on(livegate::up::run(plan, Shutdown::new())));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("livegate up: {err}");
            ExitCode::FAILURE
        }
    }
}

fn token(command: TokenCommand) -> ExitCode {
    let outcome = match command {
        TokenCommand::Mint {
            room,
            ttl,
            key,
            data_dir,
        } => keys_from(key.into_iter().collect(), &data_dir)
            .and_then(|keys| token_tool::mint(&keys, room, Duration::from_secs(ttl)))
            .map(|(token, expires_at)| {
                println!("{token}");
                eprintln!("room {room}, valid through unix second {expires_at}");
                true
            }),
        TokenCommand::Verify {
            input,
            key,
            leeway,
            data_dir,
        } => keys_from(key, &data_dir).and_then(|keys| {
            token_tool::verify(&keys, &input, Duration::from_secs(leeway), livegate_core::unix_now())
        })
        .map(|verdict| match verdict {
            Verdict::Accepted {
                room,
                expires_at,
                key,
            } => {
                let left = expires_at as i64 - livegate_core::unix_now() as i64;
                println!("accepted: room {room}, expires at unix second {expires_at} (in {left} s), signed by key #{key}");
                true
            }
            Verdict::Refused { reason, detail } => {
                println!("refused: {} — {detail}", reason.as_str());
                false
            }
        }),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("livegate token: {err}");
            ExitCode::from(livegate_core::service::EX_USAGE)
        }
    }
}
