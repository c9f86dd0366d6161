//! livegate-proxy: a Pingora reverse proxy in front of a live-streaming origin (SRS, nginx-rtmp,
//! ZLMediaKit) that admits HTTP-FLV and HLS requests only with a valid play token, rewrites HLS
//! playlists so every URI carries the viewer's token, and streams hours-long FLV responses with
//! backpressure.
//!
//! The crate is a library so that tests and tools can build the server; `main.rs` only parses
//! the command line.

pub mod admin;
pub mod cache;
pub mod cdn;
pub mod config;
pub mod cors;
pub mod downstream;
pub mod drain;
pub mod edge_bus;
pub mod flv;
pub mod forwarding;
pub mod gate;
pub mod metrics;
pub mod origin;
pub mod path;
pub mod playlist;
pub mod revocation;
pub mod route;
pub mod sendfile;
pub mod viewers;
pub mod webrtc;

use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::Bus;
use livegate_core::service::{bind_std, BindError};
use livegate_core::telemetry::Registry;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tracing::info;

pub use config::Config;

/// How the process was started, beyond its configuration file.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Take the listeners over from a running old process (zero-downtime upgrade).
    pub upgrade: bool,
    /// Detach from the terminal.
    pub daemon: bool,
}

/// What a process that runs the proxy beside other services (`livegate up`) hands it instead
/// of what the proxy would set up for itself.
pub struct Embedded {
    /// The process's bus, shared with the other services (instead of `[bus]`).
    pub bus: Option<Bus>,
    /// When to shut down (instead of the proxy's own signal handling).
    pub shutdown: Box<dyn ShutdownSignalWatch + Send + Sync>,
    /// Told once every response has ended after shutdown began (instead of the proxy ending
    /// the process itself).
    pub drained: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

/// Why the proxy could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that validation accepted turned out unusable.
    #[error("{0}")]
    Setting(String),
    /// A listen address is taken or cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The shutdown helper thread could not be started.
    #[error("starting the drain watcher: {0}")]
    Thread(#[source] std::io::Error),
}

/// Builds the server and runs it until shutdown. Everything that can fail runs before an
/// upgrade takes the old process's listeners over, so a bad new configuration leaves the old
/// process serving.
pub fn run(config: &Config, options: StartOptions) -> Result<(), StartError> {
    run_with(config, options, None)
}

/// [`run`], inside a process that runs other services too (see [`Embedded`]). Returns once the
/// proxy has shut down.
pub fn run_with(
    config: &Config,
    options: StartOptions,
    embedded: Option<Embedded>,
) -> Result<(), StartError> {
    let verifier = config
        .verifier()
        .map_err(|e| StartError::Setting(format!("token.keys: {e}")))?;
    let routes = config
        .route_table()
        .map_err(|e| StartError::Setting(format!("routes: {e}")))?;
    let pool = origin::origin_pool(&config.origin)
        .map_err(|e| StartError::Setting(format!("origin.addresses: {e}")))?;
    if !options.upgrade {
        // Pingora retries a taken address for half a minute, logging each attempt; say so at
        // once instead. (An upgrade inherits the old process's sockets and binds nothing.)
        for addr in &config.server.listen {
            drop(bind_std(*addr, "server.listen")?);
        }
        drop(bind_std(config.admin.listen, "admin.listen")?);
    }

    let server_conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period_s),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout_s),
        pid_file: config.server.pid_file.clone(),
        upgrade_sock: config.server.upgrade_sock.clone(),
        upstream_keepalive_pool_size: config.server.upstream_keepalive_pool_size,
        daemon: options.daemon,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        daemon: options.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);

    let health = background_service("origin health checks", pool);
    let origins = health.task();
    let mut registry = Registry::with_prefix("proxy");
    let metrics = Arc::new(metrics::Metrics::register(&mut registry));
    let in_flight = Arc::new(drain::InFlight::default());

    let cache = config.cache.enabled.then(|| {
        Arc::new(cache::HlsCache::new(cache::CacheSettings {
            max_bytes: config.cache.max_bytes,
            lock_timeout: Duration::from_millis(config.cache.lock_timeout_ms),
        }))
    });
    let revocations = Arc::new(revocation::RevocationList::new(config.token.leeway_s));
    let viewer_counts = Arc::new(viewers::ViewerCounts::new(&config.viewers));
    let webrtc_sessions = Arc::new(webrtc::sessions::WebrtcSessions::new(
        config.webrtc.end_at_token_expiry.then_some(
            config
                .token
                .leeway_s
                .saturating_add(config.webrtc.expiry_grace_s),
        ),
        config.webrtc.max_tracked_sessions,
        metrics.clone(),
    ));
    let gate = gate::Gate::new(
        verifier,
        routes,
        origins.clone(),
        config,
        metrics.clone(),
        in_flight.clone(),
        cache.clone(),
        revocations.clone(),
        viewer_counts.clone(),
        webrtc_sessions.clone(),
    );
    let limits = downstream::HeadLimits {
        max_target_bytes: config.limits.max_path_bytes,
        max_head_bytes: config.limits.max_header_bytes,
        timeout: config.limits.header_timeout(),
    };
    let metrics_for_admin = metrics.clone();
    let guarded = downstream::Guarded::new(
        pingora::proxy::http_proxy(&server.configuration, gate),
        limits,
        metrics,
    );
    let mut proxy = Service::new("livegate proxy".to_owned(), guarded);
    for addr in &config.server.listen {
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::new(
                config.server.read_buffer_bytes,
                DEFAULT_L4_WRITE_BUFFER_SIZE,
            )),
        );
    }

    let mut admin = Service::new(
        "livegate admin".to_owned(),
        admin::AdminApp::new(
            Arc::new(registry),
            origins.clone(),
            cache,
            revocations.clone(),
            viewer_counts.clone(),
            metrics_for_admin.clone(),
        ),
    );
    admin.add_tcp(&config.admin.listen.to_string());

    if config.webrtc.api_port.is_some() {
        server.add_service(background_service(
            "WebRTC session ends",
            webrtc::sessions::SessionEnder {
                sessions: webrtc_sessions,
                revocations: revocations.clone(),
                origin: Arc::new(origin::OriginClient::new(origins, &config.timeouts)),
                metrics: metrics_for_admin,
            },
        ));
    }
    server.add_service(proxy);
    server.add_service(health);
    server.add_service(admin);
    let (bus, shutdown, drained) = match embedded {
        Some(embedded) => (
            embedded.bus.map(edge_bus::Source::Shared),
            Some(embedded.shutdown),
            Some(embedded.drained),
        ),
        None => (
            config.bus.clone().map(edge_bus::Source::Connect),
            None,
            None,
        ),
    };
    if let Some(source) = bus {
        // One name per process: an edge's reports replace its own earlier ones.
        let edge = format!(
            "{}#{}",
            config
                .server
                .listen
                .first()
                .map_or_else(String::new, ToString::to_string),
            std::process::id()
        );
        server.add_service(background_service(
            "bus",
            edge_bus::EdgeBus {
                source,
                revocations: revocation::RevocationFeed::new(revocations),
                viewers: viewers::ViewerReporter::new(
                    viewer_counts,
                    edge,
                    Duration::from_millis(config.viewers.report_interval_ms),
                ),
            },
        ));
    }
    let drained = drained.unwrap_or_else(|| {
        Box::new(|| {
            tracing::info!("every response has ended, exiting");
            std::process::exit(0)
        })
    });
    drain::when_drained(
        server.watch_execution_phase(),
        in_flight,
        Duration::from_secs(config.server.grace_period_s),
        drained,
    )
    .map_err(StartError::Thread)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = ?config.server.listen,
        admin = %config.admin.listen,
        origins = ?config.origin.addresses,
        flavour = ?config.origin.flavour,
        threads = config.server.threads,
        "livegate proxy starting"
    );
    // Last: with `--upgrade` this takes the old process's listeners.
    server.bootstrap();
    match shutdown {
        Some(shutdown_signal) => server.run(RunArgs { shutdown_signal }),
        None => server.run(RunArgs::default()),
    }
    Ok(())
}
