//! The recorder process killed with SIGKILL during a remux (its ffmpeg dies with it), and
//! again during an upload, then restarted: the recording ends in storage exactly once,
//! byte-identical to a clean run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livegate_core::bus::Bus;
use livegate_core::db::recording_jobs::{self, NewRecordingJob};
use livegate_core::db::{now_ms, JobState, RecordingJobRow};
use livegate_recorder::media::{Source, Tools};
use livegate_tests::media::make_flv;
use livegate_tests::ChildGuard;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::support::{
    dirs, envs, job, record_url, slow_ffmpeg, stream, wait_state, Env, S3Server, ACCESS_KEY,
    SECRET_KEY,
};

/// How many bytes the proxy lets through towards the storage, in total.
struct Gate {
    sent: AtomicU64,
    limit: AtomicU64,
    raised: Notify,
}

impl Gate {
    fn allow(&self, limit: u64) {
        self.limit.store(limit, Ordering::SeqCst);
        self.raised.notify_waiters();
    }
}

/// Copies `from` to `to`, spending the gate's budget.
async fn pump_gated(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    gate: Arc<Gate>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let allowed = loop {
            let raised = gate.raised.notified();
            let sent = gate.sent.load(Ordering::SeqCst);
            let limit = gate.limit.load(Ordering::SeqCst);
            if sent < limit {
                break usize::try_from(limit - sent)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
            }
            raised.await;
        };
        let read = match from.read(&mut buffer[..allowed]).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        gate.sent.fetch_add(read as u64, Ordering::SeqCst);
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP proxy in front of the storage whose bytes towards it can be held back.
struct GatedProxy {
    addr: std::net::SocketAddr,
    gate: Arc<Gate>,
    task: tokio::task::JoinHandle<()>,
}

impl GatedProxy {
    async fn start(upstream: std::net::SocketAddr) -> GatedProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Gate {
            sent: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            raised: Notify::new(),
        });
        let shared = gate.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, mut client_write) = client.into_split();
                let (mut server_read, server_write) = server.into_split();
                connections.spawn(pump_gated(client_read, server_write, shared.clone()));
                connections.spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                });
            }
        });
        GatedProxy { addr, gate, task }
    }
}

impl Drop for GatedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Setup<'a> {
    env: &'a Env,
    dirs: &'a crate::support::Dirs,
    admin: std::net::SocketAddr,
    endpoint: String,
    bus_url: String,
    key_prefix: String,
}

impl Setup<'_> {
    fn config_file(&self, ffmpeg: &Path) -> PathBuf {
        let path = self.dirs.work.parent().unwrap().join(format!(
            "recorder-{}.toml",
            ffmpeg.file_name().unwrap().to_string_lossy()
        ));
        let text = format!(
            r#"
[server]
admin_listen = "{admin}"
shutdown_grace_ms = 2000
[database]
url = "{db}"
[bus]
url = "{bus}"
key_prefix = "{prefix}"
jobs_lease_ms = 3000
[watch]
dirs = ["{rec}"]
quiet_period_ms = 300
abandoned_after_ms = 60000
check_interval_ms = 50
[jobs]
workers = 1
lease_ms = 3000
poll_interval_ms = 50
retry_initial_ms = 100
retry_max_ms = 500
instance = "kill-test"
[remux]
ffmpeg = "{ffmpeg}"
work_dir = "{work}"
failed_dir = "{failed}"
[storage]
kind = "s3"
[storage.s3]
endpoint = "{endpoint}"
bucket = "recordings"
access_key = "{access}"
secret_key = "{secret}"
part_size_bytes = {part}
[log]
filter = "info,livegate_recorder=debug"
"#,
            admin = self.admin,
            db = self.env.db_url(),
            bus = self.bus_url,
            prefix = self.key_prefix,
            rec = self.dirs.rec.display(),
            ffmpeg = ffmpeg.display(),
            work = self.dirs.work.display(),
            failed = self.dirs.failed.display(),
            endpoint = self.endpoint,
            access = ACCESS_KEY,
            secret = SECRET_KEY,
            part = crate::support::PART_SIZE,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The recorder's log, appended to by every run, beside the test's files.
    fn log(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dirs.work.parent().unwrap().join("recorder.log"))
            .unwrap()
    }

    fn spawn(&self, ffmpeg: &Path) -> ChildGuard {
        let config = self.config_file(ffmpeg);
        let child = Command::new(env!("CARGO_BIN_EXE_livegate-recorder"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(self.log())
            .spawn()
            .unwrap();
        ChildGuard::new("livegate-recorder", child)
    }
}

/// Whether process `pid` runs (a zombie waiting for its reaper does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // `pid (comm) state …`: the state follows the last parenthesis.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

async fn row_of(env: &Env, path: &Path) -> Option<RecordingJobRow> {
    recording_jobs::by_source(&env.db, &path.to_string_lossy())
        .await
        .unwrap()
}

#[tokio::test]
async fn sigkill_during_remux_and_during_upload_then_restart_stores_it_exactly_once() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    for env in envs().await {
        let name = env.name();
        let dirs = dirs();
        let (room, stream_id) = stream(&env.db).await;
        let proxy = GatedProxy::start(server.addr).await;
        let (bus_url, key_prefix) = match &env.bus {
            Bus::Redis(_) => (
                env.bus_config.url.expose().to_owned(),
                env.bus_config.key_prefix.clone(),
            ),
            Bus::Memory(_) => ("memory:".to_owned(), "livegate".to_owned()),
        };
        let setup = Setup {
            env: &env,
            dirs: &dirs,
            admin: livegate_tests::free_addr(),
            endpoint: format!("http://{}", proxy.addr),
            bus_url,
            key_prefix,
        };

        // 45 s at ~3 Mbit/s: an MP4 of four 5 MiB parts.
        let source = dirs.rec.join(format!("{room}-1733001000.flv"));
        let staging = dirs.work.parent().unwrap().join("staging.flv");
        make_flv(&staging, 45, 3000);
        // What a clean run stores.
        let clean = dirs.work.parent().unwrap().join("clean.mp4");
        let tools = Tools::new("ffmpeg", "ffprobe", Duration::from_secs(300));
        tools
            .remux(&Source::File(staging.clone()), &clean, true)
            .await
            .unwrap();
        let clean_bytes = std::fs::read(&clean).unwrap();
        let clean_size = clean_bytes.len() as u64;
        let clean_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&clean_bytes));
        drop(clean_bytes);
        assert!(
            clean_size > 3 * crate::support::PART_SIZE,
            "{name}: {clean_size} bytes"
        );
        std::fs::rename(&staging, &source).unwrap();

        // The callback's job: on the bus when the service process shares one, else written
        // where a bus job would have put it.
        match &env.bus {
            Bus::Redis(_) => {
                env.bus
                    .recordings()
                    .push(&job(room, Some(stream_id), &source))
                    .await
                    .unwrap();
            }
            Bus::Memory(_) => {
                let path = source.to_string_lossy();
                recording_jobs::discover(
                    &env.db,
                    &NewRecordingJob {
                        source_path: &path,
                        room_id: room,
                        stream_id: Some(stream_id),
                        origin_kind: "nginx-rtmp",
                        started_at: livegate_recorder::files::started_at_of(&source, now_ms()),
                    },
                    now_ms(),
                )
                .await
                .unwrap();
            }
        }

        // 1. Killed while ffmpeg remuxes: its ffmpeg dies with it (parent-death signal).
        let marker = dirs.work.parent().unwrap().join("ffmpeg-started");
        let slow = slow_ffmpeg(dirs.work.parent().unwrap(), &marker);
        let mut recorder = setup.spawn(&slow);
        let ffmpeg_pid = livegate_tests::wait_until("the remux to be under way", || async {
            let row = row_of(&env, &source).await?;
            let pid = std::fs::read_to_string(&marker)
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()?;
            (row.job_state() == JobState::Remuxing).then_some(pid)
        })
        .await;
        assert!(running(ffmpeg_pid), "{name}: ffmpeg is remuxing");
        recorder.signal("KILL");
        recorder.wait();
        livegate_tests::wait_until("the remux's ffmpeg to die with the recorder", || async {
            (!running(ffmpeg_pid)).then_some(())
        })
        .await;
        let row = row_of(&env, &source).await.unwrap();
        assert_eq!(row.job_state(), JobState::Remuxing, "{name}");
        assert!(
            !dirs.work.join(format!("{}.mp4", row.id)).exists(),
            "{name}: no MP4 yet"
        );

        // 2. Killed in the middle of the multipart upload: the storage takes 11 MiB, then
        // nothing until the restart. With two parts in flight sharing those bytes, at least
        // one of them is stored (two unfinished parts hold less than 10 MiB) and at most two
        // (three would need 15 MiB): the restart has parts left to send.
        proxy
            .gate
            .allow(proxy.gate.sent.load(Ordering::SeqCst) + 11 * 1024 * 1024);
        let mut recorder = setup.spawn(Path::new("ffmpeg"));
        let row = livegate_tests::wait_until("one part stored", || async {
            let row = row_of(&env, &source).await?;
            (row.job_state() == JobState::Uploading && row.parts_done >= 1).then_some(row)
        })
        .await;
        recorder.signal("KILL");
        recorder.wait();
        let upload_id = row.upload_id.clone().unwrap();
        assert_eq!(
            server.open_uploads().len(),
            1,
            "{name}: the upload is there to resume"
        );
        let recorded = row_of(&env, &source).await.unwrap().parts_done;
        let stored = server.stored_parts(&upload_id);
        assert!(
            (1..=2).contains(&recorded) && recorded as usize <= stored && stored <= 2,
            "{name}: the job counts {recorded} parts, the storage holds {stored}"
        );

        // 3. Restarted with nothing in the way.
        proxy.gate.allow(u64::MAX);
        let mut recorder = setup.spawn(Path::new("ffmpeg"));
        let done = wait_state(&env.db, &source, JobState::Cleaned).await;
        recorder.terminate();

        assert_eq!(
            done.upload_id.as_deref(),
            Some(upload_id.as_str()),
            "{name}: resumed, not restarted"
        );
        let key = done.object_key.clone().unwrap();
        let poster = livegate_recorder::storage::poster_key(&key);
        assert_eq!(
            server.keys().await,
            [poster.clone(), key.clone()],
            "{name}: exactly one object, and its poster"
        );
        assert_eq!(
            done.poster_url,
            Some(format!("s3://recordings/{poster}")),
            "{name}"
        );
        let stored = server.get(&key).await;
        let stored_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored));
        assert_eq!(stored.len() as u64, clean_size, "{name}");
        assert_eq!(
            stored_sha, clean_sha,
            "{name}: byte-identical to a clean run"
        );
        assert_eq!(
            record_url(&env.db, room, stream_id).await,
            Some(format!("s3://recordings/{key}")),
            "{name}"
        );
        assert!(!source.exists(), "{name}: source removed");
        let left: Vec<_> = std::fs::read_dir(&dirs.work)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{name}: work directory empty: {left:?}");
        assert!(
            server.upload_files().is_empty(),
            "{name}: no multipart upload left"
        );
        let log =
            std::fs::read_to_string(dirs.work.parent().unwrap().join("recorder.log")).unwrap();
        assert!(log.contains("resuming multipart upload"), "{name}: {log}");
        assert!(
            !log.contains(SECRET_KEY)
                && !log.contains(ACCESS_KEY)
                && !log.contains("X-Amz-Signature"),
            "{name}: no credential in the log"
        );
        // Next environment: a fresh bucket content.
        for key in server.keys().await {
            let storage =
                livegate_recorder::storage::s3::S3Storage::new(&server.config(&server.endpoint()));
            storage
                .client()
                .delete_object()
                .bucket("recordings")
                .key(&key)
                .send()
                .await
                .unwrap();
        }
    }
}
