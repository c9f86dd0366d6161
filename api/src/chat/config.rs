//! `[chat]`: who may open chat, how much a connection may hold, and the room limits.

use livegate_core::config::Problems;
use serde::Deserialize;

/// Largest text frame a client may send, in bytes (the protocol's hard cap).
pub const MAX_FRAME_BYTES: usize = 10 * 1024;

/// `[chat]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Serve chat (`/ws` and the chat routes). Default: true.
    pub enabled: bool,
    /// Serve only chat on this instance (no other REST route), so that chat scales apart
    /// from the rest of the API. Default: false.
    pub only: bool,
    /// `Origin` values a browser may open chat from (`https://example.com`), or `*` for any.
    /// A request without `Origin` (not a browser) is let through. Default: none, so every
    /// browser page is refused until its site is listed.
    pub allowed_origins: Vec<String>,
    /// Most characters in one message. Default: 500.
    pub max_message_chars: usize,
    /// Most bytes a connection's outbound queue may hold before the client counts as too
    /// slow and is closed. Default: 262144.
    pub max_outbound_bytes: usize,
    /// How long one write to a client may take before it counts as too slow, in
    /// milliseconds. Default: 10000.
    pub send_timeout_ms: u64,
    /// Interval between pings, in milliseconds. Default: 25000.
    pub ping_interval_ms: u64,
    /// A connection from which nothing (not even a pong) arrived for this long is closed, in
    /// milliseconds. Default: 60000.
    pub idle_timeout_ms: u64,
    /// Entries kept per room in the bus log (what recovery can give back). Default: 1000.
    pub history_len: usize,
    /// Most missed messages sent on a reconnect; a larger gap answers `recovered: false`.
    /// Default: 300.
    pub recover_limit: usize,
    /// The burst of one user's token bucket in a room, refilled completely over
    /// `rate_window_ms` (owner, moderators and admins exempt); 0 turns the limit off.
    /// Default: 5.
    pub rate_messages: u32,
    /// How long the bucket takes to refill from empty, in milliseconds. Default: 5000.
    pub rate_window_ms: u64,
    /// Refused sends in a row after which a connection is closed for abuse. Default: 10.
    pub abuse_strikes: u32,
    /// How often an instance refreshes the presence of the users it has sockets for, in
    /// milliseconds. Default: 25000.
    pub presence_refresh_ms: u64,
    /// How long a user stays present without a refresh (after their last tab closed), in
    /// milliseconds. Default: 60000.
    pub presence_ttl_ms: u64,
    /// Rooms with more present users than this get no join/leave frames; 0 turns them off
    /// everywhere. Default: 1000.
    pub presence_events_max: u64,
    /// Most messages waiting to be written to the database; beyond, new ones are kept only in
    /// the bus log (and counted). Default: 10000.
    pub store_queue: usize,
    /// How often queued messages are written to the database, in milliseconds. Default: 500.
    pub store_interval_ms: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            only: false,
            allowed_origins: Vec::new(),
            max_message_chars: 500,
            max_outbound_bytes: 256 * 1024,
            send_timeout_ms: 10_000,
            ping_interval_ms: 25_000,
            idle_timeout_ms: 60_000,
            history_len: 1000,
            recover_limit: 300,
            rate_messages: 5,
            rate_window_ms: 5000,
            abuse_strikes: 10,
            presence_refresh_ms: 25_000,
            presence_ttl_ms: 60_000,
            presence_events_max: 1000,
            store_queue: 10_000,
            store_interval_ms: 500,
        }
    }
}

impl ChatConfig {
    /// Records problems under `chat.`.
    pub fn validate(&self, problems: &mut Problems) {
        problems.check(
            (1..=MAX_FRAME_BYTES / 4).contains(&self.max_message_chars),
            "chat.max_message_chars",
            "must be between 1 and 2560 (a message must fit a 10 KB frame)",
        );
        problems.check(
            self.max_outbound_bytes >= 2 * MAX_FRAME_BYTES,
            "chat.max_outbound_bytes",
            "must be at least 20480",
        );
        problems.check(
            self.idle_timeout_ms > self.ping_interval_ms && self.ping_interval_ms > 0,
            "chat.idle_timeout_ms",
            "must be longer than chat.ping_interval_ms (at least 1)",
        );
        problems.check(
            (1..=livegate_core::bus::log::MAX_READ).contains(&self.recover_limit)
                && self.recover_limit <= self.history_len,
            "chat.recover_limit",
            "must be between 1 and 1000 and at most chat.history_len",
        );
        problems.check(
            self.presence_ttl_ms > self.presence_refresh_ms && self.presence_refresh_ms > 0,
            "chat.presence_ttl_ms",
            "must be longer than chat.presence_refresh_ms (at least 1)",
        );
        for (key, ok) in [
            ("send_timeout_ms", self.send_timeout_ms > 0),
            ("rate_window_ms", self.rate_window_ms > 0),
            ("abuse_strikes", self.abuse_strikes > 0),
            ("store_queue", self.store_queue > 0),
            ("store_interval_ms", self.store_interval_ms > 0),
        ] {
            problems.check(ok, &format!("chat.{key}"), "must be at least 1");
        }
        for (index, origin) in self.allowed_origins.iter().enumerate() {
            problems.check(
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://"),
                &format!("chat.allowed_origins[{index}]"),
                "must be `*` or an http(s) origin such as https://example.com",
            );
        }
    }

    /// Whether a browser page on `origin` may open chat.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        self.allowed_origins.iter().any(|allowed| {
            allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
        })
    }
}
