//! What every handler shares: one state for the whole router (rooms, accounts, play tokens,
//! and later chat and payments), cheap to clone.

use std::sync::Arc;

use livegate_core::bus::Bus;
use livegate_core::db::Database;
use livegate_core::token::TokenKeys;

use crate::auth::jwt::Jwt;
use crate::auth::password::Passwords;
use crate::chat::metrics::ChatMetrics;
use crate::chat::Chat;
use crate::config::Config;
use crate::console::Console;
use crate::kick::Origins;
use crate::metrics::Metrics;
use crate::payments::relay::RelayWake;
use crate::viewers::EdgeViewers;

/// The shared state.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    db: Database,
    bus: Bus,
    jwt: Jwt,
    passwords: Passwords,
    play_keys: TokenKeys,
    origins: Origins,
    metrics: Metrics,
    edge_viewers: EdgeViewers,
    relay_wake: RelayWake,
    chat: Chat,
    console: Console,
}

/// The parts [`AppState::new`] assembles.
#[derive(Debug)]
pub struct Parts {
    /// The configuration.
    pub config: Config,
    /// The database.
    pub db: Database,
    /// The bus.
    pub bus: Bus,
    /// Access token keys.
    pub jwt: Jwt,
    /// Password hashing.
    pub passwords: Passwords,
    /// Play token keys.
    pub play_keys: TokenKeys,
    /// Origin control APIs.
    pub origins: Origins,
    /// Metrics.
    pub metrics: Metrics,
    /// Chat's metrics.
    pub chat_metrics: ChatMetrics,
}

impl AppState {
    /// Assembles the state.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            config,
            db,
            bus,
            jwt,
            passwords,
            play_keys,
            origins,
            metrics,
            chat_metrics,
        } = parts;
        let chat = Chat::new(&config.chat, bus.clone(), db.clone(), chat_metrics);
        let link_key = config
            .auth
            .jwt_keys
            .first()
            .map(|key| key.expose().as_bytes().to_vec())
            .unwrap_or_default();
        let console = Console::new(&config, &bus, &link_key);
        Self {
            inner: Arc::new(Inner {
                chat,
                console,
                config,
                db,
                bus,
                jwt,
                passwords,
                play_keys,
                origins,
                metrics,
                edge_viewers: EdgeViewers::default(),
                relay_wake: RelayWake::default(),
            }),
        }
    }

    /// Viewer counts reported by the edge.
    pub fn edge_viewers(&self) -> &EdgeViewers {
        &self.inner.edge_viewers
    }

    /// Wakes the gift outbox relay.
    pub fn relay_wake(&self) -> &RelayWake {
        &self.inner.relay_wake
    }

    /// The operator console's shared parts.
    pub fn console(&self) -> &Console {
        &self.inner.console
    }

    /// Room chat.
    pub fn chat(&self) -> &Chat {
        &self.inner.chat
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// Access tokens.
    pub fn jwt(&self) -> &Jwt {
        &self.inner.jwt
    }

    /// Password hashing.
    pub fn passwords(&self) -> &Passwords {
        &self.inner.passwords
    }

    /// Play token keys.
    pub fn play_keys(&self) -> &TokenKeys {
        &self.inner.play_keys
    }

    /// Origin control APIs.
    pub fn origins(&self) -> &Origins {
        &self.inner.origins
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}
