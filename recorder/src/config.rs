//! The recorder's configuration: `[server]`, `[database]`, `[bus]`, `[log]`, `[watch]`,
//! `[jobs]`, `[remux]`, `[storage]` and `[pictures]`. Loaded from TOML (`-c/--config` or
//! `LIVEGATE_RECORDER_CONFIG`) with `LIVEGATE_RECORDER__SECTION__KEY` overrides. Without a file
//! the service runs on these defaults: SQLite, the in-process bus, no watched directory, and
//! MP4s stored in a local directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use livegate_core::bus::BusConfig;
use livegate_core::config::{Problems, Validate};
use livegate_core::db::DbConfig;
use livegate_core::telemetry::LogConfig;
use livegate_core::Secret;
use serde::Deserialize;

/// S3 allows at most this many parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// The smallest part size accepted. S3 itself needs 5 MiB for every part but the last; smaller
/// parts are for servers that accept them.
pub const MIN_PART_SIZE: u64 = 64 * 1024;
const MIB: u64 = 1024 * 1024;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Admin listener and shutdown.
    pub server: ServerConfig,
    /// The database (streams and the recorder's job table).
    pub database: DbConfig,
    /// The bus (recording jobs from the hooks, "recording ready" events).
    pub bus: BusConfig,
    /// Logging.
    pub log: LogConfig,
    /// Recording directories watched for files whose callback never came.
    pub watch: WatchConfig,
    /// Workers, leases and retries.
    pub jobs: JobsConfig,
    /// ffmpeg and ffprobe.
    pub remux: RemuxConfig,
    /// Where MP4s are stored.
    pub storage: StorageConfig,
    /// Posters of recordings and snapshots of live rooms.
    pub pictures: PicturesConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`).
    /// Default: `127.0.0.1:9195`.
    pub admin_listen: SocketAddr,
    /// How long shutdown waits for jobs to reach a point where they can be handed back, in
    /// milliseconds. Default: 10000.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9195)),
            shutdown_grace_ms: 10_000,
        }
    }
}

/// `[watch]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Directories the origins record into, watched recursively and scanned at start-up.
    /// Default: none (only the bus jobs).
    pub dirs: Vec<PathBuf>,
    /// A file with a final name is closed when its size has not changed for this long, in
    /// milliseconds. Default: 10000.
    pub quiet_period_ms: u64,
    /// A `.tmp` or hidden in-progress file untouched this long (milliseconds) was left by an
    /// origin that died: it is parked as failed with the reason. Default: 600000.
    pub abandoned_after_ms: u64,
    /// Milliseconds between two looks at files waiting for their quiet period (and for a
    /// fresh scan, which catches what the watcher missed). Default: 1000.
    pub check_interval_ms: u64,
    /// Merge each stream's HLS segments into one MP4: a playlist (`.m3u8`) in a watched
    /// directory becomes one job once it ends (`#EXT-X-ENDLIST`) and holds still, and the
    /// `.ts` files beside a playlist are its segments, not recordings of their own. (Bus jobs
    /// naming a playlist or a directory of segments are merged either way.) Default: false.
    pub merge_hls: bool,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            dirs: Vec::new(),
            quiet_period_ms: 10_000,
            abandoned_after_ms: 600_000,
            check_interval_ms: 1000,
            merge_hls: false,
        }
    }
}

/// `[jobs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs worked on at once (each runs one ffmpeg or one upload). Default: 2.
    pub workers: usize,
    /// How long a worker may go without renewing its hold on a job before another worker
    /// takes the job over, in milliseconds. Default: 30000.
    pub lease_ms: u64,
    /// Milliseconds between two looks at the job table for jobs due again. Default: 1000.
    pub poll_interval_ms: u64,
    /// First retry delay after a failure that may pass (storage or database down), in
    /// milliseconds; doubles per attempt. Default: 1000.
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds. Default: 300000.
    pub retry_max_ms: u64,
    /// This worker's name in leases; unique per process. Default: host name and process id.
    pub instance: Option<String>,
    /// Directories the files that recording jobs from the bus name must lie in (after
    /// symbolic links and `..` are resolved). A job naming a file anywhere else is failed
    /// with the reason and the file is not touched: the recorder moves and deletes the files
    /// it is given, and a callback is only as trustworthy as whoever could send it.
    /// Default: the watched directories (`watch.dirs`).
    pub source_dirs: Vec<PathBuf>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            lease_ms: 30_000,
            poll_interval_ms: 1000,
            retry_initial_ms: 1000,
            retry_max_ms: 300_000,
            instance: None,
            source_dirs: Vec::new(),
        }
    }
}

impl JobsConfig {
    /// The retry delay after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u64 << attempts.min(20);
        Duration::from_millis(
            self.retry_initial_ms
                .saturating_mul(factor)
                .min(self.retry_max_ms),
        )
    }
}

/// `[remux]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemuxConfig {
    /// The ffmpeg executable. Default: `ffmpeg`.
    pub ffmpeg: PathBuf,
    /// The ffprobe executable. Default: `ffprobe`.
    pub ffprobe: PathBuf,
    /// Where MP4s are written before they are stored. Default:
    /// `/var/lib/livegate/recorder/work`.
    pub work_dir: PathBuf,
    /// Where inputs ffmpeg cannot read are moved, with the reason beside them. Default:
    /// `/var/lib/livegate/recorder/failed`.
    pub failed_dir: PathBuf,
    /// Longest one ffmpeg or ffprobe run may take, in milliseconds. Default: 3600000.
    pub time_limit_ms: u64,
    /// How far the MP4's duration may be from the source's, in milliseconds. Default: 1000.
    pub duration_tolerance_ms: u64,
    /// Write fragmented MP4 (`frag_keyframe+empty_moov`: one pass, playable up to where it
    /// was cut, less compatible with old players) instead of one index at the front
    /// (`+faststart`). Default: false.
    pub fragmented: bool,
    /// util-linux's `setpriv`, through which ffmpeg and ffprobe run with a parent-death
    /// signal, so that they die with the recorder even when it is killed with SIGKILL. Empty
    /// runs them directly. Default: `setpriv`.
    pub setpriv: PathBuf,
}

impl Default for RemuxConfig {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
            work_dir: PathBuf::from("/var/lib/livegate/recorder/work"),
            failed_dir: PathBuf::from("/var/lib/livegate/recorder/failed"),
            time_limit_ms: 3_600_000,
            duration_tolerance_ms: 1000,
            fragmented: false,
            setpriv: PathBuf::from("setpriv"),
        }
    }
}

/// `[pictures]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PicturesConfig {
    /// Make a poster (one JPEG of the MP4) for each recording, stored beside it. Default:
    /// true.
    pub posters: bool,
    /// Where in a recording its poster is taken, in milliseconds (half the recording for
    /// shorter ones). Default: 5000.
    pub poster_at_ms: u64,
    /// Widest a poster or snapshot may be, in pixels. Default: 640.
    pub max_width: u32,
    /// JPEG quality, 2 (best) to 31. Default: 5.
    pub quality: u8,
    /// Public base URL of the storage (a public bucket, a CDN, or a web server in front of
    /// the local directory): pictures are linked as `{base}{key}`. Without it, the room API
    /// serves them (a fresh presigned link on S3, the file itself locally). Default: none.
    pub public_base_url: Option<String>,
    /// `[pictures.snapshots]`.
    pub snapshots: SnapshotsConfig,
}

impl Default for PicturesConfig {
    fn default() -> Self {
        Self {
            posters: true,
            poster_at_ms: 5000,
            max_width: 640,
            quality: 5,
            public_base_url: None,
            snapshots: SnapshotsConfig::default(),
        }
    }
}

/// `[pictures.snapshots]`: one keyframe of each live room, pulled from the origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsConfig {
    /// Pull snapshots of live rooms. Off on deployments that do not want the extra pulls.
    /// Default: true.
    pub enabled: bool,
    /// The origin's play URL of a room: `{room}` is its id, `{token}` a play token minted
    /// with `token_key`. Default: `rtmp://127.0.0.1:1935/live/{room}`.
    pub play_url: String,
    /// Play token key for `{token}` (one of the hooks service's `play.token_keys`). May be
    /// `env:NAME` or `file:PATH`. Default: none.
    pub token_key: Option<Secret>,
    /// Milliseconds between two snapshots of one room. Default: 5000.
    pub interval_ms: u64,
    /// Pulls at once, across rooms. Default: 4.
    pub concurrency: usize,
    /// Longest one pull may take, in milliseconds. Default: 10000.
    pub timeout_ms: u64,
    /// Milliseconds between two readings of the live rooms on the bus (events missed while
    /// the bus was away are caught up then). Default: 30000.
    pub resync_interval_ms: u64,
    /// Most rooms snapshotted at once. Default: 10000.
    pub max_rooms: usize,
    /// Key prefix of the snapshots (`{prefix}{room}.jpg`). Default: `snapshots/`.
    pub key_prefix: String,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            play_url: "rtmp://127.0.0.1:1935/live/{room}".to_owned(),
            token_key: None,
            interval_ms: 5000,
            concurrency: 4,
            timeout_ms: 10_000,
            resync_interval_ms: 30_000,
            max_rooms: 10_000,
            key_prefix: "snapshots/".to_owned(),
        }
    }
}

/// Which storage `[storage]` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// A local directory.
    #[default]
    Local,
    /// An S3-compatible object store.
    S3,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `local` or `s3`. Default: `local`.
    pub kind: StorageKind,
    /// Keep the source and the MP4 on disk after the object is stored. Default: false.
    pub keep_local: bool,
    /// `[storage.local]`.
    pub local: LocalStorageConfig,
    /// `[storage.s3]`, required with `kind = "s3"`.
    pub s3: Option<S3Config>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            kind: StorageKind::Local,
            keep_local: false,
            local: LocalStorageConfig::default(),
            s3: None,
        }
    }
}

/// `[storage.local]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalStorageConfig {
    /// The directory objects are stored under. Default: `/var/lib/livegate/recordings`.
    pub dir: PathBuf,
}

impl Default for LocalStorageConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/livegate/recordings"),
        }
    }
}

/// When the S3 client computes request checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumWhen {
    /// On every request that supports one (the SDK's default).
    #[default]
    WhenSupported,
    /// Only where the API requires one (for servers that reject the newer checksums).
    WhenRequired,
}

/// The checksum each part is sent with (a file of one part, its single request), for the
/// server to verify on arrival.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartChecksum {
    /// CRC32C: a few hundredths of a second per gigabyte on either side.
    #[default]
    Crc32c,
    /// SHA-256, for servers that do not take CRC32C; costs the recorder and the server about
    /// half a second of CPU per gigabyte each.
    Sha256,
}

/// `[storage.s3]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The region. Default: `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// The access key id. May be `env:NAME` or `file:PATH`.
    pub access_key: Secret,
    /// The secret access key. May be `env:NAME` or `file:PATH`.
    pub secret_key: Secret,
    /// Path-style addressing (`endpoint/bucket/key`): MinIO, Garage and most self-hosted
    /// servers need it. Default: true.
    #[serde(default = "yes")]
    pub path_style: bool,
    /// When request checksums are computed: `when_supported` or `when_required` (R2, older
    /// MinIO and Garage need the latter). Each part still carries its checksum. Default:
    /// `when_supported`.
    #[serde(default)]
    pub checksum: ChecksumWhen,
    /// The checksum each part carries: `crc32c` (AWS, MinIO, Garage, R2) or `sha256`.
    /// Default: `crc32c`.
    #[serde(default)]
    pub part_checksum: PartChecksum,
    /// Multipart part size in bytes, grown for large files so that none needs more than
    /// 10000 parts. Default: 16777216 (16 MiB).
    #[serde(default = "default_part_size")]
    pub part_size_bytes: u64,
    /// Parts of one multipart upload sent at once, each streamed from disk (memory: a small
    /// read buffer per part, not the part). Default: 2.
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: usize,
    /// Multipart uploads given up on are aborted once this old, in seconds. Default: 86400.
    #[serde(default = "default_orphan_age")]
    pub orphan_upload_max_age_s: u64,
    /// Prefix of every object key. Default: `recordings/`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Timeout of one request, in milliseconds. Default: 60000.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}
fn yes() -> bool {
    true
}
fn default_part_size() -> u64 {
    16 * MIB
}
fn default_parts_in_flight() -> usize {
    2
}
fn default_orphan_age() -> u64 {
    86_400
}
fn default_prefix() -> String {
    "recordings/".to_owned()
}
fn default_request_timeout() -> u64 {
    60_000
}

/// The part size for a file of `size` bytes: the configured one, grown (in whole MiB) so that
/// the file fits in [`MAX_PARTS`] parts.
pub fn part_size_for(configured: u64, size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS);
    if needed <= configured {
        configured
    } else {
        needed.div_ceil(MIB) * MIB
    }
}

impl Config {
    /// The directories bus jobs may name files in: `jobs.source_dirs`, else `watch.dirs`.
    pub fn source_dirs(&self) -> &[PathBuf] {
        if self.jobs.source_dirs.is_empty() {
            &self.watch.dirs
        } else {
            &self.jobs.source_dirs
        }
    }

    /// The worker name used in leases and as the bus consumer.
    pub fn instance(&self) -> String {
        self.jobs.instance.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_owned())
                .unwrap_or_else(|_| "recorder".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Problems) {
        self.database.validate("database", problems);
        self.bus.validate("bus", problems);
        self.log.validate(problems);
        problems.check(
            self.server.shutdown_grace_ms > 0,
            "server.shutdown_grace_ms",
            "must be positive",
        );
        for (i, dir) in self.watch.dirs.iter().enumerate() {
            problems.check(
                dir.is_absolute(),
                &format!("watch.dirs[{i}]"),
                "must be an absolute path",
            );
        }
        for (i, dir) in self.jobs.source_dirs.iter().enumerate() {
            problems.check(
                dir.is_absolute(),
                &format!("jobs.source_dirs[{i}]"),
                "must be an absolute path",
            );
        }
        for (key, ok) in [
            ("watch.quiet_period_ms", self.watch.quiet_period_ms > 0),
            ("watch.check_interval_ms", self.watch.check_interval_ms > 0),
            (
                "jobs.workers",
                self.jobs.workers > 0 && self.jobs.workers <= 64,
            ),
            ("jobs.lease_ms", self.jobs.lease_ms >= 300),
            ("jobs.poll_interval_ms", self.jobs.poll_interval_ms > 0),
            ("remux.time_limit_ms", self.remux.time_limit_ms > 0),
        ] {
            problems.check(
                ok,
                key,
                "must be positive (workers: 1 to 64, lease_ms: 300 or more)",
            );
        }
        problems.check(
            self.watch.abandoned_after_ms > self.watch.quiet_period_ms,
            "watch.abandoned_after_ms",
            "must be longer than watch.quiet_period_ms",
        );
        problems.check(
            self.jobs.retry_initial_ms > 0 && self.jobs.retry_max_ms >= self.jobs.retry_initial_ms,
            "jobs.retry_max_ms",
            "must be at least jobs.retry_initial_ms, which must be positive",
        );
        problems.check(
            self.remux.work_dir.is_absolute(),
            "remux.work_dir",
            "must be an absolute path",
        );
        problems.check(
            self.remux.failed_dir.is_absolute() && self.remux.failed_dir != self.remux.work_dir,
            "remux.failed_dir",
            "must be an absolute path other than remux.work_dir",
        );
        self.pictures.validate(problems);
        match (self.storage.kind, &self.storage.s3) {
            (StorageKind::Local, _) => problems.check(
                self.storage.local.dir.is_absolute(),
                "storage.local.dir",
                "must be an absolute path",
            ),
            (StorageKind::S3, None) => {
                problems.add("storage.s3", "must be given when storage.kind is \"s3\"");
            }
            (StorageKind::S3, Some(s3)) => s3.validate_as("storage.s3", problems),
        }
    }
}

impl PicturesConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.check(
            (16..=4096).contains(&self.max_width),
            "pictures.max_width",
            "must be between 16 and 4096",
        );
        problems.check(
            (2..=31).contains(&self.quality),
            "pictures.quality",
            "must be between 2 (best) and 31",
        );
        if let Some(base) = &self.public_base_url {
            problems.check(
                base.starts_with("http://") || base.starts_with("https://"),
                "pictures.public_base_url",
                "must be an http:// or https:// URL",
            );
        }
        let snapshots = &self.snapshots;
        if !snapshots.enabled {
            return;
        }
        problems.check(
            snapshots.play_url.contains("{room}") && snapshots.play_url.contains("://"),
            "pictures.snapshots.play_url",
            "must be a URL with {room} in it, e.g. rtmp://127.0.0.1:1935/live/{room}",
        );
        problems.check(
            !snapshots.play_url.contains("{token}")
                || snapshots
                    .token_key
                    .as_ref()
                    .is_some_and(|key| !key.expose().is_empty()),
            "pictures.snapshots.token_key",
            "must be given when pictures.snapshots.play_url has {token}",
        );
        for (key, ok) in [
            ("interval_ms", snapshots.interval_ms >= 100),
            ("timeout_ms", snapshots.timeout_ms > 0),
            ("resync_interval_ms", snapshots.resync_interval_ms > 0),
            ("concurrency", (1..=64).contains(&snapshots.concurrency)),
            ("max_rooms", snapshots.max_rooms > 0),
        ] {
            problems.check(
                ok,
                &format!("pictures.snapshots.{key}"),
                "must be positive (interval_ms: 100 or more, concurrency: 1 to 64)",
            );
        }
        problems.check(
            !snapshots.key_prefix.starts_with('/'),
            "pictures.snapshots.key_prefix",
            "must not start with '/'",
        );
    }
}

impl S3Config {
    /// Records problems under `section` (`storage.s3` here; the room API names its own).
    pub fn validate_as(&self, section: &str, problems: &mut Problems) {
        let key = |field: &str| format!("{section}.{field}");
        problems.check(
            self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://"),
            &key("endpoint"),
            "must be an http:// or https:// URL",
        );
        problems.check(!self.region.is_empty(), &key("region"), "must not be empty");
        problems.check(
            (3..=63).contains(&self.bucket.len())
                && self
                    .bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
            &key("bucket"),
            "must be a bucket name: 3 to 63 lowercase letters, digits, '-' or '.'",
        );
        problems.check(
            !self.access_key.expose().is_empty(),
            &key("access_key"),
            "must not be empty",
        );
        problems.check(
            !self.secret_key.expose().is_empty(),
            &key("secret_key"),
            "must not be empty",
        );
        problems.check(
            self.part_size_bytes >= MIN_PART_SIZE && self.part_size_bytes <= 5 * 1024 * MIB,
            &key("part_size_bytes"),
            "must be between 65536 and 5 GiB (S3 needs at least 5 MiB)",
        );
        problems.check(
            (1..=16).contains(&self.parts_in_flight),
            &key("parts_in_flight"),
            "must be between 1 and 16",
        );
        problems.check(
            self.orphan_upload_max_age_s > 0,
            &key("orphan_upload_max_age_s"),
            "must be positive",
        );
        problems.check(
            !self.key_prefix.starts_with('/'),
            &key("key_prefix"),
            "must not start with '/'",
        );
        problems.check(
            self.request_timeout_ms > 0,
            &key("request_timeout_ms"),
            "must be positive",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_size_grows_to_stay_within_ten_thousand_parts() {
        assert_eq!(part_size_for(16 * MIB, 1000), 16 * MIB);
        assert_eq!(part_size_for(16 * MIB, 16 * MIB * MAX_PARTS), 16 * MIB);
        let big = 16 * MIB * MAX_PARTS + 1;
        let grown = part_size_for(16 * MIB, big);
        assert_eq!(grown, 17 * MIB);
        assert!(big.div_ceil(grown) <= MAX_PARTS);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let jobs = JobsConfig {
            retry_initial_ms: 100,
            retry_max_ms: 1000,
            ..JobsConfig::default()
        };
        assert_eq!(jobs.backoff(0), Duration::from_millis(100));
        assert_eq!(jobs.backoff(2), Duration::from_millis(400));
        assert_eq!(jobs.backoff(40), Duration::from_millis(1000));
    }
}
