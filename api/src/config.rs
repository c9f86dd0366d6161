//! The room API's configuration: `[server]`, `[database]`, `[bus]`, `[auth]`, `[rooms]`,
//! `[play_token]`, `[[origins]]`, `[payments]`, `[chat]`, `[console]`, `[recordings]` and
//! `[log]`.
//! Loaded from TOML (`-c/--config` or `LIVEGATE_API_CONFIG`) with `LIVEGATE_API__SECTION__KEY`
//! overrides. There is no running on defaults alone: the JWT and play token keys must be given.

use std::net::SocketAddr;
use std::time::Duration;

use livegate_core::bus::BusConfig;
use livegate_core::config::{Problems, Validate};
use livegate_core::db::DbConfig;
use livegate_core::service::{http, HttpLimits};
use livegate_core::telemetry::LogConfig;
use livegate_core::token::TokenKeys;
use livegate_core::Secret;
use serde::Deserialize;

/// The longest a play token may be valid: a leaked token must not play for days.
pub const MAX_PLAY_TOKEN_TTL_S: u64 = 24 * 3600;
/// The shortest JWT key accepted, in bytes (HS256 wants at least its hash length).
pub const MIN_JWT_KEY_BYTES: usize = 32;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, limits and shutdown.
    pub server: ServerConfig,
    /// The database (users, rooms, streams, sessions).
    pub database: DbConfig,
    /// The bus (rate limits).
    pub bus: BusConfig,
    /// Accounts, passwords and login sessions.
    pub auth: AuthConfig,
    /// Publish and play URLs handed out with rooms.
    pub rooms: RoomsConfig,
    /// Play tokens.
    pub play_token: PlayTokenConfig,
    /// The origins' control APIs, for kicking publishers.
    pub origins: Vec<OriginConfig>,
    /// Gift orders and the payment provider's callbacks.
    pub payments: PaymentsConfig,
    /// Room chat over WebSocket.
    pub chat: crate::chat::config::ChatConfig,
    /// The operator console's live feed, history and health page.
    pub console: crate::console::config::ConsoleConfig,
    /// Where recordings are stored, for download links; none: listings have no links.
    pub recordings: Option<crate::console::config::RecordingsConfig>,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the API listener. Default: `127.0.0.1:8090`.
    pub listen: SocketAddr,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`).
    /// Default: `127.0.0.1:9190`.
    pub admin_listen: SocketAddr,
    /// Largest accepted request body, in bytes. Default: 16384.
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 503, in milliseconds. Default: 10000.
    pub request_timeout_ms: u64,
    /// Longest a client may take to send a request head (from connecting, or from the head's
    /// first byte on a kept-alive connection) before the connection is closed, in
    /// milliseconds; on the admin listener too. Default: 10000.
    pub header_timeout_ms: u64,
    /// Longest a kept-alive connection may wait for its next request before it is closed, in
    /// milliseconds; on the admin listener too. Keep it above the idle timeout of a reverse
    /// proxy in front. Default: 75000.
    pub keep_alive_idle_ms: u64,
    /// Largest request head (request line and headers), in bytes: larger get 431.
    /// Default: 32768.
    pub max_header_bytes: usize,
    /// How long shutdown waits for requests in flight, in milliseconds. Default: 5000.
    pub shutdown_grace_ms: u64,
    /// Whether to take the client address from the first `X-Forwarded-For` entry (only behind
    /// a proxy that sets it): rate limits count per client address. Default: false.
    pub trust_forwarded_for: bool,
}

impl ServerConfig {
    /// The limits of both listeners' HTTP connections.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            keep_alive_idle: Duration::from_millis(self.keep_alive_idle_ms),
            max_header_bytes: self.max_header_bytes,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9190)),
            max_body_bytes: 16 * 1024,
            request_timeout_ms: 10_000,
            header_timeout_ms: http::DEFAULT_HEADER_TIMEOUT_MS,
            keep_alive_idle_ms: http::DEFAULT_KEEP_ALIVE_IDLE_MS,
            max_header_bytes: http::DEFAULT_MAX_HEADER_BYTES,
            shutdown_grace_ms: 5000,
            trust_forwarded_for: false,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HMAC keys of the access tokens (JWT, HS256), newest first: the first signs, all
    /// verify. Each at least 32 bytes; may be `env:NAME` or `file:PATH`. Required.
    pub jwt_keys: Vec<Secret>,
    /// Lifetime of an access token, in seconds. Default: 900.
    pub access_ttl_s: u64,
    /// Lifetime of a refresh token, in seconds. Default: 2592000 (30 days).
    pub refresh_ttl_s: u64,
    /// Argon2id memory cost, in KiB. Default: 19456 (OWASP's minimum).
    pub argon2_memory_kib: u32,
    /// Argon2id passes. Default: 2.
    pub argon2_iterations: u32,
    /// Argon2id lanes. Default: 1.
    pub argon2_parallelism: u32,
    /// Failed logins allowed per username per window; 0 turns the limit off. Default: 5.
    pub failed_logins_per_username: u32,
    /// Failed logins allowed per client address per window; 0 turns the limit off.
    /// Default: 20.
    pub failed_logins_per_address: u32,
    /// The window of both limits, in seconds. Default: 900.
    pub failed_login_window_s: u64,
    /// Whether anyone may register (as a viewer or a streamer). Default: true.
    pub open_registration: bool,
    /// Registrations allowed per client address per hour (each costs a password hash);
    /// admins registering users are not counted; 0 turns the limit off. Default: 10.
    pub registrations_per_address_per_hour: u32,
    /// An admin created at start when no user has this name. Default: none.
    pub first_admin: Option<FirstAdmin>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_keys: Vec::new(),
            access_ttl_s: 900,
            refresh_ttl_s: 30 * 24 * 3600,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            failed_logins_per_username: 5,
            failed_logins_per_address: 20,
            failed_login_window_s: 900,
            open_registration: true,
            registrations_per_address_per_hour: 10,
            first_admin: None,
        }
    }
}

/// `[auth.first_admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstAdmin {
    /// The admin's username.
    pub username: String,
    /// The admin's password; may be `env:NAME` or `file:PATH`.
    pub password: Secret,
}

/// `[rooms]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Host (and port) publishers push RTMP to: `rtmp://{ingest_host}/live/{room}?key=…`.
    /// Default: `127.0.0.1:1935`.
    pub ingest_host: String,
    /// Base URL of the public edge (the proxy) viewers play from. Default:
    /// `http://127.0.0.1:8080`.
    pub edge_base_url: String,
    /// Path of a room's HLS playlist on the edge, `{room}` standing for the room id; the
    /// proxy's `routes.playlist` for its origin. Default: `/live/{room}.m3u8`.
    pub hls_path: String,
    /// Path of a room's HTTP-FLV stream on the edge (`routes.flv`); empty when the origin
    /// serves none (nginx-rtmp). Default: `/live/{room}.flv`.
    pub flv_path: String,
    /// Most rooms one streamer may own. Default: 100.
    pub max_per_owner: u32,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            ingest_host: "127.0.0.1:1935".to_owned(),
            edge_base_url: "http://127.0.0.1:8080".to_owned(),
            hls_path: "/live/{room}.m3u8".to_owned(),
            flv_path: "/live/{room}.flv".to_owned(),
            max_per_owner: 100,
        }
    }
}

/// `[play_token]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlayTokenConfig {
    /// HMAC keys of play token v1, the same list as the proxy's `token.keys`: the first
    /// signs. Each may be `env:NAME` or `file:PATH`. Required.
    pub keys: Vec<Secret>,
    /// Lifetime of a play token, in seconds; at most 86400. Default: 3600.
    pub ttl_s: u64,
    /// Tokens handed out per client address per minute; 0 turns the limit off. Default: 60.
    pub per_address_per_minute: u32,
    /// Query parameter the edge reads the token from. Default: `token`.
    pub query_param: String,
}

impl Default for PlayTokenConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            ttl_s: 3600,
            per_address_per_minute: 60,
            query_param: "token".to_owned(),
        }
    }
}

/// Which origin software an `[[origins]]` entry controls, as stream rows name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OriginKind {
    /// SRS: `DELETE /api/v1/clients/{id}` on its HTTP API.
    #[serde(rename = "srs")]
    Srs,
    /// ZLMediaKit: `/index/api/close_streams` with its secret.
    #[serde(rename = "zlmediakit")]
    Zlmediakit,
    /// nginx-rtmp: `/control/drop/publisher` of its control module.
    #[serde(rename = "nginx-rtmp")]
    NginxRtmp,
}

impl OriginKind {
    /// The `streams.origin_kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginKind::Srs => "srs",
            OriginKind::Zlmediakit => "zlmediakit",
            OriginKind::NginxRtmp => "nginx-rtmp",
        }
    }
}

/// One `[[origins]]` entry: how to reach the control API of the origin server(s) that stream
/// rows name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// `srs`, `zlmediakit` or `nginx-rtmp`.
    pub kind: OriginKind,
    /// The origin server id stream rows carry (SRS `server_id`, ZLMediaKit
    /// `mediaServerId`, the hooks' nginx-rtmp `server_id`); unset matches any server of this
    /// kind that no other entry names.
    #[serde(default)]
    pub server_id: Option<String>,
    /// Base URL of the control API: SRS's HTTP API (`http://127.0.0.1:1985`), ZLMediaKit's
    /// HTTP server, or nginx-rtmp's control location (`http://127.0.0.1:8081/control`).
    pub url: String,
    /// SRS basic-auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// SRS basic-auth password, or ZLMediaKit's `[api] secret` (required for it). May be
    /// `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Timeout of one control request, in milliseconds. Default: 3000.
    #[serde(default = "default_origin_timeout_ms")]
    pub timeout_ms: u64,
    /// nginx-rtmp only: the stat module's URL (`location /stat { rtmp_stat all; }`), for the
    /// console's media facts. Default: `url` with its last `/control` replaced by `/stat`.
    #[serde(default)]
    pub stat_url: Option<String>,
}

impl OriginConfig {
    /// The nginx-rtmp stat URL: `stat_url`, else the control URL's sibling `/stat`.
    pub fn nginx_stat_url(&self) -> Option<String> {
        if let Some(url) = &self.stat_url {
            return Some(url.clone());
        }
        let base = self.url.trim_end_matches('/');
        base.strip_suffix("/control")
            .map(|root| format!("{root}/stat"))
    }
}

fn default_origin_timeout_ms() -> u64 {
    3000
}

/// `[payments]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// The name inbox rows carry: event ids are unique per provider. Default: `default`.
    pub provider: String,
    /// Secrets the provider signs callbacks with (`Livegate-Signature`), any of which is
    /// accepted, so that a new one can be added before the old one is retired. Each may be
    /// `env:NAME` or `file:PATH`. Empty: every callback is refused. Default: none.
    pub callback_secrets: Vec<Secret>,
    /// How far a callback's signed timestamp may be from now, in seconds. Default: 300.
    pub signature_tolerance_s: u64,
    /// How long an `Idempotency-Key` answer is kept and replayed, in seconds; at least a
    /// day. Default: 86400.
    pub idempotency_ttl_s: u64,
    /// The currency leaderboards show when the query names none. Default: `EUR`.
    pub default_currency: String,
    /// How often the outbox relay looks for gift events when not woken, in milliseconds.
    /// Default: 500.
    pub relay_interval_ms: u64,
    /// Most gift events relayed per round. Default: 100.
    pub relay_batch: u32,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            provider: "default".to_owned(),
            callback_secrets: Vec::new(),
            signature_tolerance_s: 300,
            idempotency_ttl_s: 86_400,
            default_currency: "EUR".to_owned(),
            relay_interval_ms: 500,
            relay_batch: 100,
        }
    }
}

impl Config {
    fn validate_payments(&self, problems: &mut Problems) {
        let payments = &self.payments;
        problems.check(
            (1..=32).contains(&payments.provider.len())
                && payments
                    .provider
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')),
            "payments.provider",
            "must be 1 to 32 letters, digits, `_` or `-`",
        );
        for (index, secret) in payments.callback_secrets.iter().enumerate() {
            if secret.expose().len() < 16 {
                problems.add(
                    "payments.callback_secrets",
                    format!("secret #{index} must be at least 16 bytes"),
                );
            }
        }
        problems.check(
            (1..=3600).contains(&payments.signature_tolerance_s),
            "payments.signature_tolerance_s",
            "must be between 1 and 3600",
        );
        problems.check(
            payments.idempotency_ttl_s >= 86_400,
            "payments.idempotency_ttl_s",
            "must be at least 86400 (24 h)",
        );
        problems.check(
            crate::validate::currency(&payments.default_currency).is_ok(),
            "payments.default_currency",
            "must be a three-letter ISO 4217 code such as EUR",
        );
        problems.check(
            payments.relay_interval_ms > 0,
            "payments.relay_interval_ms",
            "must be at least 1",
        );
        problems.check(
            (1..=1000).contains(&payments.relay_batch),
            "payments.relay_batch",
            "must be between 1 and 1000",
        );
    }

    fn validate_auth(&self, problems: &mut Problems) {
        let auth = &self.auth;
        if auth.jwt_keys.is_empty() {
            problems.add("auth.jwt_keys", "must list at least one key");
        }
        for (index, key) in auth.jwt_keys.iter().enumerate() {
            if key.expose().len() < MIN_JWT_KEY_BYTES {
                problems.add(
                    "auth.jwt_keys",
                    format!("key #{index} must be at least {MIN_JWT_KEY_BYTES} bytes"),
                );
            }
        }
        problems.check(
            (60..=86_400).contains(&auth.access_ttl_s),
            "auth.access_ttl_s",
            "must be between 60 and 86400",
        );
        problems.check(
            auth.refresh_ttl_s >= auth.access_ttl_s && auth.refresh_ttl_s <= 365 * 86_400,
            "auth.refresh_ttl_s",
            "must be at least auth.access_ttl_s and at most a year",
        );
        if let Err(err) = argon2::Params::new(
            auth.argon2_memory_kib,
            auth.argon2_iterations,
            auth.argon2_parallelism,
            None,
        ) {
            problems.add(
                "auth.argon2_memory_kib",
                format!("argon2 parameters: {err}"),
            );
        }
        problems.check(
            auth.failed_login_window_s > 0,
            "auth.failed_login_window_s",
            "must be at least 1",
        );
        if let Some(admin) = &auth.first_admin {
            if let Err(message) = crate::validate::username(&admin.username) {
                problems.add("auth.first_admin.username", message);
            }
            if let Err(message) = crate::validate::password(admin.password.expose()) {
                problems.add("auth.first_admin.password", message);
            }
        }
    }

    fn validate_origins(&self, problems: &mut Problems) {
        for (index, origin) in self.origins.iter().enumerate() {
            let key = |field: &str| format!("origins[{index}].{field}");
            problems.check(
                origin.url.starts_with("http://") || origin.url.starts_with("https://"),
                &key("url"),
                "must be an http:// or https:// URL",
            );
            problems.check(
                origin.timeout_ms > 0,
                &key("timeout_ms"),
                "must be at least 1",
            );
            if origin.kind == OriginKind::Zlmediakit {
                problems.check(
                    origin
                        .secret
                        .as_ref()
                        .is_some_and(|s| !s.expose().is_empty()),
                    &key("secret"),
                    "must be set for zlmediakit (its [api] secret)",
                );
            }
            if let Some(url) = &origin.stat_url {
                problems.check(
                    origin.kind == OriginKind::NginxRtmp,
                    &key("stat_url"),
                    "is for nginx-rtmp origins only",
                );
                problems.check(
                    url.starts_with("http://") || url.starts_with("https://"),
                    &key("stat_url"),
                    "must be an http:// or https:// URL",
                );
            }
            let twin = self.origins[..index]
                .iter()
                .any(|other| other.kind == origin.kind && other.server_id == origin.server_id);
            problems.check(
                !twin,
                &key("server_id"),
                "another entry has the same kind and server_id",
            );
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Problems) {
        problems.check(
            self.server.listen != self.server.admin_listen || self.server.listen.port() == 0,
            "server.admin_listen",
            "must differ from server.listen",
        );
        problems.check(
            (1024..=1024 * 1024).contains(&self.server.max_body_bytes),
            "server.max_body_bytes",
            "must be between 1024 and 1048576",
        );
        problems.check(
            self.server.request_timeout_ms > 0,
            "server.request_timeout_ms",
            "must be at least 1",
        );
        problems.check(
            self.server.header_timeout_ms > 0,
            "server.header_timeout_ms",
            "must be at least 1",
        );
        problems.check(
            self.server.keep_alive_idle_ms > 0,
            "server.keep_alive_idle_ms",
            "must be at least 1",
        );
        problems.check(
            (4096..=256 * 1024).contains(&self.server.max_header_bytes),
            "server.max_header_bytes",
            "must be between 4096 and 262144",
        );
        self.database.validate("database", problems);
        self.bus.validate("bus", problems);
        self.validate_auth(problems);
        problems.check(
            !self.rooms.ingest_host.is_empty()
                && !self.rooms.ingest_host.contains(['/', '?', '#', ' ']),
            "rooms.ingest_host",
            "must be a host or host:port",
        );
        problems.check(
            self.rooms.edge_base_url.starts_with("http://")
                || self.rooms.edge_base_url.starts_with("https://"),
            "rooms.edge_base_url",
            "must be an http:// or https:// URL",
        );
        problems.check(
            self.rooms.hls_path.starts_with('/') && self.rooms.hls_path.contains("{room}"),
            "rooms.hls_path",
            "must start with / and contain {room}",
        );
        problems.check(
            self.rooms.flv_path.is_empty()
                || (self.rooms.flv_path.starts_with('/') && self.rooms.flv_path.contains("{room}")),
            "rooms.flv_path",
            "must be empty, or start with / and contain {room}",
        );
        problems.check(
            self.rooms.max_per_owner > 0,
            "rooms.max_per_owner",
            "must be at least 1",
        );
        if let Err(err) = TokenKeys::new(&self.play_token.keys) {
            problems.add("play_token.keys", err.to_string());
        }
        problems.check(
            (1..=MAX_PLAY_TOKEN_TTL_S).contains(&self.play_token.ttl_s),
            "play_token.ttl_s",
            "must be between 1 and 86400 (24 h)",
        );
        problems.check(
            !self.play_token.query_param.is_empty(),
            "play_token.query_param",
            "must not be empty",
        );
        self.validate_origins(problems);
        self.validate_payments(problems);
        self.chat.validate(problems);
        self.console.validate(problems);
        if let Some(recordings) = &self.recordings {
            recordings.validate(problems);
        }
        self.log.validate(problems);
    }
}
