//! The proxy's configuration: one TOML file, overridden by `LIVEGATE_PROXY__SECTION__KEY`
//! environment variables, validated as a whole before anything starts.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use livegate_core::bus::BusConfig;
use livegate_core::config::{self, ConfigError, Problems, Validate};
use livegate_core::telemetry::LogConfig;
use livegate_core::token::{TokenKeys, Verifier};
use livegate_core::Secret;
use serde::Deserialize;

use crate::cache::CacheConfig;
use crate::cdn::CdnConfig;
use crate::route::{Flavour, PatternError, RouteTable};
use crate::viewers::ViewersConfig;
use crate::webrtc::WebrtcConfig;

/// Everything the proxy can be told.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, public names, worker threads, shutdown and upgrade.
    #[serde(default)]
    pub server: ServerConfig,
    /// Bounds on what a viewer may send before a request is looked at.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The metrics and health listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Where streams come from.
    pub origin: OriginConfig,
    /// How play tokens are checked.
    pub token: TokenConfig,
    /// Which request paths are FLV, playlists and segments.
    #[serde(default)]
    pub routes: RoutesConfig,
    /// Timeouts on both sides of the proxy.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// HLS playlist rewriting.
    #[serde(default)]
    pub playlist: PlaylistConfig,
    /// HTTP-FLV streaming.
    #[serde(default)]
    pub flv: FlvConfig,
    /// The HLS cache in front of the origin.
    #[serde(default)]
    pub cache: CacheConfig,
    /// CDN pullers, for a CDN that verifies viewers' tokens itself. Without it, every request
    /// needs a token.
    #[serde(default)]
    pub cdn: Option<CdnConfig>,
    /// Viewer counts per room, reported on the admin port and to the bus.
    #[serde(default)]
    pub viewers: ViewersConfig,
    /// WebRTC playback signalling (WHEP), gated like FLV and HLS.
    #[serde(default)]
    pub webrtc: WebrtcConfig,
    /// The bus room revocations arrive on (Redis, shared with the API). Without it,
    /// revocations come only from the admin port.
    #[serde(default)]
    pub bus: Option<BusConfig>,
    /// Cross-origin access for web players.
    #[serde(default)]
    pub cors: CorsConfig,
    /// Log format and filter.
    #[serde(default)]
    pub log: LogConfig,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses viewers and CDNs connect to. Default `["0.0.0.0:8080"]`.
    pub listen: Vec<SocketAddr>,
    /// The edge's public names (`host` or `host:port`, as viewers write them in URLs). An
    /// absolute playlist URI or origin redirect naming one of them counts as served here and
    /// gets the viewer's token; any other host never sees it. Default empty: only relative
    /// URIs and the origin's own addresses count.
    pub hostnames: Vec<String>,
    /// Worker threads. Default: the number of CPUs.
    pub threads: usize,
    /// How long running responses (hours-long FLV) may continue after a shutdown or upgrade
    /// begins, in seconds. Default 60.
    pub grace_period_s: u64,
    /// How long the runtimes get to stop once the grace period is over, in seconds. Default 5.
    pub shutdown_timeout_s: u64,
    /// PID file, used by `--upgrade` and service managers. Default `/tmp/livegate-proxy.pid`.
    pub pid_file: String,
    /// Unix socket the old process hands its listeners over on during an upgrade.
    /// Default `/tmp/livegate-proxy-upgrade.sock`.
    pub upgrade_sock: String,
    /// Idle upstream connections kept for reuse. Default 128.
    pub upstream_keepalive_pool_size: usize,
    /// Read buffer of each viewer connection, in bytes. It could only ever hold request heads
    /// (and WebRTC offers), which the head guard collects into a buffer of its own with reads
    /// larger than this one (so they bypass it), and an FLV viewer keeps its connection for
    /// hours: Pingora's 64 KiB default would be most of a viewer's memory. Default 1024.
    pub read_buffer_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
            hostnames: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            grace_period_s: 60,
            shutdown_timeout_s: 5,
            pid_file: "/tmp/livegate-proxy.pid".to_owned(),
            upgrade_sock: "/tmp/livegate-proxy-upgrade.sock".to_owned(),
            upstream_keepalive_pool_size: 128,
            read_buffer_bytes: 1024,
        }
    }
}

/// `[limits]`: what a viewer may send before the request is routed or its token checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest request target (path and query) in bytes; longer ones get 414. Default 4096.
    pub max_path_bytes: usize,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    /// Default 32768.
    pub max_header_bytes: usize,
    /// Longest time to receive a whole request head, in milliseconds, counted from the
    /// connection's start for its first request and from the first byte for later ones; past
    /// it the connection gets 408 and is closed. Default 10000.
    pub header_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_path_bytes: 4096,
            max_header_bytes: 32 * 1024,
            header_timeout_ms: 10_000,
        }
    }
}

impl LimitsConfig {
    /// The request head deadline.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of `/metrics` and `/healthz`. Keep it private. Default `127.0.0.1:9180`.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9180)),
        }
    }
}

/// How the origins' health is probed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    /// A TCP connect.
    #[default]
    Tcp,
    /// `GET {health_check_path}` answered with 200.
    Http,
}

/// `[origin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Origin addresses (`host:port`). Each stream always goes to the same one (consistent
    /// hashing on the stream), skipping origins whose health check fails. Required.
    pub addresses: Vec<String>,
    /// The origin software: `srs`, `zlmediakit` or `nginx-rtmp`. It picks the default
    /// `[routes]`. Default `srs`.
    #[serde(default)]
    pub flavour: Flavour,
    /// `Host` header sent to the origin (an SRS vhost, say). Default: the origin's address.
    #[serde(default)]
    pub host: Option<String>,
    /// Send the viewer's own `Host` to the origin instead (when `host` is unset). Default
    /// false: a viewer must not pick the origin's vhost.
    #[serde(default)]
    pub forward_viewer_host: bool,
    /// `tcp` or `http`. Default `tcp`.
    #[serde(default)]
    pub health_check: HealthCheckKind,
    /// Path requested by the `http` health check. Default `/`.
    #[serde(default = "default_health_path")]
    pub health_check_path: String,
    /// How often origins are probed, in milliseconds. Default 1000.
    #[serde(default = "default_health_interval_ms")]
    pub health_check_interval_ms: u64,
}

fn default_health_path() -> String {
    "/".to_owned()
}

fn default_health_interval_ms() -> u64 {
    1000
}

/// `[token]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// HMAC keys, newest first: tokens signed by any of them are accepted. Each entry is the key,
    /// `env:VAR` or `file:/path`. Required.
    pub keys: Vec<Secret>,
    /// Seconds a token stays acceptable after its expiry (clock skew). Default 0.
    #[serde(default)]
    pub leeway_s: u64,
    /// Query parameter that carries the token. Default `token`.
    #[serde(default = "default_token_param")]
    pub query_param: String,
    /// Pass the token on to the origin, whose play hook (SRS `on_play`, ZLMediaKit `on_play`)
    /// checks it too: the shipped origin configs keep those hooks on, so that plays which
    /// bypass the proxy (RTMP pulls, WebRTC) still need a token. Set false for an origin
    /// without play hooks to keep tokens out of its logs. Default true.
    #[serde(default = "default_true")]
    pub forward_to_origin: bool,
}

fn default_true() -> bool {
    true
}

fn default_token_param() -> String {
    "token".to_owned()
}

/// `[routes]`: path patterns with `{app}`, `{stream}` (the room id), `{seq}` (part of one path
/// segment) and `{rest}` (may span segments). A list left out takes `origin.flavour`'s
/// defaults (see [`Flavour`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// HTTP-FLV. SRS default `["/{app}/{stream}.flv"]`.
    pub flv: Option<Vec<String>>,
    /// HLS playlists (media, master, and variants named after the room).
    /// SRS default `["/{app}/{stream}.m3u8", "/{app}/{stream}-{seq}.m3u8"]`.
    pub playlist: Option<Vec<String>>,
    /// HLS media: SRS default `.ts`, `.m4s`, `.aac` and `.mp4` as `/{app}/{stream}-{seq}.EXT`.
    pub segment: Option<Vec<String>>,
}

/// The route lists in effect: configured, or the flavour's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveRoutes {
    /// HTTP-FLV patterns.
    pub flv: Vec<String>,
    /// Playlist patterns.
    pub playlist: Vec<String>,
    /// Segment patterns.
    pub segment: Vec<String>,
}

/// `[timeouts]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// TCP connect to the origin, in milliseconds. Default 1000.
    pub connect_ms: u64,
    /// Longest silence while reading from the origin, in seconds (an FLV origin sends data
    /// continuously, so this is an idle timeout). Default 30.
    pub upstream_read_s: u64,
    /// Longest wait to write to the origin, in seconds. Default 10.
    pub upstream_write_s: u64,
    /// Longest wait to write to a viewer, in seconds: a viewer that accepts no data this long
    /// is dropped. Default 30.
    pub downstream_write_s: u64,
    /// Idle upstream connections are closed after this many seconds. Default 60.
    pub upstream_idle_s: u64,
    /// Longest time to fetch a whole playlist from the origin, in milliseconds; past it the
    /// viewer gets 504. Default 5000.
    pub fetch_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect_ms: 1000,
            upstream_read_s: 30,
            upstream_write_s: 10,
            downstream_write_s: 30,
            upstream_idle_s: 60,
            fetch_ms: 5000,
        }
    }
}

impl TimeoutsConfig {
    /// Connect timeout.
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    /// Upstream read (idle) timeout.
    pub fn upstream_read(&self) -> Duration {
        Duration::from_secs(self.upstream_read_s)
    }
    /// Upstream write timeout.
    pub fn upstream_write(&self) -> Duration {
        Duration::from_secs(self.upstream_write_s)
    }
    /// Downstream write timeout.
    pub fn downstream_write(&self) -> Duration {
        Duration::from_secs(self.downstream_write_s)
    }
    /// Deadline for reading a whole playlist.
    pub fn fetch(&self) -> Duration {
        Duration::from_millis(self.fetch_ms)
    }
    /// Pooled idle connection lifetime.
    pub fn upstream_idle(&self) -> Duration {
        Duration::from_secs(self.upstream_idle_s)
    }
}

/// `[playlist]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaylistConfig {
    /// Largest playlist the proxy rewrites, in bytes; a larger one is answered with 502.
    /// Default 1048576 (1 MiB).
    pub max_bytes: usize,
    /// Largest rewritten playlist, in bytes (every URI gains the token, so many short URIs
    /// grow a playlist many times over); past it the viewer gets 502. Default 4194304 (4 MiB).
    pub max_output_bytes: usize,
    /// Longest line of a playlist, in bytes; a playlist with a longer one gets 502.
    /// Default 16384.
    pub max_line_bytes: usize,
}

impl Default for PlaylistConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_output_bytes: 4 * 1024 * 1024,
            max_line_bytes: 16 * 1024,
        }
    }
}

/// `[flv]`: one origin pull per stream, fanned out to every viewer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlvConfig {
    /// End an FLV response once its token has expired (plus the grace below). Default false:
    /// a token only has to be valid when the viewer connects.
    pub end_at_token_expiry: bool,
    /// Seconds an FLV response may run past its token's expiry when the option above is on.
    /// Default 0.
    pub expiry_grace_s: u64,
    /// How long a stream's origin pull outlives its last viewer, in milliseconds (a viewer
    /// that reconnects finds it running). Default 5000.
    pub linger_ms: u64,
    /// Most bytes of the current GOP kept so that a joining viewer starts on a keyframe at
    /// once; a longer GOP is not kept (joiners then wait for the next keyframe).
    /// Default 8388608 (8 MiB).
    pub gop_cache_bytes: usize,
    /// Most bytes waiting for one viewer; past it the viewer's backlog is dropped and it
    /// resumes at the next keyframe. Default 1048576 (1 MiB).
    pub viewer_queue_bytes: usize,
    /// A viewer that stays behind longer than this, in milliseconds, is cut. Default 10000.
    pub max_lag_ms: u64,
    /// Tags the origin sends within this many milliseconds go to the viewers as one write
    /// (SRS's merged writes): fewer wake-ups and writes per viewer for at most this much more
    /// latency. 0 sends every origin read at once. Default 100, at most 1000.
    pub merge_ms: u64,
}

impl Default for FlvConfig {
    fn default() -> Self {
        Self {
            end_at_token_expiry: false,
            expiry_grace_s: 0,
            linger_ms: 5000,
            gop_cache_bytes: 8 * 1024 * 1024,
            viewer_queue_bytes: 1024 * 1024,
            max_lag_ms: 10_000,
            merge_ms: 100,
        }
    }
}

/// `[cors]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to fetch streams from a browser, e.g. `["https://player.example.com"]`;
    /// `["*"]` allows any. Default empty: no CORS headers, preflights refused.
    pub allowed_origins: Vec<String>,
    /// How long browsers may cache a preflight answer, in seconds. Default 600.
    pub max_age_s: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_s: 600,
        }
    }
}

impl Config {
    /// Parses TOML text alone (tests and examples).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        config::from_toml_str(text)
    }

    /// The token verifier these settings describe.
    pub fn verifier(&self) -> Result<Verifier, livegate_core::token::KeyError> {
        Ok(Verifier::new(
            TokenKeys::new(&self.token.keys)?,
            Duration::from_secs(self.token.leeway_s),
        ))
    }

    /// The route lists in effect.
    pub fn routes(&self) -> EffectiveRoutes {
        let flavour = self.origin.flavour;
        EffectiveRoutes {
            flv: self.routes.flv.clone().unwrap_or_else(|| flavour.flv()),
            playlist: self
                .routes
                .playlist
                .clone()
                .unwrap_or_else(|| flavour.playlist()),
            segment: self
                .routes
                .segment
                .clone()
                .unwrap_or_else(|| flavour.segment()),
        }
    }

    /// The compiled route table.
    pub fn route_table(&self) -> Result<RouteTable, PatternError> {
        let routes = self.routes();
        RouteTable::new(&routes.flv, &routes.playlist, &routes.segment)
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Problems) {
        problems.check(
            !self.server.listen.is_empty(),
            "server.listen",
            "at least one address is required",
        );
        problems.check(
            (1024..=1024 * 1024).contains(&self.server.read_buffer_bytes),
            "server.read_buffer_bytes",
            "must be between 1024 and 1048576",
        );
        problems.check(
            self.server.threads > 0,
            "server.threads",
            "must be at least 1",
        );
        problems.check(
            !self.server.listen.contains(&self.admin.listen),
            "admin.listen",
            "must differ from every server.listen address",
        );
        if self.origin.addresses.is_empty() {
            problems.add("origin.addresses", "at least one origin is required");
        }
        for (i, address) in self.origin.addresses.iter().enumerate() {
            let resolves = address
                .to_socket_addrs()
                .map(|mut addrs| addrs.next().is_some())
                .unwrap_or(false);
            if !resolves {
                problems.add(
                    format!("origin.addresses[{i}]"),
                    format!("`{address}` is not a resolvable host:port"),
                );
            }
        }
        if let Some(host) = &self.origin.host {
            problems.check(
                !host.is_empty() && http::HeaderValue::from_str(host).is_ok(),
                "origin.host",
                "must be a non-empty header value (visible ASCII, no CR or LF)",
            );
        }
        for (i, name) in self.server.hostnames.iter().enumerate() {
            let ok = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if !ok {
                problems.add(
                    format!("server.hostnames[{i}]"),
                    "must be a host or host:port, without scheme or path",
                );
            }
        }
        problems.check(
            self.limits.max_path_bytes >= 256,
            "limits.max_path_bytes",
            "must be at least 256",
        );
        problems.check(
            self.limits.max_header_bytes >= 1024
                && self.limits.max_header_bytes >= self.limits.max_path_bytes,
            "limits.max_header_bytes",
            "must be at least 1024 and at least limits.max_path_bytes",
        );
        problems.check(
            self.limits.header_timeout_ms >= 100,
            "limits.header_timeout_ms",
            "must be at least 100",
        );
        problems.check(
            self.origin.health_check_path.starts_with('/'),
            "origin.health_check_path",
            "must start with `/`",
        );
        problems.check(
            self.origin.health_check_interval_ms >= 100,
            "origin.health_check_interval_ms",
            "must be at least 100",
        );
        if let Err(err) = TokenKeys::new(&self.token.keys) {
            problems.add("token.keys", err.to_string());
        }
        problems.check(
            !self.token.query_param.is_empty()
                && self
                    .token
                    .query_param
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "token.query_param",
            "must be a non-empty name of letters, digits, `_` or `-`",
        );
        let routes = self.routes();
        for (key, patterns) in [
            ("routes.flv", &routes.flv),
            ("routes.playlist", &routes.playlist),
            ("routes.segment", &routes.segment),
        ] {
            for (i, pattern) in patterns.iter().enumerate() {
                if let Err(err) = crate::route::Pattern::parse(pattern) {
                    problems.add(format!("{key}[{i}]"), err.to_string());
                }
            }
        }
        problems.check(
            !routes.flv.is_empty() || !routes.playlist.is_empty(),
            "routes",
            "at least one FLV or playlist pattern is required",
        );
        let timeouts = [
            ("timeouts.connect_ms", self.timeouts.connect_ms),
            ("timeouts.upstream_read_s", self.timeouts.upstream_read_s),
            ("timeouts.upstream_write_s", self.timeouts.upstream_write_s),
            (
                "timeouts.downstream_write_s",
                self.timeouts.downstream_write_s,
            ),
        ];
        for (key, value) in timeouts {
            problems.check(
                value > 0,
                key,
                "must be greater than 0 (no timeout is not allowed)",
            );
        }
        self.webrtc.validate(problems);
        self.viewers.validate(problems);
        if let Some(cdn) = &self.cdn {
            cdn.validate(problems);
        }
        if let Some(bus) = &self.bus {
            bus.validate("bus", problems);
        }
        self.cache.validate(problems);
        for (i, name) in self.cache.key_query_params.iter().enumerate() {
            if *name == self.token.query_param {
                problems.add(
                    format!("cache.key_query_params[{i}]"),
                    "must not be token.query_param: the token never enters a cache key",
                );
            }
        }
        problems.check(
            self.playlist.max_bytes >= 1024,
            "playlist.max_bytes",
            "must be at least 1024",
        );
        problems.check(
            self.playlist.max_output_bytes >= self.playlist.max_bytes,
            "playlist.max_output_bytes",
            "must be at least playlist.max_bytes",
        );
        problems.check(
            self.flv.viewer_queue_bytes >= 64 * 1024,
            "flv.viewer_queue_bytes",
            "must be at least 65536",
        );
        problems.check(
            self.flv.max_lag_ms >= 100,
            "flv.max_lag_ms",
            "must be at least 100",
        );
        problems.check(
            self.flv.merge_ms <= 1000,
            "flv.merge_ms",
            "must be at most 1000",
        );
        problems.check(
            self.playlist.max_line_bytes >= 256,
            "playlist.max_line_bytes",
            "must be at least 256",
        );
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            let ok = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/'));
            if !ok {
                problems.add(
                    format!("cors.allowed_origins[{i}]"),
                    "must be `*` or a scheme://host[:port] origin without a trailing slash",
                );
            }
        }
        self.log.validate(problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [origin]
        addresses = ["127.0.0.1:8081"]
        [token]
        keys = ["k1"]
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(config.token.query_param, "token");
        assert!(config.token.forward_to_origin);
        assert_eq!(config.playlist.max_bytes, 1024 * 1024);
        assert_eq!(config.routes().segment.len(), 4);
        assert!(config.route_table().is_ok());
        assert!(config.verifier().is_ok());
    }

    #[test]
    fn the_flavour_picks_default_routes_and_explicit_lists_win() {
        let text = MINIMAL.replace("[token]", "flavour = \"zlmediakit\"\n[token]");
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.routes().flv, vec!["/{app}/{stream}.live.flv"]);
        assert_eq!(config.routes().playlist[0], "/{app}/{stream}/hls.m3u8");
        let text = format!("{text}\n[routes]\nflv = [\"/{{app}}/{{stream}}.flv\"]\n");
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.routes().flv, vec!["/{app}/{stream}.flv"]);
        assert_eq!(config.routes().playlist[0], "/{app}/{stream}/hls.m3u8");
        let text = MINIMAL.replace("[token]", "flavour = \"wowza\"\n[token]");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("flavour"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            [server]
            threads = 0
            [origin]
            addresses = []
            [token]
            keys = []
            [routes]
            flv = ["/{app}/{room}.flv"]
            [timeouts]
            upstream_read_s = 0
            [cors]
            allowed_origins = ["player.example.com"]
            [limits]
            max_path_bytes = 10
        "#;
        let err = Config::from_toml(text).unwrap_err().to_string();
        for key in [
            "server.threads",
            "origin.addresses",
            "token.keys",
            "routes.flv[0]",
            "timeouts.upstream_read_s",
            "cors.allowed_origins[0]",
            "limits.max_path_bytes",
        ] {
            assert!(err.contains(key), "missing {key} in:\n{err}");
        }
    }

    #[test]
    fn origin_host_and_hostnames_are_checked_at_start() {
        let text = MINIMAL.replace("[token]", "host = \"srs.internal\\r\\nX-Evil: 1\"\n[token]");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("origin.host"), "{err}");
        let text = format!("[server]\nhostnames = [\"https://edge.example/\"]\n{MINIMAL}");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("server.hostnames[0]"), "{err}");
    }

    #[test]
    fn cache_key_parameters_default_to_the_ll_hls_directives_and_are_checked() {
        let config = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(
            config.cache.key_query_params,
            ["_HLS_msn", "_HLS_part", "_HLS_skip"]
        );
        let text = format!(
            "{MINIMAL}\n[cache]\nkey_query_params = [\"_HLS_msn\", \"a b\", \"_HLS_msn\", \"token\", \"\"]\n"
        );
        let err = Config::from_toml(&text).unwrap_err().to_string();
        for key in [
            "cache.key_query_params[1]",
            "cache.key_query_params[2]",
            "cache.key_query_params[3]",
            "cache.key_query_params[4]",
        ] {
            assert!(err.contains(key), "missing {key} in:\n{err}");
        }
        assert!(!err.contains("cache.key_query_params[0]"), "{err}");
        let text = format!("{MINIMAL}\n[cache]\nkey_query_params = [\"hls_ctx\"]\n");
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.cache.key_query_params, ["hls_ctx"]);
    }

    #[test]
    fn type_errors_name_the_key() {
        let text = format!("{MINIMAL}\n[playlist]\nmax_bytes = \"big\"\n");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("playlist.max_bytes"), "{err}");
    }

    #[test]
    fn keys_never_appear_in_debug_output() {
        let config = Config::from_toml(MINIMAL.replace("k1", "very-secret-key").as_str()).unwrap();
        assert!(!format!("{config:?}").contains("very-secret-key"));
    }

    #[test]
    fn shipped_examples_parse_with_their_flavour() {
        for (file, flavour) in [
            ("proxy.example.toml", Flavour::Srs),
            ("proxy.zlmediakit.example.toml", Flavour::Zlmediakit),
            ("proxy.nginx-rtmp.example.toml", Flavour::NginxRtmp),
        ] {
            let path = format!("{}/../infra/{file}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(config.origin.flavour, flavour, "{file}");
            assert!(config.route_table().is_ok(), "{file}");
        }
    }
}
