//! Shared fixtures: directories, databases and buses (SQLite + in-process always, MariaDB +
//! Redis when configured), an s3s-fs server, the service in process, and waits on the job
//! table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use livegate_core::bus::{Bus, BusConfig, RecordingJob};
use livegate_core::db::recording_jobs;
use livegate_core::db::testing::{backends, TestDatabase};
use livegate_core::db::{
    rooms, streams, users, Backend, Database, JobState, NewRoom, NewStream, OriginIds,
    RecordingJobRow, StartOutcome,
};
use livegate_core::service::{Shutdown, Stop};
use livegate_core::Secret;
use livegate_recorder::config::{ChecksumWhen, Config, PartChecksum, S3Config, StorageKind};
use livegate_recorder::storage::local::LocalStorage;
use livegate_recorder::storage::s3::S3Storage;
use livegate_recorder::storage::Storage;
use livegate_recorder::App;
use livegate_tests::ChildGuard;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// Access key of the test S3 server.
pub(crate) const ACCESS_KEY: &str = "AKIDLIVEGATETEST";
/// Secret key of the test S3 server.
pub(crate) const SECRET_KEY: &str = "livegate-test-secret-0123456789";
/// The S3 part size in tests: the smallest s3s-fs accepts (it enforces S3's 5 MiB).
pub(crate) const PART_SIZE: u64 = 5 * 1024 * 1024;

/// A name no other test uses.
pub(crate) fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The directories of one test.
pub(crate) struct Dirs {
    _tmp: TempDir,
    /// The watched recording directory.
    pub(crate) rec: PathBuf,
    /// The work directory.
    pub(crate) work: PathBuf,
    /// The failed directory.
    pub(crate) failed: PathBuf,
    /// The local storage directory.
    pub(crate) store: PathBuf,
}

pub(crate) fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    Dirs {
        rec: make("rec"),
        work: make("work"),
        failed: make("failed"),
        store: make("store"),
        _tmp: tmp,
    }
}

/// Quick timings, local storage, watching `dirs.rec`.
pub(crate) fn config(dirs: &Dirs) -> Config {
    let mut config = Config::default();
    config.watch.dirs = vec![dirs.rec.clone()];
    config.watch.quiet_period_ms = 300;
    config.watch.abandoned_after_ms = 1500;
    config.watch.check_interval_ms = 50;
    config.jobs.workers = 2;
    config.jobs.lease_ms = 3000;
    config.jobs.poll_interval_ms = 50;
    config.jobs.retry_initial_ms = 100;
    config.jobs.retry_max_ms = 500;
    config.remux.work_dir = dirs.work.clone();
    config.remux.failed_dir = dirs.failed.clone();
    config.storage.local.dir = dirs.store.clone();
    config.server.shutdown_grace_ms = 5000;
    // Only the tests of snapshots pull from an origin.
    config.pictures.snapshots.enabled = false;
    config
}

/// A database and a bus to run against.
pub(crate) struct Env {
    pub(crate) db: Database,
    pub(crate) bus: Bus,
    pub(crate) bus_config: BusConfig,
    // Keeps the database alive (a MariaDB one is dropped with it).
    pub(crate) test_db: TestDatabase,
}

impl Env {
    /// The database's URL, for a service process of its own.
    pub(crate) fn db_url(&self) -> &str {
        &self.test_db.url
    }

    pub(crate) fn name(&self) -> &'static str {
        match self.db.backend() {
            Backend::Sqlite => "sqlite+memory",
            Backend::Mysql => "mariadb+redis",
        }
    }
}

/// SQLite with the in-process bus, and MariaDB with Redis when both are configured.
pub(crate) async fn envs() -> Vec<Env> {
    let mut envs = Vec::new();
    for backend in backends() {
        let bus_config = match backend {
            Backend::Sqlite => BusConfig::default(),
            Backend::Mysql => match livegate_core::testing::redis_url() {
                Some(url) => BusConfig {
                    url: Secret::new(url),
                    key_prefix: unique("lgrec"),
                    jobs_lease_ms: 3000,
                    ..BusConfig::default()
                },
                None => continue,
            },
        };
        let test_db = TestDatabase::create(backend).await.unwrap();
        let bus = Bus::connect(&bus_config).unwrap();
        envs.push(Env {
            db: test_db.db.clone(),
            bus,
            bus_config,
            test_db,
        });
    }
    envs
}

/// The service running in this process.
pub(crate) struct Running {
    shutdown: Shutdown,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    pub(crate) admin: SocketAddr,
}

pub(crate) async fn start(mut config: Config, env: &Env, storage: Arc<dyn Storage>) -> Running {
    config.bus = env.bus_config.clone();
    let app = App::build_with(config, env.db.clone(), env.bus.clone(), storage);
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(app.run(admin_listener, shutdown.clone()));
    Running {
        shutdown,
        handle: Some(handle),
        admin,
    }
}

impl Running {
    /// Drains: the workers hand back their jobs.
    pub(crate) async fn stop(mut self) {
        self.shutdown.request(Stop::Drain);
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.request(Stop::Now);
    }
}

/// A room with a publish session: `(room_id, stream_id)`.
pub(crate) async fn stream(db: &Database) -> (i64, i64) {
    let (room, _) = room_with_key(db, "recorded").await;
    let origin = OriginIds {
        kind: "nginx-rtmp".into(),
        server_id: "nginx-rtmp".into(),
        ..OriginIds::default()
    };
    let mut tx = db.begin().await.unwrap();
    let outcome = streams::start(
        &mut tx,
        &NewStream {
            room_id: room,
            origin: &origin,
            publisher_ip: None,
        },
        1_000,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let StartOutcome::Started(stream) = outcome else {
        panic!("stream not started");
    };
    (room, stream)
}

/// A room with a stream key, not live: `(room_id, stream_key)`.
pub(crate) async fn room_with_key(db: &Database, title: &str) -> (i64, String) {
    let owner = users::create(db, &unique("u"), "h", "streamer", 1)
        .await
        .unwrap();
    let key = unique("key");
    let room = rooms::create(
        db,
        &NewRoom {
            owner_id: owner,
            title,
            stream_key: &key,
            stream_key_expires_at: None,
            publish_allow_cidrs: None,
        },
        1,
    )
    .await
    .unwrap();
    (room, key)
}

/// What most tests start from: their directories and a room with a publish session, for a
/// service storing into the local directory `dirs.store`.
pub(crate) struct Case {
    pub(crate) dirs: Dirs,
    pub(crate) room: i64,
    pub(crate) stream_id: i64,
}

impl Case {
    pub(crate) async fn new(env: &Env) -> Case {
        let dirs = dirs();
        let (room, stream_id) = stream(&env.db).await;
        Case {
            dirs,
            room,
            stream_id,
        }
    }

    /// The tests' configuration for these directories.
    pub(crate) fn config(&self) -> Config {
        config(&self.dirs)
    }

    /// The service with `config`, storing into `dirs.store`.
    pub(crate) async fn start_with(&self, env: &Env, config: Config) -> Running {
        start(config, env, Arc::new(LocalStorage::new(&self.dirs.store))).await
    }

    /// The service with the tests' configuration, storing into `dirs.store`.
    pub(crate) async fn start(&self, env: &Env) -> Running {
        self.start_with(env, self.config()).await
    }

    /// An FLV recording of the room in the watched directory, named for `unix_s` (the start
    /// its origin would give it): `seconds` long at `kbps`.
    pub(crate) fn flv(&self, unix_s: u64, seconds: u32, kbps: u32) -> PathBuf {
        let path = self.dirs.rec.join(format!("{}-{unix_s}.flv", self.room));
        livegate_tests::media::make_flv(&path, seconds, kbps);
        path
    }

    /// The callback's job for `path`, on the bus, as the hooks service queues it.
    pub(crate) async fn announce(&self, env: &Env, path: &Path) {
        env.bus
            .recordings()
            .push(&job(self.room, Some(self.stream_id), path))
            .await
            .unwrap();
    }

    /// The stream's `record_url`.
    pub(crate) async fn record_url(&self, env: &Env) -> Option<String> {
        record_url(&env.db, self.room, self.stream_id).await
    }
}

/// The job the hooks service queues for a closed file.
pub(crate) fn job(room_id: i64, stream_id: Option<i64>, path: &Path) -> RecordingJob {
    RecordingJob {
        room_id,
        stream_id,
        path: path.to_string_lossy().into_owned(),
        origin_kind: "nginx-rtmp".to_owned(),
        origin_server_id: "nginx-rtmp".to_owned(),
        size_bytes: None,
        duration_ms: None,
        enqueued_at_ms: livegate_core::db::now_ms(),
    }
}

/// Waits until the job of `path` is in `state`.
pub(crate) async fn wait_state(db: &Database, path: &Path, state: JobState) -> RecordingJobRow {
    let source = path.to_string_lossy().into_owned();
    livegate_tests::wait_until(
        &format!("{} to be {}", path.display(), state.as_str()),
        || {
            let source = source.clone();
            async move {
                recording_jobs::by_source(db, &source)
                    .await
                    .unwrap()
                    .filter(|row| row.job_state() == state)
            }
        },
    )
    .await
}

/// The stream's `record_url`.
pub(crate) async fn record_url(db: &Database, room_id: i64, stream_id: i64) -> Option<String> {
    streams::of_room(db, room_id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == stream_id)
        .and_then(|s| s.record_url)
}

/// All regular files under `dir`, recursively, sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The stored recordings (MP4s, not their posters) under `dir`.
pub(crate) fn recordings_under(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "mp4"))
        .collect()
}

/// What ffprobe says `path` is: `(codec, width, height)` of its first video stream.
pub(crate) fn picture_of(path: &Path) -> (String, u32, u32) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,width,height"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {} failed", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.trim().split(',');
    let codec = fields.next().unwrap_or_default().to_owned();
    let width = fields.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let height = fields.next().and_then(|h| h.parse().ok()).unwrap_or(0);
    (codec, width, height)
}

/// ffprobe's stream kinds of `path`, sorted.
pub(crate) fn stream_kinds(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {} failed", path.display());
    let mut kinds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    kinds.sort();
    kinds
}

/// The recorder's configuration for the test S3 server at `endpoint` with `bucket`: 5 MiB
/// parts, two in flight, keys under `recordings/`.
fn s3_config(endpoint: &str, bucket: &str) -> S3Config {
    S3Config {
        endpoint: endpoint.to_owned(),
        region: "us-east-1".to_owned(),
        bucket: bucket.to_owned(),
        access_key: Secret::new(ACCESS_KEY),
        secret_key: Secret::new(SECRET_KEY),
        path_style: true,
        checksum: ChecksumWhen::WhenSupported,
        part_checksum: PartChecksum::default(),
        part_size_bytes: PART_SIZE,
        parts_in_flight: 2,
        orphan_upload_max_age_s: 86_400,
        key_prefix: "recordings/".to_owned(),
        request_timeout_ms: 10_000,
    }
}

/// Creates the bucket `config` names.
async fn create_bucket(config: &S3Config) {
    S3Storage::new(config)
        .client()
        .create_bucket()
        .bucket(&config.bucket)
        .send()
        .await
        .unwrap();
}

/// Begins a multipart upload of `key`; returns its id.
pub(crate) async fn begin_upload(storage: &S3Storage, key: &str) -> String {
    let created = storage
        .client()
        .create_multipart_upload()
        .bucket(storage.bucket())
        .key(key)
        .send()
        .await
        .unwrap();
    created.upload_id().unwrap().to_owned()
}

/// The row of a job that was in the middle of uploading `key` as `upload_id` at `at_ms`,
/// held by `owner`: the caller decides how its attempt ended.
pub(crate) async fn job_mid_upload(
    db: &Database,
    owner: &str,
    key: &str,
    upload_id: &str,
    at_ms: i64,
) -> i64 {
    let path = format!("/nonexistent/{}.flv", unique("uploading"));
    let (row, _) = recording_jobs::discover(
        db,
        &recording_jobs::NewRecordingJob {
            source_path: &path,
            room_id: 9,
            stream_id: None,
            origin_kind: "srs",
            started_at: 1,
        },
        at_ms,
    )
    .await
    .unwrap();
    recording_jobs::claim(db, row.id, owner, at_ms + 60_000, at_ms)
        .await
        .unwrap()
        .unwrap();
    let remuxed = recording_jobs::Remuxed {
        work_path: "/nonexistent/9.mp4",
        size_bytes: 20 * 1024 * 1024,
        checksum: "00",
        object_key: key,
        part_size: i64::try_from(PART_SIZE).unwrap(),
    };
    assert!(
        recording_jobs::set_remuxed(db, row.id, owner, &remuxed, at_ms)
            .await
            .unwrap()
    );
    assert!(
        recording_jobs::set_upload(db, row.id, owner, Some(upload_id), 2, at_ms)
            .await
            .unwrap()
    );
    row.id
}

/// A server the tests run: the binary `env_var` names, else `name` on `PATH`, else where
/// `.ci/run` installs it (`cached`). Missing, the test fails under CI and is reported as
/// skipped elsewhere.
fn server_bin(env_var: &str, name: &str, cached: &str) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os(env_var) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Some(bin);
        }
        return livegate_core::testing::missing(&format!(
            "{name} ({env_var}={} does not exist)",
            bin.display()
        ));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|bin| bin.is_file())
    });
    let cached = PathBuf::from(cached);
    on_path
        .or_else(|| cached.is_file().then_some(cached))
        .or_else(|| {
            livegate_core::testing::missing(&format!(
                "{name} (set {env_var} or put it on PATH; .ci/run installs it)"
            ))
        })
}

/// The s3s-fs binary: `LIVEGATE_TEST_S3S_BIN`, else `s3s-fs` on `PATH`, else where `.ci/run`
/// installs it.
pub(crate) fn s3s_bin() -> Option<PathBuf> {
    server_bin("LIVEGATE_TEST_S3S_BIN", "s3s-fs", "/var/tmp/s3s/bin/s3s-fs")
}

/// moto's S3 server: `LIVEGATE_TEST_MOTO_BIN`, else `moto_server` on `PATH`, else where
/// `.ci/run` installs it.
pub(crate) fn moto_bin() -> Option<PathBuf> {
    server_bin(
        "LIVEGATE_TEST_MOTO_BIN",
        "moto_server",
        "/var/tmp/moto/bin/moto_server",
    )
}

/// A running moto S3 server on loopback with one bucket: the S3-compatible server here that
/// lists multipart uploads (s3s-fs does not). It accepts any credentials, and lists every
/// upload as initiated on 2010-11-10.
pub(crate) struct MotoServer {
    _child: ChildGuard,
    addr: SocketAddr,
    bucket: String,
}

impl MotoServer {
    pub(crate) async fn start() -> Option<MotoServer> {
        let bin = moto_bin()?;
        let addr = livegate_tests::free_addr();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = MotoServer {
            _child: ChildGuard::new("moto_server", child),
            addr,
            bucket: "recordings".to_owned(),
        };
        livegate_tests::wait_for_listener("moto_server to listen", addr).await;
        create_bucket(&server.config()).await;
        Some(server)
    }

    /// The recorder's configuration for this server.
    pub(crate) fn config(&self) -> S3Config {
        s3_config(&format!("http://{}", self.addr), &self.bucket)
    }
}

/// A running s3s-fs on loopback that checks signatures, with one bucket.
pub(crate) struct S3Server {
    bin: PathBuf,
    child: Option<ChildGuard>,
    pub(crate) addr: SocketAddr,
    root: TempDir,
    pub(crate) bucket: String,
}

impl S3Server {
    pub(crate) async fn start() -> Option<S3Server> {
        let bin = s3s_bin()?;
        let root = tempfile::tempdir().unwrap();
        let addr = livegate_tests::free_addr();
        let mut server = S3Server {
            bin,
            child: None,
            addr,
            root,
            bucket: "recordings".to_owned(),
        };
        server.resume().await;
        create_bucket(&server.config(&server.endpoint())).await;
        Some(server)
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The recorder's configuration for this server at `endpoint` (itself, or a proxy).
    pub(crate) fn config(&self, endpoint: &str) -> S3Config {
        s3_config(endpoint, &self.bucket)
    }

    /// Stops the server (its files stay).
    pub(crate) fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate();
        }
    }

    /// Starts it (again) on the same address and files.
    pub(crate) async fn resume(&mut self) {
        let child = Command::new(&self.bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(ChildGuard::new("s3s-fs", child));
        livegate_tests::wait_for_listener("s3s-fs to listen", self.addr).await;
    }

    /// The multipart uploads the server still holds (its `.upload-*.json` files).
    pub(crate) fn open_uploads(&self) -> Vec<String> {
        self.upload_files()
            .into_iter()
            .filter(|name| name.starts_with(".upload-") && name.ends_with(".json"))
            .collect()
    }

    /// Every file of a multipart upload the server holds: upload records and stored parts.
    pub(crate) fn upload_files(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload"))
            .collect()
    }

    /// How many parts of multipart upload `upload_id` the server holds.
    pub(crate) fn stored_parts(&self, upload_id: &str) -> usize {
        let prefix = format!(".upload_id-{upload_id}.part-");
        self.upload_files()
            .iter()
            .filter(|name| name.starts_with(&prefix))
            .count()
    }

    /// Leaves multipart upload `upload_id` as a completion cut off half way leaves it on
    /// s3s-fs: its parts listed, its record gone, so that completing it is refused.
    /// With `took_first_part`, the completion had consumed the first part already.
    pub(crate) fn cut_off_completion(&self, upload_id: &str, took_first_part: bool) {
        let root = self.root.path();
        std::fs::remove_file(root.join(format!(".upload-{upload_id}.json"))).unwrap();
        if took_first_part {
            std::fs::remove_file(root.join(format!(".upload_id-{upload_id}.part-1"))).unwrap();
        }
    }

    /// The bytes of object `key`.
    pub(crate) async fn get(&self, key: &str) -> Vec<u8> {
        let storage = S3Storage::new(&self.config(&self.endpoint()));
        let object = storage
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// The keys in the bucket.
    pub(crate) async fn keys(&self) -> Vec<String> {
        let storage = S3Storage::new(&self.config(&self.endpoint()));
        let listed = storage
            .client()
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }
}

/// The configuration with S3 storage.
pub(crate) fn with_s3(mut config: Config, s3: S3Config) -> Config {
    config.storage.kind = StorageKind::S3;
    config.storage.s3 = Some(s3);
    config
}

/// An ffmpeg that reads its input at its native rate (a 45-second recording takes 45
/// seconds) and writes its process id to `marker` when it starts (it is that process: the
/// script `exec`s it).
pub(crate) fn slow_ffmpeg(dir: &Path, marker: &Path) -> PathBuf {
    let script = dir.join("slow-ffmpeg.sh");
    let text = format!(
        "#!/bin/sh\necho $$ > '{}'\nexec ffmpeg -re \"$@\"\n",
        marker.display()
    );
    std::fs::write(&script, text).unwrap();
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
    script
}

/// The admin endpoint's `/metrics` text.
pub(crate) async fn metrics(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// How long a test waits for a condition.
pub(crate) fn patience() -> std::time::Duration {
    livegate_tests::patience()
}
