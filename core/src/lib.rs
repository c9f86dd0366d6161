//! The kit every livegate service stands on (read `docs/kit.md` first).
//!
//! - [`token`]: play token v1, minted by the room API and verified by the proxy and the hooks.
//! - `origin` (feature `origin`): the origins' HTTP APIs behind one control trait.
//! - [`config`]: TOML plus environment overrides; every problem reported at once, by key.
//! - [`secret`]: secrets that stay out of logs.
//! - [`telemetry`]: logging set-up and the metrics registry (`livegate_<service>_…`).
//! - `service` (feature `service`): signals, one bounded drain, the admin server, listeners,
//!   readiness checks, the shared command-line options (feature `service-parts`: only the
//!   last three, for a binary on another runtime).
//! - `db` (feature `db`): MySQL/MariaDB and SQLite, transactions, repository functions by
//!   domain.
//! - `bus` (feature `bus`): `Queue`, `Channel` and `Log` on Redis and in process.
//! - `testing` (feature `testing`, tests only): what a test needs from its surroundings.

#[cfg(feature = "bus")]
pub mod bus;
pub mod config;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "origin")]
pub mod origin;
pub mod secret;
#[cfg(feature = "service-parts")]
pub mod service;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token;

pub use secret::Secret;

/// Milliseconds since the unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Current unix time in whole seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
