//! The hooks service's configuration: `[server]`, `[callers]`, `[database]`, `[bus]`,
//! `[publish]`, `[play]`, `[outbox]`, `[reconcile]`, `[zlmediakit]`, `[nginx_rtmp]` and
//! `[log]`.
//! Loaded from TOML (`-c/--config` or `LIVEGATE_HOOKS_CONFIG`) with
//! `LIVEGATE_HOOKS__SECTION__KEY` overrides. Without a file the service runs on these
//! defaults plus the overrides: SQLite, the in-process bus, and play tokens required (so at
//! least `play.token_keys`, or `play.require_token = false`, must be given).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use livegate_core::bus::BusConfig;
use livegate_core::config::{Problems, Validate};
use livegate_core::db::DbConfig;
use livegate_core::telemetry::LogConfig;
use livegate_core::token::TokenKeys;
use livegate_core::Secret;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, deadline and shutdown.
    pub server: ServerConfig,
    /// Who may call the hooks.
    pub callers: CallersConfig,
    /// The database (the truth about rooms and streams).
    pub database: DbConfig,
    /// The bus (live keys, events, viewer counts, rate limits, recording jobs).
    pub bus: BusConfig,
    /// Publish authorisation.
    pub publish: PublishConfig,
    /// Play authorisation.
    pub play: PlayConfig,
    /// Retrying bus writes while Redis is unreachable.
    pub outbox: OutboxConfig,
    /// Reconciliation against the SRS HTTP API (its timings apply to ZLMediaKit's too).
    pub reconcile: ReconcileConfig,
    /// ZLMediaKit's HTTP API and keepalives.
    pub zlmediakit: ZlmConfig,
    /// Settings for nginx-rtmp, which identifies itself in no callback.
    pub nginx_rtmp: NginxRtmpConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the hook listener the origins call. Default: `127.0.0.1:8085`.
    pub listen: SocketAddr,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`).
    /// Default: `127.0.0.1:9185`.
    pub admin_listen: SocketAddr,
    /// Every hook is answered within this many milliseconds, whatever the database does; well
    /// under the origins' own timeouts (SRS 30 s, ZLMediaKit and nginx-rtmp 10 s). Default: 2000.
    pub deadline_ms: u64,
    /// How long shutdown waits for in-flight requests and pending bus writes, in
    /// milliseconds. Default: 5000.
    pub shutdown_grace_ms: u64,
    /// Largest accepted callback body, in bytes. Default: 65536.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8085)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9185)),
            deadline_ms: 2000,
            shutdown_grace_ms: 5000,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `[callers]`: requests failing these checks get 403 before anything else happens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallersConfig {
    /// Networks the origins call from; an empty list allows any address.
    /// Default: `["127.0.0.0/8", "::1/128"]`.
    pub allow_cidrs: Vec<IpNet>,
    /// When set, every hook URL must carry `?secret=<value>`. May be `env:NAME` or
    /// `file:PATH`. Default: unset.
    pub secret: Option<Secret>,
}

impl Default for CallersConfig {
    fn default() -> Self {
        Self {
            allow_cidrs: vec![
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            secret: None,
        }
    }
}

/// What to do with a publish when the database cannot be asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbDownPolicy {
    /// Refuse the publish (fail closed).
    #[default]
    Refuse,
    /// Let it through unrecorded (fail open).
    Allow,
}

/// `[publish]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Name of the query parameter that carries the stream key (`?key=…`). Default: `key`.
    pub key_param: String,
    /// What to do when the database is unreachable or too slow: `refuse` or `allow`.
    /// Default: `refuse`.
    pub when_db_down: DbDownPolicy,
    /// Publish attempts allowed per publisher address per minute; 0 turns the limit off.
    /// Default: 60.
    pub attempts_per_ip_per_minute: u32,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            key_param: "key".to_owned(),
            when_db_down: DbDownPolicy::Refuse,
            attempts_per_ip_per_minute: 60,
        }
    }
}

/// `[play]`: play tokens for pulls that reach the origin directly (SRS `on_play`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlayConfig {
    /// Whether plays need a valid play token. Default: true.
    pub require_token: bool,
    /// HMAC keys of play token v1; the first signs, all verify. Each may be `env:NAME` or
    /// `file:PATH`. Required when `require_token` is true.
    pub token_keys: Vec<Secret>,
    /// Seconds a token stays acceptable past its expiry. Default: 0.
    pub token_leeway_s: u64,
    /// Name of the query parameter that carries the token. Default: `token`.
    pub token_param: String,
}

impl Default for PlayConfig {
    fn default() -> Self {
        Self {
            require_token: true,
            token_keys: Vec::new(),
            token_leeway_s: 0,
            token_param: "token".to_owned(),
        }
    }
}

/// `[outbox]`: bus writes (live keys, events, jobs, viewer counts) go through one ordered,
/// bounded queue that retries while the bus is unreachable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Most bus writes waiting; beyond it new writes are dropped (and counted). Default: 10000.
    pub capacity: usize,
    /// First retry delay in milliseconds; doubles per failure. Default: 100.
    pub retry_initial_ms: u64,
    /// Longest retry delay in milliseconds. Default: 5000.
    pub retry_max_ms: u64,
    /// Milliseconds between two resyncs of the bus's live keys from the database (which is
    /// the truth), repairing a lost live or offline write; 0 turns it off. Default: 30000.
    pub resync_interval_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            retry_initial_ms: 100,
            retry_max_ms: 5000,
            resync_interval_ms: 30_000,
        }
    }
}

/// `[reconcile]`: compares open streams with what SRS reports and closes the ones it dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Base URL of the SRS HTTP API, e.g. `http://127.0.0.1:1985`; unset disables
    /// reconciliation and kicking. Default: unset.
    pub srs_api_url: Option<String>,
    /// HTTP basic-auth user for the SRS API. Default: unset.
    pub username: Option<String>,
    /// HTTP basic-auth password for the SRS API. May be `env:NAME` or `file:PATH`.
    pub password: Option<Secret>,
    /// Milliseconds between two passes. Default: 10000.
    pub interval_ms: u64,
    /// A stream younger than this (milliseconds) is left alone: SRS lists a stream only after
    /// `on_publish` has been answered. Default: 15000.
    pub grace_ms: u64,
    /// Timeout of one SRS API request, in milliseconds. Default: 3000.
    pub api_timeout_ms: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            srs_api_url: None,
            username: None,
            password: None,
            interval_ms: 10_000,
            grace_ms: 15_000,
            api_timeout_ms: 3000,
        }
    }
}

/// `[zlmediakit]`: ZLMediaKit's HTTP API (reconciliation, viewer counts, kicks, confirming a
/// start notice) and its keepalives (closing the streams of a server that went silent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZlmConfig {
    /// Base URL of ZLMediaKit's HTTP server, which serves its API, e.g.
    /// `http://127.0.0.1:8081`; unset disables the API. Default: unset.
    pub api_url: Option<String>,
    /// ZLMediaKit's `[api] secret`. May be `env:NAME` or `file:PATH`. Required with `api_url`.
    pub api_secret: Option<Secret>,
    /// The `general.mediaServerId` of the server at `api_url`. Required with `api_url`.
    pub server_id: Option<String>,
    /// ZLMediaKit's `hook.alive_interval`, in milliseconds. Default: 10000.
    pub keepalive_interval_ms: u64,
    /// Keepalive intervals a server may stay silent before its streams are closed (counted
    /// from its last keepalive; a server never heard from is not watched); 0 turns the watch
    /// off. Default: 3.
    pub keepalive_misses: u32,
}

impl Default for ZlmConfig {
    fn default() -> Self {
        Self {
            api_url: None,
            api_secret: None,
            server_id: None,
            keepalive_interval_ms: 10_000,
            keepalive_misses: 3,
        }
    }
}

impl ZlmConfig {
    /// How long a keepalive may be late before the server counts as silent; also the longest
    /// a callback can plausibly take to arrive (ZLMediaKit's timeout plus one retry).
    pub fn silence_ms(&self) -> i64 {
        let misses = u64::from(self.keepalive_misses.max(1));
        i64::try_from(self.keepalive_interval_ms.saturating_mul(misses)).unwrap_or(i64::MAX)
    }
}

/// `[nginx_rtmp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NginxRtmpConfig {
    /// Origin id recorded for nginx-rtmp streams, which carry none; a hook URL's `?origin=`
    /// overrides it (one per nginx instance). Default: `nginx-rtmp`.
    pub server_id: String,
}

impl Default for NginxRtmpConfig {
    fn default() -> Self {
        Self {
            server_id: "nginx-rtmp".to_owned(),
        }
    }
}

impl Config {
    /// The hook deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.server.deadline_ms)
    }
}

impl Config {
    fn validate_zlmediakit(&self, problems: &mut Problems) {
        let zlm = &self.zlmediakit;
        if let Some(url) = &zlm.api_url {
            problems.check(
                url.starts_with("http://") || url.starts_with("https://"),
                "zlmediakit.api_url",
                "must be an http:// or https:// URL",
            );
            problems.check(
                zlm.api_secret
                    .as_ref()
                    .is_some_and(|secret| !secret.expose().is_empty()),
                "zlmediakit.api_secret",
                "must be set when zlmediakit.api_url is (ZLMediaKit's [api] secret)",
            );
            problems.check(
                zlm.server_id.as_ref().is_some_and(|id| {
                    !id.is_empty()
                        && livegate_core::db::columns::check_text(
                            id,
                            livegate_core::db::columns::ORIGIN_SERVER_ID,
                        )
                        .is_ok()
                }),
                "zlmediakit.server_id",
                "must be set when zlmediakit.api_url is (the server's general.mediaServerId, \
                 at most 128 characters)",
            );
        }
        problems.check(
            zlm.keepalive_interval_ms >= 100,
            "zlmediakit.keepalive_interval_ms",
            "must be at least 100",
        );
        // The reconciler also runs the keepalive watch, API or not.
        problems.check(
            self.reconcile.interval_ms >= 100,
            "reconcile.interval_ms",
            "must be at least 100",
        );
        problems.check(
            self.reconcile.api_timeout_ms > 0,
            "reconcile.api_timeout_ms",
            "must be positive",
        );
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Problems) {
        problems.check(
            self.server.deadline_ms > 0 && self.server.deadline_ms <= 9000,
            "server.deadline_ms",
            "must be between 1 and 9000 (below the origins' 10 s timeout)",
        );
        problems.check(
            self.server.max_body_bytes >= 1024,
            "server.max_body_bytes",
            "must be at least 1024",
        );
        problems.check(
            self.server.listen != self.server.admin_listen || self.server.listen.port() == 0,
            "server.admin_listen",
            "must differ from server.listen",
        );
        if let Some(secret) = &self.callers.secret {
            problems.check(
                secret.expose().len() >= 16,
                "callers.secret",
                "must be at least 16 characters",
            );
        }
        self.database.validate("database", problems);
        self.bus.validate("bus", problems);
        problems.check(
            !self.publish.key_param.is_empty(),
            "publish.key_param",
            "must not be empty",
        );
        problems.check(
            !self.play.token_param.is_empty(),
            "play.token_param",
            "must not be empty",
        );
        if self.play.require_token {
            if let Err(err) = TokenKeys::new(&self.play.token_keys) {
                problems.add(
                    "play.token_keys",
                    format!("{err} (play.require_token is on)"),
                );
            }
        }
        problems.check(
            self.outbox.capacity > 0,
            "outbox.capacity",
            "must be at least 1",
        );
        problems.check(
            self.outbox.retry_initial_ms > 0
                && self.outbox.retry_max_ms >= self.outbox.retry_initial_ms,
            "outbox.retry_max_ms",
            "must be at least outbox.retry_initial_ms, which must be positive",
        );
        if let Some(url) = &self.reconcile.srs_api_url {
            problems.check(
                url.starts_with("http://") || url.starts_with("https://"),
                "reconcile.srs_api_url",
                "must be an http:// or https:// URL",
            );
        }
        problems.check(
            self.reconcile.password.is_none() || self.reconcile.username.is_some(),
            "reconcile.username",
            "must be set when reconcile.password is",
        );
        self.validate_zlmediakit(problems);
        problems.check(
            !self.nginx_rtmp.server_id.is_empty()
                && livegate_core::db::columns::check_text(
                    &self.nginx_rtmp.server_id,
                    livegate_core::db::columns::ORIGIN_SERVER_ID,
                )
                .is_ok(),
            "nginx_rtmp.server_id",
            "must be 1 to 128 characters without control characters",
        );
        self.log.validate(problems);
    }
}
