//! The state every handler and background task shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livegate_core::bus::Bus;
use livegate_core::db::Database;
use livegate_core::origin::OriginControl;
use livegate_core::token::{TokenKeys, Verifier};
use subtle::ConstantTimeEq as _;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::zlm::ZlmServers;

/// Origin servers whose service id is remembered; beyond it the memory starts over (which
/// only costs one indexed query per server).
const MAX_ORIGIN_SERVERS: usize = 10_000;

/// The origins' control APIs the service may call.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// The SRS API (`[reconcile] srs_api_url`).
    pub srs: Option<Arc<dyn OriginControl>>,
    /// The ZLMediaKit API (`[zlmediakit] api_url`) of server `[zlmediakit] server_id`.
    pub zlm: Option<Arc<dyn OriginControl>>,
}

/// Shared, cheaply cloned application state.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    db: Database,
    bus: Bus,
    outbox: Outbox,
    metrics: Metrics,
    verifier: Option<Verifier>,
    origins: Origins,
    zlm_servers: ZlmServers,
    // The SRS service id last seen per server id. A std mutex: lookups are short and never
    // await. Bounded by the number of origin servers, which the operator controls.
    services: Mutex<HashMap<String, String>>,
    // Work that may outlive its request (a publish past its deadline); drained on shutdown.
    tasks: TaskTracker,
}

/// Why the state could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[error("play.token_keys: {0}")]
pub struct KeysError(#[from] livegate_core::token::KeyError);

impl AppState {
    /// Assembles the state.
    pub fn new(
        config: Config,
        db: Database,
        bus: Bus,
        outbox: Outbox,
        metrics: Metrics,
        origins: Origins,
    ) -> Result<Self, KeysError> {
        let verifier = if config.play.token_keys.is_empty() {
            None
        } else {
            Some(Verifier::new(
                TokenKeys::new(&config.play.token_keys)?,
                Duration::from_secs(config.play.token_leeway_s),
            ))
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                db,
                bus,
                outbox,
                metrics,
                verifier,
                origins,
                zlm_servers: ZlmServers::default(),
                services: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// The bus (reads only; writes go through [`AppState::outbox`]).
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The bus write queue.
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// The tracker of request work that may outlive its request; shutdown waits for it.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The play token verifier, when keys are configured.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.inner.verifier.as_ref()
    }

    /// The SRS API, when configured.
    pub fn srs_api(&self) -> Option<&Arc<dyn OriginControl>> {
        self.inner.origins.srs.as_ref()
    }

    /// The ZLMediaKit API, when configured.
    pub fn zlm_api(&self) -> Option<&Arc<dyn OriginControl>> {
        self.inner.origins.zlm.as_ref()
    }

    /// What is known about each ZLMediaKit server.
    pub fn zlm_servers(&self) -> &ZlmServers {
        &self.inner.zlm_servers
    }

    /// Whether `service_id` is the run of `server_id` this process already reconciled.
    pub fn service_known(&self, server_id: &str, service_id: &str) -> bool {
        self.services()
            .get(server_id)
            .is_some_and(|known| known == service_id)
    }

    /// Records `service_id` as the current run of `server_id`.
    pub fn remember_service(&self, server_id: &str, service_id: &str) {
        let mut services = self.services();
        if services.len() >= MAX_ORIGIN_SERVERS && !services.contains_key(server_id) {
            services.clear();
        }
        services.insert(server_id.to_owned(), service_id.to_owned());
    }

    fn services(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request from `peer` with hook-URL query `secret` may call the hooks.
    pub fn caller_allowed(&self, peer: IpAddr, secret: Option<&str>) -> bool {
        let callers = &self.inner.config.callers;
        // An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        let address_ok = callers.allow_cidrs.is_empty()
            || callers.allow_cidrs.iter().any(|net| net.contains(&peer));
        let secret_ok = match &callers.secret {
            None => true,
            Some(expected) => secret.is_some_and(|given| {
                bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
            }),
        };
        address_ok && secret_ok
    }
}
