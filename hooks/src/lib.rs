//! livegate-hooks: the HTTP callback receiver for SRS, ZLMediaKit and nginx-rtmp.
//!
//! It authorises publishers (room id from the stream name, stream key from the query), keeps
//! the rooms' live state in the database and on the bus, queues finished recordings for the
//! recorder, verifies play tokens for pulls that bypass the proxy, and reconciles with the SRS
//! and ZLMediaKit HTTP APIs (and ZLMediaKit's keepalives). [`App::build`] wires it from a [`Config`]; [`App::run`] serves until shutdown.

pub mod admin;
pub mod config;
pub mod dialect;
pub mod handlers;
pub mod metrics;
pub mod outbox;
pub mod reconcile;
pub mod reply;
pub mod resync;
pub mod state;
pub mod zlm;

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Bus, BusError};
use livegate_core::db::{Database, DbError};
use livegate_core::origin::srs::SrsApi;
use livegate_core::origin::zlm::ZlmApi;
use livegate_core::origin::{OriginControl, OriginError};
use livegate_core::service::{self, bind, CancellationToken, Shutdown, Signals};
use livegate_core::telemetry::Registry;
use tokio::net::TcpListener;

pub use config::Config;

use crate::metrics::Metrics;
use crate::outbox::OutboxWorker;
use crate::state::{AppState, KeysError, Origins};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The bus could not be set up.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The play token keys are unusable.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// An origin API client could not be built.
    #[error("origin API client: {0}")]
    OriginApi(#[from] OriginError),
}

/// The external parts the service talks to, injectable for tests.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The database (already migrated).
    pub db: Database,
    /// The bus.
    pub bus: Bus,
    /// The origins' HTTP APIs, for reconciliation and kicks.
    pub origins: Origins,
}

/// The origins' HTTP API clients `config` describes (SRS and ZLMediaKit; nginx-rtmp has none).
pub fn origins(config: &Config) -> Result<Origins, StartError> {
    let timeout = Duration::from_millis(config.reconcile.api_timeout_ms);
    let srs = match &config.reconcile.srs_api_url {
        Some(url) => Some(Arc::new(SrsApi::new(
            url,
            config.reconcile.username.as_deref(),
            config.reconcile.password.as_ref(),
            timeout,
        )?) as Arc<dyn OriginControl>),
        None => None,
    };
    let zlm_config = &config.zlmediakit;
    let zlm = match (
        &zlm_config.api_url,
        &zlm_config.api_secret,
        &zlm_config.server_id,
    ) {
        (Some(url), Some(secret), Some(server_id)) => {
            Some(
                Arc::new(ZlmApi::new(url, secret.clone(), server_id, timeout)?)
                    as Arc<dyn OriginControl>,
            )
        }
        _ => None,
    };
    Ok(Origins { srs, zlm })
}

/// A built, not yet running service.
#[derive(Debug)]
pub struct App {
    state: AppState,
    registry: Arc<Registry>,
    worker: OutboxWorker,
}

impl App {
    /// Connects the database (migrating it if configured), the bus and the SRS API.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let mut db_config = config.database.clone();
        // A statement of a request that gave up must not outlive the request by much.
        db_config
            .statement_timeout_ms
            .get_or_insert(config.server.deadline_ms);
        let db = Database::connect(&db_config).await?;
        if config.database.migrate_on_start {
            db.migrate().await?;
        }
        if let Err(err) = db.warm_up().await {
            // The service starts anyway: the pool opens connections as they are needed.
            tracing::warn!(error = %err, "could not open the database connections ahead of use");
        }
        let bus = Bus::connect(&config.bus)?;
        let origins = origins(&config)?;
        Self::build_with(config, Deps { db, bus, origins })
    }

    /// Builds the service around given dependencies.
    pub fn build_with(config: Config, deps: Deps) -> Result<App, StartError> {
        let mut registry = Registry::with_prefix("hooks");
        let metrics = Metrics::register(&mut registry);
        let (outbox, worker) = outbox::outbox(
            deps.bus.clone(),
            deps.db.clone(),
            &config.outbox,
            metrics.clone(),
        );
        let state = AppState::new(config, deps.db, deps.bus, outbox, metrics, deps.origins)?;
        Ok(App {
            state,
            registry: Arc::new(registry),
            worker,
        })
    }

    /// The shared state (for calling [`reconcile::reconcile_once`] or [`reconcile::kick`]).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves hooks on `listener` and the admin endpoints on `admin_listener` until `shutdown` is
    /// requested, then drains, all within one `server.shutdown_grace_ms`: the requests in
    /// flight, the publishes still finishing past their deadline, the bus writes they
    /// queued, the admin listener and the background tasks. An immediate stop
    /// ([`Stop::Now`]) abandons all of that.
    pub async fn run(
        self,
        listener: TcpListener,
        admin_listener: TcpListener,
        shutdown: Shutdown,
    ) -> std::io::Result<()> {
        let App {
            state,
            registry,
            worker,
        } = self;
        let grace = Duration::from_millis(state.config().server.shutdown_grace_ms);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            hooks.addr = %listener.local_addr()?,
            admin.addr = %admin_listener.local_addr()?,
            database = ?state.db().backend(),
            bus = match state.bus() { Bus::Redis(_) => "redis", Bus::Memory(_) => "memory" },
            "livegate-hooks listening"
        );

        let stop = shutdown.token().clone();
        // The outbox outlives the requests: it applies what they queue while they drain.
        let worker_stop = CancellationToken::new();
        let worker = shutdown.spawn(worker.run(worker_stop.clone()));
        if reconcile::wanted(&state) {
            shutdown.spawn(reconcile::run(state.clone(), stop.clone()));
        }
        if state.config().outbox.resync_interval_ms > 0 {
            shutdown.spawn(resync::run(state.clone(), stop.clone()));
        }
        let admin_server = shutdown.spawn(service::admin::serve(
            admin_listener,
            service::admin::router(registry, admin::readiness(&state)),
            stop.clone(),
        ));

        // The kit's server: a caller that never finishes its request head, or an idle
        // connection, is closed rather than held for ever.
        let serve = livegate_core::service::http::serve(
            listener,
            handlers::router(state.clone()),
            livegate_core::service::http::HttpLimits::default(),
            stop.clone(),
        );
        let (mut drain, served) = shutdown.serve_then_drain(serve, grace).await;
        // Publishes still finishing past their deadline (bounded by the statement timeout).
        state.tasks().close();
        drain
            .step("publishes past their deadline", state.tasks().wait())
            .await;
        worker_stop.cancel();
        drain.step("bus writes", worker).await;
        drain.step("admin listener", admin_server).await;
        drain.tasks().await;
        drain.finish();
        tracing::info!("livegate-hooks stopped");
        served
    }
}

/// Why the process ended with an error.
pub type RunError = livegate_core::service::RunError<StartError>;

/// The process: binds the listeners, builds the service and serves until SIGTERM (drain) or
/// SIGINT (stop at once).
pub async fn serve(config: Config) -> Result<(), RunError> {
    // First, so that a signal arriving while the service starts is not lost.
    let signals = Signals::install().map_err(RunError::Signals)?;
    let listener = bind(config.server.listen, "server.listen").await?;
    let admin = bind(config.server.admin_listen, "server.admin_listen").await?;
    let app = App::build(config).await.map_err(RunError::Start)?;
    let shutdown = Shutdown::new();
    shutdown
        .run_with_signals(signals, app.run(listener, admin, shutdown.clone()))
        .await
        .map_err(RunError::Serve)
}

/// `livegate-hooks migrate`: applies the pending database migrations.
pub async fn migrate(config: &Config) -> Result<(), StartError> {
    Database::connect(&config.database).await?.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}
