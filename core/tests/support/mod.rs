//! What the bus test files share: a bus configuration per backend, each Redis one under a key
//! prefix of its own.
#![allow(dead_code, reason = "each test file uses part of it")]

use livegate_core::bus::BusConfig;
use livegate_core::Secret;

/// A key prefix no other test uses.
pub(crate) fn unique_prefix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "lgtest:{}:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The in-process bus always, and Redis from `LIVEGATE_TEST_REDIS_URL` (required under CI:
/// see `livegate_core::testing`), each adjusted by `adjust`.
pub(crate) fn configs_with(adjust: impl Fn(&mut BusConfig)) -> Vec<(&'static str, BusConfig)> {
    let mut memory = BusConfig::default();
    adjust(&mut memory);
    let mut out = vec![("memory", memory)];
    if let Some(url) = livegate_core::testing::redis_url() {
        out.push(("redis", redis_config(&url, &adjust)));
    }
    out
}

/// A Redis bus configuration for `url` under a fresh prefix.
pub(crate) fn redis_config(url: &str, adjust: &impl Fn(&mut BusConfig)) -> BusConfig {
    let mut config = BusConfig {
        url: Secret::new(url),
        key_prefix: unique_prefix(),
        ..BusConfig::default()
    };
    adjust(&mut config);
    config
}
