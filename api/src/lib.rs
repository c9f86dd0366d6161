//! livegate-api: the room API platforms' apps and pages talk to.
//!
//! Accounts and login sessions (argon2id passwords, JWT access tokens, rotating refresh
//! tokens), rooms and their stream keys, kicking live publishers through the origins'
//! control APIs, and play tokens for the edge. [`App::build`] wires it from a [`Config`];
//! [`App::run`] serves until shutdown.

pub mod audit;
pub mod auth;
pub mod chat;
pub mod client;
pub mod config;
pub mod console;
pub mod error;
pub mod kick;
pub mod metrics;
pub mod openapi;
pub mod payments;
pub mod routes;
pub mod state;
pub mod validate;
pub mod viewers;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::{Bus, BusError};
use livegate_core::db::{users, Database, DbError};
use livegate_core::origin::OriginError;
use livegate_core::service::{self, bind, Readiness, Shutdown, Signals};
use livegate_core::telemetry::Registry;
use livegate_core::token::{KeyError, TokenKeys};
use tokio::net::TcpListener;

pub use config::Config;

use crate::auth::jwt::Jwt;
use crate::auth::password::{PasswordError, Passwords};
use crate::auth::Role;
use crate::kick::Origins;
use crate::metrics::Metrics;
use crate::state::AppState;

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
    #[error("play_token.keys: {0}")]
    PlayKeys(#[from] KeyError),
    /// No JWT key is configured.
    #[error("auth.jwt_keys: must list at least one key")]
    NoJwtKeys,
    /// The argon2 parameters are unusable.
    #[error("auth: {0}")]
    Passwords(#[from] PasswordError),
    /// An origin control client could not be built.
    #[error("origins: {0}")]
    Origin(#[from] OriginError),
    /// The first admin could not be created.
    #[error("auth.first_admin: {0}")]
    FirstAdmin(String),
}

/// The external parts the service talks to, injectable for tests.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The database (already migrated).
    pub db: Database,
    /// The bus.
    pub bus: Bus,
    /// The origins' control APIs.
    pub origins: Origins,
}

/// A built, not yet running service.
#[derive(Debug)]
pub struct App {
    state: AppState,
    registry: Arc<Registry>,
}

impl App {
    /// Connects the database (migrating it if configured) and the bus, builds the origin
    /// clients, and creates `auth.first_admin` if it does not exist yet.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let db = Database::connect(&config.database).await?;
        if config.database.migrate_on_start {
            db.migrate().await?;
        }
        let bus = Bus::connect(&config.bus)?;
        let origins = Origins::from_config(&config.origins)?;
        let app = Self::build_with(config, Deps { db, bus, origins })?;
        app.ensure_first_admin().await?;
        Ok(app)
    }

    /// Builds the service around given dependencies.
    pub fn build_with(config: Config, deps: Deps) -> Result<App, StartError> {
        let mut registry = Registry::with_prefix("api");
        let metrics = Metrics::register(&mut registry);
        let chat_metrics = chat::metrics::ChatMetrics::register(&mut registry);
        let jwt = Jwt::new(&config.auth.jwt_keys, config.auth.access_ttl_s)
            .ok_or(StartError::NoJwtKeys)?;
        let passwords = Passwords::new(&config.auth)?;
        let play_keys = TokenKeys::new(&config.play_token.keys)?;
        let state = AppState::new(state::Parts {
            config,
            db: deps.db,
            bus: deps.bus,
            jwt,
            passwords,
            play_keys,
            origins: deps.origins,
            metrics,
            chat_metrics,
        });
        Ok(App {
            state,
            registry: Arc::new(registry),
        })
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    async fn ensure_first_admin(&self) -> Result<(), StartError> {
        let Some(admin) = &self.state.config().auth.first_admin else {
            return Ok(());
        };
        if users::by_username(self.state.db(), &admin.username)
            .await?
            .is_some()
        {
            return Ok(());
        }
        create_admin(&self.state, &admin.username, admin.password.expose()).await?;
        Ok(())
    }

    /// Serves the API on `listener` and the admin endpoints on `admin_listener` until
    /// `shutdown` is requested, then drains the requests in flight within one
    /// `server.shutdown_grace_ms`.
    pub async fn run(
        self,
        listener: TcpListener,
        admin_listener: TcpListener,
        shutdown: Shutdown,
    ) -> std::io::Result<()> {
        let App { state, registry } = self;
        let grace = Duration::from_millis(state.config().server.shutdown_grace_ms);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            api.addr = %listener.local_addr()?,
            admin.addr = %admin_listener.local_addr()?,
            database = ?state.db().backend(),
            "livegate-api listening"
        );
        routes::rooms::manage::republish_revocations(&state).await;
        let stop = shutdown.token().clone();
        let (db, bus) = (state.db().clone(), state.bus().clone());
        let readiness = Readiness::new(Duration::from_secs(1))
            .check("database", move || {
                let db = db.clone();
                async move { db.ping().await }
            })
            .check("bus", move || {
                let bus = bus.clone();
                async move { bus.ping().await }
            });
        let limits = state.config().server.http_limits();
        let admin_server = shutdown.spawn(service::admin::serve_with(
            admin_listener,
            service::admin::router(registry, readiness),
            limits,
            stop.clone(),
        ));
        let edge_viewers = {
            let (state, stop) = (state.clone(), stop.clone());
            shutdown.spawn(async move {
                let bus = state.bus().clone();
                state.edge_viewers().follow(bus, stop).await;
            })
        };
        let gift_relay = shutdown.spawn(payments::relay::run(state.clone(), stop.clone()));
        let live_feed = shutdown.spawn(console::feed::run(state.clone(), stop.clone()));
        let history = shutdown.spawn(console::history::run(state.clone(), stop.clone()));
        let chat_store = state
            .chat()
            .start(&state.config().chat, state.bus().clone(), &shutdown);
        let chat_state = state.clone();
        let serve = service::http::serve(listener, routes::router(state), limits, stop);
        let (mut drain, served) = shutdown.serve_then_drain(serve, grace).await;
        // The connections closed with the requests (they end on the stop token): what they
        // queued for the database is written last.
        chat_state.chat().stop_store();
        drain.step("chat store", chat_store).await;
        drain.step("admin listener", admin_server).await;
        drain.step("edge viewer counts", edge_viewers).await;
        drain.step("gift relay", gift_relay).await;
        drain.step("live feed", live_feed).await;
        drain.step("history sampler", history).await;
        drain.tasks().await;
        drain.finish();
        tracing::info!("livegate-api stopped");
        served
    }
}

/// Creates an admin account (`livegate-api admin create`, `auth.first_admin`).
pub async fn create_admin(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<i64, StartError> {
    create_account(state, username, password, Role::Admin).await
}

/// Creates an account with `role` from outside the HTTP API (the first admin, `livegate up`'s
/// demo streamer).
pub async fn create_account(
    state: &AppState,
    username: &str,
    password: &str,
    role: Role,
) -> Result<i64, StartError> {
    validate::username(username).map_err(StartError::FirstAdmin)?;
    validate::password(password).map_err(StartError::FirstAdmin)?;
    match routes::users::create_user(state, username, password.to_owned(), role).await {
        Ok(user) => {
            tracing::info!(user.id = user.id, role = role.as_str(), "account created");
            Ok(user.id)
        }
        Err(err) if err.code() == "conflict" => Err(StartError::FirstAdmin(format!(
            "a user called {username} already exists"
        ))),
        Err(_) => Err(StartError::FirstAdmin(
            "the account could not be stored".to_owned(),
        )),
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

/// `livegate-api admin create`: opens the database and creates an admin.
pub async fn admin_create(
    config: Config,
    username: &str,
    password: &str,
) -> Result<i64, StartError> {
    let db = Database::connect(&config.database).await?;
    if config.database.migrate_on_start {
        db.migrate().await?;
    }
    let bus = Bus::connect(&config.bus)?;
    let app = App::build_with(
        config,
        Deps {
            db,
            bus,
            origins: Origins::default(),
        },
    )?;
    create_admin(app.state(), username, password).await
}

/// `livegate-api migrate`: applies the pending database migrations.
pub async fn migrate(config: &Config) -> Result<(), StartError> {
    Database::connect(&config.database).await?.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
