//! `[console]` (the operator console's live feed, history sampler and health scrapes) and
//! `[recordings]` (where the recorder stores MP4s, for download links).

use livegate_core::config::Problems;
use livegate_recorder::config::{LocalStorageConfig, S3Config, StorageKind};
use serde::Deserialize;

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The proxy's admin `/metrics` URL (e.g. `http://127.0.0.1:9180/metrics`), scraped for
    /// `GET /admin/health`. Default: none (not shown).
    pub proxy_metrics_url: Option<String>,
    /// The hooks service's admin `/metrics` URL. Default: none.
    pub hooks_metrics_url: Option<String>,
    /// The recorder's admin `/metrics` URL. Default: none.
    pub recorder_metrics_url: Option<String>,
    /// Timeout of one scrape or one origin check of the health page, in milliseconds.
    /// Default: 2000.
    pub check_timeout_ms: u64,
    /// How often the live feed sends a fresh snapshot when nothing happened, in
    /// milliseconds. Default: 3000.
    pub live_refresh_ms: u64,
    /// Most live rooms a snapshot lists (longest running first). Default: 500.
    pub live_max_rooms: u32,
    /// Most live feeds (`GET /admin/live/events`) open at once on this instance; more are
    /// refused with 503. Default: 64.
    pub live_max_subscribers: usize,
    /// How often the history sampler records each live room's viewers and bitrate, in
    /// seconds. Default: 10.
    pub history_interval_s: u64,
    /// How long the samples are kept on the bus, in seconds. Default: 3600.
    pub history_retention_s: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            proxy_metrics_url: None,
            hooks_metrics_url: None,
            recorder_metrics_url: None,
            check_timeout_ms: 2000,
            live_refresh_ms: 3000,
            live_max_rooms: 500,
            live_max_subscribers: 64,
            history_interval_s: 10,
            history_retention_s: 3600,
        }
    }
}

/// `[recordings]`: the recorder's storage as the recorder's own `[storage]` names it, so that
/// listings can hand out download links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingsConfig {
    /// `local` or `s3`. Default: `local`.
    pub kind: StorageKind,
    /// `[recordings.local]`: the directory the recorder stores into (the API serves its
    /// files through signed links).
    pub local: LocalStorageConfig,
    /// `[recordings.s3]`, required with `kind = "s3"`: links are presigned `GET`s.
    pub s3: Option<S3Config>,
    /// How long a download link works, in seconds. Default: 3600.
    pub download_ttl_s: u64,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        Self {
            kind: StorageKind::Local,
            local: LocalStorageConfig::default(),
            s3: None,
            download_ttl_s: 3600,
        }
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

impl ConsoleConfig {
    /// Records problems under `console.`.
    pub fn validate(&self, problems: &mut Problems) {
        for (key, url) in [
            ("console.proxy_metrics_url", &self.proxy_metrics_url),
            ("console.hooks_metrics_url", &self.hooks_metrics_url),
            ("console.recorder_metrics_url", &self.recorder_metrics_url),
        ] {
            if let Some(url) = url {
                problems.check(is_http_url(url), key, "must be an http:// or https:// URL");
            }
        }
        for (key, ok) in [
            ("console.check_timeout_ms", self.check_timeout_ms > 0),
            ("console.live_refresh_ms", self.live_refresh_ms >= 100),
            (
                "console.live_max_rooms",
                (1..=10_000).contains(&self.live_max_rooms),
            ),
            (
                "console.live_max_subscribers",
                self.live_max_subscribers > 0,
            ),
            (
                "console.history_interval_s",
                (1..=3600).contains(&self.history_interval_s),
            ),
        ] {
            problems.check(
                ok,
                key,
                "must be positive (live_refresh_ms at least 100, live_max_rooms at most 10000, \
                 history_interval_s at most 3600)",
            );
        }
        problems.check(
            self.history_retention_s >= self.history_interval_s
                && self.history_retention_s <= 7 * 86_400,
            "console.history_retention_s",
            "must be at least console.history_interval_s and at most a week",
        );
    }
}

impl RecordingsConfig {
    /// Records problems under `recordings.`.
    pub fn validate(&self, problems: &mut Problems) {
        match (self.kind, &self.s3) {
            (StorageKind::Local, _) => problems.check(
                self.local.dir.is_absolute(),
                "recordings.local.dir",
                "must be an absolute path",
            ),
            (StorageKind::S3, None) => {
                problems.add(
                    "recordings.s3",
                    "must be given when recordings.kind is \"s3\"",
                );
            }
            (StorageKind::S3, Some(s3)) => s3.validate_as("recordings.s3", problems),
        }
        problems.check(
            (1..=7 * 86_400).contains(&self.download_ttl_s),
            "recordings.download_ttl_s",
            "must be between 1 and 604800 (a week, S3's longest presigned URL)",
        );
    }
}
