//! Shared building blocks of the livegate services.
//!
//! - [`token`]: play token v1, minted by the room API and verified by the proxy and the hooks.
//! - [`config`]: TOML plus environment overrides, validated with errors that name the key.
//! - [`secret`]: secrets that stay out of logs.
//! - [`telemetry`]: logging set-up and Prometheus rendering.

#[cfg(feature = "bus")]
pub mod bus;
pub mod config;
#[cfg(feature = "db")]
pub mod db;
pub mod secret;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token;

pub use secret::Secret;

/// Current unix time in whole seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
