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

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Bus, BusError};
use livegate_core::db::{Database, DbError};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::metrics::Metrics;
use crate::outbox::OutboxWorker;
use livegate_core::origin::srs::SrsApi;
use livegate_core::origin::zlm::ZlmApi;
use livegate_core::origin::{OriginControl, OriginError};

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
        Self::build_with(
            config,
            Deps {
                db,
                bus,
                origins: Origins { srs, zlm },
            },
        )
    }

    /// Builds the service around given dependencies.
    pub fn build_with(config: Config, deps: Deps) -> Result<App, StartError> {
        let mut registry = Registry::default();
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

    /// Serves hooks on `listener` and the admin endpoints on `admin` until `shutdown` fires,
    /// then drains requests and pending bus writes within `server.shutdown_grace_ms`.
    pub async fn run(
        self,
        listener: TcpListener,
        admin: TcpListener,
        shutdown: CancellationToken,
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
            admin.addr = %admin.local_addr()?,
            database = ?state.db().backend(),
            bus = match state.bus() { Bus::Redis(_) => "redis", Bus::Memory(_) => "memory" },
            "livegate-hooks listening"
        );

        let worker_stop = CancellationToken::new();
        let worker = tokio::spawn(worker.run(worker_stop.clone()));
        let reconciler = reconcile::wanted(&state)
            .then(|| tokio::spawn(reconcile::run(state.clone(), shutdown.child_token())));
        let resyncer = (state.config().outbox.resync_interval_ms > 0)
            .then(|| tokio::spawn(resync::run(state.clone(), shutdown.child_token())));
        let admin_server = tokio::spawn(
            axum::serve(admin, admin::router(state.clone(), registry))
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );

        let app =
            handlers::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        let mut serve = std::pin::pin!(serve);
        let served = tokio::select! {
            result = &mut serve => result,
            () = shutdown.cancelled() => match tokio::time::timeout(grace, &mut serve).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still running after the grace period, abandoning them");
                    Ok(())
                }
            },
        };
        // Also on a listener error: stop everything else before returning.
        shutdown.cancel();
        // Publishes still finishing past their deadline (bounded by the statement timeout).
        state.tasks().close();
        if tokio::time::timeout(grace, state.tasks().wait())
            .await
            .is_err()
        {
            tracing::warn!("request work still running after the grace period, abandoning it");
        }

        worker_stop.cancel();
        if tokio::time::timeout(grace, worker).await.is_err() {
            tracing::warn!("bus writes still pending after the grace period, abandoning them");
        }
        if let Some(reconciler) = reconciler {
            let _ = reconciler.await;
        }
        if let Some(resyncer) = resyncer {
            let _ = resyncer.await;
        }
        if tokio::time::timeout(grace, admin_server).await.is_err() {
            tracing::warn!("admin listener did not stop within the grace period");
        }
        tracing::info!("livegate-hooks stopped");
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
