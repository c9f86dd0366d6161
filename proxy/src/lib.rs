//! livegate-proxy: a Pingora reverse proxy in front of a live-streaming origin (SRS, nginx-rtmp,
//! ZLMediaKit) that admits HTTP-FLV and HLS requests only with a valid play token, rewrites HLS
//! playlists so every URI carries the viewer's token, and streams hours-long FLV responses with
//! backpressure.
//!
//! The crate is a library so that tests and tools can build the server; `main.rs` only parses
//! the command line.

pub mod admin;
pub mod config;
pub mod flv;
pub mod gate;
pub mod metrics;
pub mod origin;
pub mod playlist;
pub mod route;

use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use prometheus_client::registry::Registry;
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

/// Why the proxy could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that validation accepted turned out unusable.
    #[error("{0}")]
    Setting(String),
    /// Pingora refused to start.
    #[error("server: {0}")]
    Server(#[from] Box<pingora::Error>),
}

/// Assembles the Pingora server: the proxy service on the viewer listeners, the origin health
/// checks, and the admin service.
pub fn build_server(config: &Config, options: StartOptions) -> Result<Server, StartError> {
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
    server.bootstrap();

    let verifier = config
        .verifier()
        .map_err(|e| StartError::Setting(format!("token.keys: {e}")))?;
    let routes = config
        .route_table()
        .map_err(|e| StartError::Setting(format!("routes: {e}")))?;
    let pool = origin::origin_pool(&config.origin)
        .map_err(|e| StartError::Setting(format!("origin.addresses: {e}")))?;
    let health = background_service("origin health checks", pool);
    let origins = health.task();

    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::register(&mut registry));

    let gate = gate::Gate::new(verifier, routes, origins.clone(), config, metrics);
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gate, "livegate proxy");
    for addr in &config.server.listen {
        proxy.add_tcp(&addr.to_string());
    }

    let mut admin = Service::new(
        "livegate admin".to_owned(),
        admin::AdminApp::new(Arc::new(registry), origins),
    );
    admin.add_tcp(&config.admin.listen.to_string());

    server.add_service(proxy);
    server.add_service(health);
    server.add_service(admin);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = ?config.server.listen,
        admin = %config.admin.listen,
        origins = ?config.origin.addresses,
        threads = config.server.threads,
        "livegate proxy starting"
    );
    Ok(server)
}
