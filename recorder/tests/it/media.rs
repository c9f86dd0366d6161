//! Other shapes of recordings: fragmented MP4 output, a stream's HLS segments merged into one
//! MP4 (from its playlist, found by the watcher, or from a directory named by a bus job), and
//! the remux running out of disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use livegate_core::db::{recording_jobs, JobState};
use livegate_tests::media::make_hls;

use crate::support::{self, envs, wait_state, Case};

/// ffprobe's duration of `path`.
fn duration_of(path: &Path) -> Duration {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}", path.display());
    let seconds: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_secs_f64(seconds)
}

/// Whether the MP4 box `name` occurs in `path`.
fn has_box(path: &Path, name: &[u8; 4]) -> bool {
    std::fs::read(path)
        .unwrap()
        .windows(4)
        .any(|window| window == name)
}

#[tokio::test]
async fn fragmented_mp4_is_an_option_and_still_validated() {
    for env in envs().await {
        let name = env.name();
        let case = Case::new(&env).await;
        let mut config = case.config();
        config.remux.fragmented = true;
        let running = case.start_with(&env, config).await;
        let flv = case.flv(1733003000, 6, 500);
        case.announce(&env, &flv).await;
        let row = wait_state(&env.db, &flv, JobState::Cleaned).await;
        let object = PathBuf::from(row.object_url.unwrap());
        assert!(has_box(&object, b"moof"), "{name}: fragments");
        assert!(has_box(&object, b"mvex"), "{name}: a fragmented index");
        assert_eq!(support::stream_kinds(&object), ["audio", "video"], "{name}");
        let off = duration_of(&object).abs_diff(Duration::from_secs(6));
        assert!(off < Duration::from_millis(500), "{name}: {off:?} off");
        running.stop().await;
    }
}

#[tokio::test]
async fn an_ended_hls_playlist_in_a_watched_directory_becomes_one_mp4() {
    for env in envs().await {
        let name = env.name();
        let case = Case::new(&env).await;
        let (dirs, room) = (&case.dirs, case.room);
        let mut config = case.config();
        config.watch.merge_hls = true;
        let running = case.start_with(&env, config).await;

        // Written aside, then moved in whole, as an origin's finished rendition.
        let staging = dirs.work.parent().unwrap().join("hls-staging");
        make_hls(&staging, &room.to_string(), 9);
        let hls = dirs.rec.join("hls");
        std::fs::rename(&staging, &hls).unwrap();
        let playlist = hls.join(format!("{room}.m3u8"));
        let segments: Vec<PathBuf> = support::files_under(&hls)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "ts"))
            .collect();
        assert!(segments.len() >= 4, "{name}: {segments:?}");

        let row = wait_state(&env.db, &playlist, JobState::Cleaned).await;
        let object = PathBuf::from(row.object_url.clone().unwrap());
        assert_eq!(support::stream_kinds(&object), ["audio", "video"], "{name}");
        let off = duration_of(&object).abs_diff(Duration::from_secs(9));
        assert!(off < Duration::from_millis(500), "{name}: {off:?} off");
        let rows = recording_jobs::list(&env.db, 100).await.unwrap();
        assert_eq!(rows.len(), 1, "{name}: one job, not one per segment");
        assert_eq!(support::recordings_under(&dirs.store).len(), 1, "{name}");
        assert!(
            !playlist.exists() && segments.iter().all(|s| !s.exists()),
            "{name}: the playlist and its segments removed once stored"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn a_directory_of_segments_merges_in_numeric_order_and_a_gap_is_refused() {
    for env in envs().await {
        let name = env.name();
        let case = Case::new(&env).await;
        let (dirs, room) = (&case.dirs, case.room);
        // The segments lie outside the watched directory (which would take each `.ts` for a
        // recording of its own) and reach the recorder only as bus jobs.
        let mut config = case.config();
        let root = dirs.work.parent().unwrap();
        config.jobs.source_dirs = vec![dirs.rec.clone(), root.join("hls"), root.join("gap")];
        std::fs::create_dir_all(root.join("hls")).unwrap();
        std::fs::create_dir_all(root.join("gap")).unwrap();
        let running = case.start_with(&env, config).await;
        // Eleven segments: `-10.ts` sorts after `-9.ts`, not after `-1.ts`.
        let segments_dir = dirs.work.parent().unwrap().join(format!("hls/{room}"));
        let playlist = make_hls(&segments_dir, &room.to_string(), 22);
        std::fs::remove_file(&playlist).unwrap();
        assert!(segments_dir.join(format!("{room}-10.ts")).exists());
        case.announce(&env, &segments_dir).await;
        let row = wait_state(&env.db, &segments_dir, JobState::Cleaned).await;
        let object = PathBuf::from(row.object_url.clone().unwrap());
        let off = duration_of(&object).abs_diff(Duration::from_secs(22));
        assert!(off < Duration::from_millis(500), "{name}: {off:?} off");
        assert!(!segments_dir.exists(), "{name}: the segments removed");

        // A playlist whose middle segment is gone would make a shorter recording: refused,
        // with the reason, and its files left where they are.
        let gap_dir = dirs.work.parent().unwrap().join(format!("gap/{room}"));
        let playlist = make_hls(&gap_dir, &room.to_string(), 8);
        let missing = gap_dir.join(format!("{room}-1.ts"));
        std::fs::remove_file(&missing).unwrap();
        case.announce(&env, &playlist).await;
        let failed = wait_state(&env.db, &playlist, JobState::Failed).await;
        let error = failed.error.unwrap();
        assert!(
            error.contains("missing") && error.contains(&missing.display().to_string()),
            "{name}: {error}"
        );
        assert!(playlist.exists(), "{name}: kept for a human");

        // The same directory without its playlist: the gap shows as a short MP4.
        std::fs::remove_file(&playlist).unwrap();
        case.announce(&env, &gap_dir).await;
        let failed = wait_state(&env.db, &gap_dir, JobState::Failed).await;
        let error = failed.error.unwrap();
        assert!(error.contains("duration"), "{name}: {error}");
        assert!(
            gap_dir.join(format!("{room}-0.ts")).exists(),
            "{name}: kept"
        );
        running.stop().await;
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB at `at` (root only). Elsewhere the test fails under CI
    /// and is skipped otherwise.
    fn mount(at: &Path, mib: u32) -> Option<SmallDisk> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk {
                at: at.to_path_buf(),
            }),
            Ok(out) => livegate_core::testing::missing(&format!(
                "root to mount a small tmpfs (mount said: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(err) => {
                livegate_core::testing::missing(&format!("mount(8) for a small tmpfs: {err}"))
            }
        }
    }

    fn grow(&self, mib: u32) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.at)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.at.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_remux_clearly_retries_it_and_lets_the_others_through() {
    let env = envs().await.remove(0);
    let case = Case::new(&env).await;
    let dirs = &case.dirs;
    // The work directory on a 3 MiB disk: too small for the big recording's MP4.
    let Some(disk) = SmallDisk::mount(&dirs.work, 3) else {
        return;
    };
    let running = case.start(&env).await;
    let big = case.flv(1733004000, 16, 3000);
    let big_size = std::fs::metadata(&big).unwrap().len();
    assert!(big_size > 4 * 1024 * 1024, "{big_size} bytes");
    case.announce(&env, &big).await;
    let retried = livegate_tests::wait_until("the full disk to be retried", || async {
        let row = recording_jobs::by_source(&env.db, &big.to_string_lossy())
            .await
            .unwrap()?;
        (row.attempts >= 2).then_some(row)
    })
    .await;
    let error = retried.error.clone().unwrap();
    assert!(
        error.contains("no space left") && error.contains(&dirs.work.display().to_string()),
        "a clear error naming the work directory: {error}"
    );
    assert_ne!(
        retried.job_state(),
        JobState::Failed,
        "retried, not given up"
    );
    assert_eq!(
        std::fs::metadata(&big).unwrap().len(),
        big_size,
        "the source stays whole"
    );

    // Meanwhile a small recording goes through.
    let small = case.flv(1733004100, 2, 300);
    let small_row = wait_state(&env.db, &small, JobState::Cleaned).await;
    assert!(PathBuf::from(small_row.object_url.unwrap()).exists());

    // Room on the disk again: the big one is stored too.
    disk.grow(64);
    let row = wait_state(&env.db, &big, JobState::Cleaned).await;
    let object = PathBuf::from(row.object_url.unwrap());
    assert_eq!(support::stream_kinds(&object), ["audio", "video"]);
    assert!(!big.exists(), "removed once stored");
    running.stop().await;
    drop(disk);
}
