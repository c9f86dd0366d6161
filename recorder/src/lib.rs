//! livegate-recorder: every recording from the origin to an MP4 in storage, exactly once.
//!
//! Recordings arrive as bus jobs from the hooks service and are found by a scan and a watcher
//! of the recording directories; each gets one row in the durable job table
//! (`recording_jobs`), which the workers take through remux ([`media`]), storage
//! ([`storage`]), the stream's `record_url` and a "recording ready" event, and clean-up
//! ([`pipeline`]). [`App::build`] wires it from a [`Config`]; [`App::run`] works until
//! shutdown, then hands back what is in flight.

pub mod config;
pub mod files;
pub mod media;
pub mod metrics;
pub mod pipeline;
mod snapshots;
pub mod storage;
mod watch;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Bus, BusError};
use livegate_core::db::{Database, DbError};
use livegate_core::service::{self, bind, Readiness, Shutdown, Signals};
use livegate_core::telemetry::Registry;
use tokio::net::TcpListener;

pub use config::Config;

use crate::config::StorageKind;
use crate::media::{Layout, Tools};
use crate::metrics::Metrics;
use crate::pipeline::Context;
use crate::storage::local::LocalStorage;
use crate::storage::s3::S3Storage;
use crate::storage::Storage;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The bus could not be set up.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// A recording directory cannot be watched.
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    /// `remux.setpriv` names no executable.
    #[error(
        "remux.setpriv: {0} not found; install util-linux, or set remux.setpriv = \"\" to run \
         ffmpeg without a parent-death signal (a SIGKILL of the recorder then leaves it running)"
    )]
    Setpriv(String),
}

/// Whether `program` is an executable file: a path, or a name looked up on `PATH`.
fn is_executable(program: &std::path::Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The storage `config` names.
pub fn storage_of(config: &Config) -> Arc<dyn Storage> {
    match (config.storage.kind, &config.storage.s3) {
        (StorageKind::S3, Some(s3)) => Arc::new(S3Storage::new(s3)),
        _ => Arc::new(LocalStorage::new(&config.storage.local.dir)),
    }
}

/// A built, not yet running service.
#[derive(Debug)]
pub struct App {
    ctx: Context,
    registry: Arc<Registry>,
}

impl App {
    /// Connects the database (migrating it if configured) and the bus, and builds the storage
    /// client.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let setpriv = &config.remux.setpriv;
        if !setpriv.as_os_str().is_empty() && !is_executable(setpriv) {
            return Err(StartError::Setpriv(setpriv.display().to_string()));
        }
        let db = Database::connect(&config.database).await?;
        if config.database.migrate_on_start {
            db.migrate().await?;
        }
        let bus = Bus::connect(&config.bus)?;
        let storage = storage_of(&config);
        Ok(Self::build_with(config, db, bus, storage))
    }

    /// Builds the service around given dependencies.
    pub fn build_with(config: Config, db: Database, bus: Bus, storage: Arc<dyn Storage>) -> App {
        let mut registry = Registry::with_prefix("recorder");
        let metrics = Metrics::register(&mut registry);
        let tools = Tools {
            ffmpeg: config.remux.ffmpeg.clone(),
            ffprobe: config.remux.ffprobe.clone(),
            time_limit: Duration::from_millis(config.remux.time_limit_ms),
            duration_tolerance: Duration::from_millis(config.remux.duration_tolerance_ms),
            layout: if config.remux.fragmented {
                Layout::Fragmented
            } else {
                Layout::Faststart
            },
            setpriv: (!config.remux.setpriv.as_os_str().is_empty())
                .then(|| config.remux.setpriv.clone())
                .filter(|setpriv| {
                    let found = is_executable(setpriv);
                    if !found {
                        // `build` refuses this; a caller wiring the service itself gets it
                        // running without the parent-death signal rather than not at all.
                        tracing::warn!(
                            setpriv = %setpriv.display(),
                            "remux.setpriv not found: ffmpeg runs without a parent-death signal"
                        );
                    }
                    found
                }),
        };
        App {
            ctx: Context {
                config: Arc::new(config),
                db,
                bus,
                storage,
                tools,
                metrics,
            },
            registry: Arc::new(registry),
        }
    }

    /// Works and serves the admin endpoints on `admin_listener` until `shutdown` is requested,
    /// then stops the workers (each hands its job back) within `server.shutdown_grace_ms`.
    pub async fn run(self, admin_listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
        let App { ctx, registry } = self;
        let grace = Duration::from_millis(ctx.config.server.shutdown_grace_ms);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            admin.addr = %admin_listener.local_addr()?,
            database = ?ctx.db.backend(),
            storage = ctx.storage.kind(),
            workers = ctx.config.jobs.workers,
            watched_dirs = ctx.config.watch.dirs.len(),
            "livegate-recorder started"
        );
        let stop = shutdown.token().clone();
        let watching = watch::start(&ctx).map_err(std::io::Error::other)?;

        let (db, bus, storage) = (ctx.db.clone(), ctx.bus.clone(), ctx.storage.clone());
        let readiness = Readiness::new(Duration::from_secs(2))
            .check("database", move || {
                let db = db.clone();
                async move { db.ping().await }
            })
            .check("bus", move || {
                let bus = bus.clone();
                async move { bus.ping().await }
            })
            .check("storage", move || {
                let storage = storage.clone();
                async move { storage.check().await }
            });
        let admin = shutdown.spawn(service::admin::serve(
            admin_listener,
            service::admin::router(registry, readiness),
            stop.clone(),
        ));
        let mut workers = Vec::new();
        for index in 0..ctx.config.jobs.workers {
            workers.push(shutdown.spawn(worker::work(ctx.clone(), index, stop.clone())));
        }
        let watcher = shutdown.spawn(watch::run(ctx.clone(), watching, stop.clone()));
        let snapshots = shutdown.spawn(snapshots::run(ctx.clone(), stop.clone()));
        shutdown.spawn(worker::housekeeping(
            ctx.clone(),
            ctx.metrics.clone(),
            stop.clone(),
        ));

        shutdown.requested().await;
        let mut drain = shutdown.drain(grace);
        drain
            .step("workers handing back their jobs", async {
                for worker in workers {
                    let _ = worker.await;
                }
            })
            .await;
        drain.step("watcher", watcher).await;
        drain.step("snapshots", snapshots).await;
        drain.step("admin listener", admin).await;
        drain.tasks().await;
        drain.finish();
        tracing::info!("livegate-recorder stopped");
        Ok(())
    }
}

/// Why the process ended with an error.
pub type RunError = livegate_core::service::RunError<StartError>;

/// The process: binds the admin listener, builds the service and works until SIGTERM
/// (hand back and stop) or SIGINT (stop at once).
pub async fn serve(config: Config) -> Result<(), RunError> {
    let signals = Signals::install().map_err(RunError::Signals)?;
    let admin = bind(config.server.admin_listen, "server.admin_listen").await?;
    let app = App::build(config).await.map_err(RunError::Start)?;
    let shutdown = Shutdown::new();
    shutdown
        .run_with_signals(signals, app.run(admin, shutdown.clone()))
        .await
        .map_err(RunError::Serve)
}
