//! End to end into local storage: bus jobs and the watcher, FLV and TS, duplicates, corrupt
//! and abandoned inputs.

use livegate_core::bus::{LiveState, Received};
use livegate_core::db::recording_jobs;
use livegate_core::db::{now_ms, JobState};
use livegate_tests::media::{make_blob, make_flv, make_ts};

use crate::support::{self, envs, wait_state, Case};

#[tokio::test]
async fn flv_from_the_bus_and_ts_from_the_watcher_end_as_mp4s() {
    for env in envs().await {
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let mut ready = env.bus.recordings_ready().subscribe().await.unwrap();
        let running = case.start(&env).await;

        let flv = case.flv(1733000000, 3, 500);
        case.announce(&env, &flv).await;
        let ts = dirs.rec.join(format!("{}-1733000100.ts", case.room));
        make_ts(&ts, 3);

        let flv_row = wait_state(&env.db, &flv, JobState::Cleaned).await;
        let ts_row = wait_state(&env.db, &ts, JobState::Cleaned).await;
        let name = env.name();
        for row in [&flv_row, &ts_row] {
            let object = std::path::PathBuf::from(row.object_url.clone().unwrap());
            assert!(object.starts_with(&dirs.store), "{name}: {object:?}");
            assert_eq!(support::stream_kinds(&object), ["audio", "video"], "{name}");
            let (checksum, size) = livegate_recorder::storage::checksum_file(&object)
                .await
                .unwrap();
            assert_eq!(Some(checksum), row.checksum, "{name}");
            assert_eq!(Some(size as i64), row.size_bytes, "{name}");
            // Three seconds of media, as the remux's probe measured them.
            let duration = row.duration_ms.unwrap_or_default();
            assert!((2000..=4000).contains(&duration), "{name}: {duration} ms");
        }
        assert_eq!(flv_row.stream_id, Some(case.stream_id));
        assert_eq!(
            ts_row.stream_id, None,
            "{name}: the watcher knows no stream"
        );
        assert_eq!(
            case.record_url(&env).await,
            flv_row.object_url,
            "{name}: record_url names the stored object"
        );
        assert!(!flv.exists() && !ts.exists(), "{name}: sources removed");
        assert!(
            support::files_under(&dirs.work).is_empty(),
            "{name}: work dir emptied"
        );

        let mut announced = Vec::new();
        while announced.len() < 2 {
            match ready.recv().await.unwrap() {
                Received::Message(event) => announced.push(event.job_id),
                Received::Lagged(_) | Received::Reconnected => {}
            }
        }
        announced.sort_unstable();
        assert_eq!(announced, [flv_row.id, ts_row.id], "{name}");
        running.stop().await;
    }
}

/// A callback is only as trustworthy as whoever could send it: a job naming a file outside
/// the recording directories (directly, through `..` or through a link) is failed with the
/// reason and the file stays where it is, while a job inside goes on.
#[tokio::test]
async fn a_job_for_a_file_outside_the_recording_directories_is_refused_and_the_file_kept() {
    for env in envs().await {
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let name = env.name();
        let running = case.start(&env).await;

        let outside_dir = dirs.work.parent().unwrap().join("elsewhere");
        std::fs::create_dir_all(&outside_dir).unwrap();
        let config_file = outside_dir.join("important.conf");
        std::fs::write(&config_file, b"keep me").unwrap();
        let media = outside_dir.join(format!("{}-1733000000.flv", case.room));
        make_flv(&media, 2, 500);
        let link = dirs.rec.join(format!("{}-1733000050.flv.lnk", case.room));
        std::os::unix::fs::symlink(&media, &link).unwrap();
        let dotted = dirs.rec.join("../elsewhere/important.conf");
        for path in [&config_file, &media, &link, &dotted] {
            case.announce(&env, path).await;
        }
        let inside = case.flv(1733000100, 2, 500);
        case.announce(&env, &inside).await;

        wait_state(&env.db, &inside, JobState::Cleaned).await;
        for path in [&config_file, &media, &link, &dotted] {
            let row = wait_state(&env.db, path, JobState::Failed).await;
            let error = row.error.unwrap_or_default();
            assert!(
                error.contains("outside the recording directories"),
                "{name}: {}: {error}",
                path.display()
            );
        }
        assert_eq!(std::fs::read(&config_file).unwrap(), b"keep me", "{name}");
        assert!(
            media.exists() && link.exists(),
            "{name}: nothing moved or removed"
        );
        assert!(
            support::files_under(&dirs.failed).is_empty(),
            "{name}: nothing parked in failed/"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn a_file_announced_twice_and_watched_is_stored_once() {
    for env in envs().await {
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let flv = case.flv(1733000200, 2, 400);
        // The callback twice (origins retry) before the service runs; the watcher's scan
        // finds the file as well.
        for _ in 0..2 {
            case.announce(&env, &flv).await;
        }
        let running = case.start(&env).await;
        let row = wait_state(&env.db, &flv, JobState::Cleaned).await;
        let name = env.name();
        livegate_tests::wait_until("both bus jobs acknowledged", || async {
            (env.bus.recordings().outstanding().await.unwrap() == 0).then_some(())
        })
        .await;
        let rows = recording_jobs::list(&env.db, 100).await.unwrap();
        assert_eq!(rows.len(), 1, "{name}: one row for one file");
        assert_eq!(rows[0].attempts, 0, "{name}: done in one attempt");
        assert_eq!(
            support::recordings_under(&dirs.store).len(),
            1,
            "{name}: one object"
        );
        assert_eq!(case.record_url(&env).await, row.object_url, "{name}");
        running.stop().await;
    }
}

#[tokio::test]
async fn a_corrupt_input_is_parked_and_the_others_carry_on() {
    for env in envs().await {
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let corrupt = dirs.rec.join(format!("{}-1733000300.flv", case.room));
        make_blob(&corrupt, 200_000);
        let good = case.flv(1733000400, 2, 400);
        let running = case.start(&env).await;
        case.announce(&env, &corrupt).await;

        let failed = wait_state(&env.db, &corrupt, JobState::Failed).await;
        wait_state(&env.db, &good, JobState::Cleaned).await;
        let name = env.name();
        let error = failed.error.unwrap();
        assert!(error.contains("unreadable input"), "{name}: {error}");
        // ffmpeg ran beside the probe and failed as well: the probe's reason is the one given.
        assert!(error.contains("ffprobe"), "{name}: {error}");
        assert!(
            !corrupt.exists(),
            "{name}: moved out of the recording directory"
        );
        let parked = support::files_under(&dirs.failed);
        assert_eq!(
            parked.len(),
            2,
            "{name}: the input and its reason: {parked:?}"
        );
        let note = parked
            .iter()
            .find(|p| p.to_string_lossy().ends_with(".reason.txt"))
            .unwrap();
        let note = std::fs::read_to_string(note).unwrap();
        assert!(note.contains("unreadable input"), "{name}: {note}");
        let moved = parked
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "flv"))
            .unwrap();
        assert_eq!(
            std::fs::metadata(moved).unwrap().len(),
            200_000,
            "{name}: kept whole"
        );
        assert_eq!(
            support::recordings_under(&dirs.store).len(),
            1,
            "{name}: the good one stored"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn in_progress_files_left_behind_are_recovered_or_parked_once_their_room_is_offline() {
    for env in envs().await {
        let name = env.name();
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        // SRS died while writing: a truncated FLV under its temporary name.
        let srs_tmp = dirs.rec.join("42.1733000500000.flv.tmp");
        let whole = dirs.rec.join("whole.flv.part");
        make_flv(&whole, 4, 300);
        let bytes = std::fs::read(&whole).unwrap();
        std::fs::write(&srs_tmp, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::remove_file(&whole).unwrap();
        // ZLMediaKit died while writing: a hidden MP4 without its index.
        let zlm_dir = dirs.rec.join("live/43/2026-12-01");
        std::fs::create_dir_all(&zlm_dir).unwrap();
        let zlm_hidden = zlm_dir.join(".09-31-08-0.mp4");
        std::fs::write(&zlm_hidden, b"partial mp4 without a moov box").unwrap();
        // Room 44 is live again: its origin may still be writing, so it waits.
        let live_tmp = dirs.rec.join("44.1733000600000.flv.tmp");
        std::fs::write(&live_tmp, &bytes[..bytes.len() / 2]).unwrap();
        let live = LiveState {
            stream_id: 1,
            started_at_ms: 1,
            origin_server_id: "srs".to_owned(),
        };
        env.bus.set_live(44, &live).await.unwrap();

        let running = case.start(&env).await;
        let recovered = wait_state(&env.db, &srs_tmp, JobState::Cleaned).await;
        assert_eq!(recovered.room_id, 42, "{name}");
        // Half of a 4 s file whose header still says 4 s: the length kept is what was stored.
        let duration = recovered.duration_ms.unwrap_or_default();
        assert!((500..3500).contains(&duration), "{name}: {duration} ms");
        let object = std::path::PathBuf::from(recovered.object_url.unwrap());
        assert_eq!(support::stream_kinds(&object), ["audio", "video"], "{name}");
        assert!(!srs_tmp.exists(), "{name}: removed once stored");

        let parked = wait_state(&env.db, &zlm_hidden, JobState::Failed).await;
        assert_eq!(parked.room_id, 43, "{name}");
        let error = parked.error.unwrap();
        assert!(
            error.contains("in-progress file left behind") && error.contains("unreadable input"),
            "{name}: {error}"
        );
        assert!(!zlm_hidden.exists(), "{name}: moved aside");
        assert_eq!(
            support::files_under(&dirs.failed).len(),
            2,
            "{name}: the file and its reason"
        );

        assert!(
            recording_jobs::by_source(&env.db, &live_tmp.to_string_lossy())
                .await
                .unwrap()
                .is_none(),
            "{name}: left alone while its room is live"
        );
        assert!(env.bus.clear_live(44, 1).await.unwrap());
        wait_state(&env.db, &live_tmp, JobState::Cleaned).await;
        running.stop().await;
    }
}

/// In SRS's default layout its HLS shares the directory of its recordings: the segments
/// beside a playlist are the origin's live HLS, never recordings. nginx-rtmp records under the
/// final name, so a file whose publisher stalled looks finished: while its room is live, a
/// file begun in the live session or written to lately waits for the publish to end, and one
/// from an earlier session does not.
#[tokio::test]
async fn live_hls_is_left_alone_and_a_live_rooms_current_file_waits() {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let written_at = |path: &std::path::Path, when: std::time::SystemTime| {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(when).unwrap();
    };
    for env in envs().await {
        let name = env.name();
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let segments: Vec<_> = (0..3)
            .map(|n| {
                let segment = dirs.rec.join(format!("{}-{n}.ts", case.room));
                make_ts(&segment, 1);
                segment
            })
            .collect();
        let playlist = dirs.rec.join(format!("{}.m3u8", case.room));
        std::fs::write(
            &playlist,
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{0}-1.ts\n#EXTINF:1.0,\n{0}-2.ts\n",
                case.room
            ),
        )
        .unwrap();
        let session_start = now_ms() - 5_000;
        let live = LiveState {
            stream_id: case.stream_id,
            started_at_ms: session_start,
            origin_server_id: "nginx-rtmp".to_owned(),
        };
        env.bus.set_live(case.room, &live).await.unwrap();
        // Begun in the live session, its publisher silent for an hour.
        let stalled = case.flv(u64::try_from(session_start / 1000).unwrap(), 2, 300);
        written_at(&stalled, hour_ago);
        // Named for an earlier time, but still being written.
        let writing = case.flv(1733000800, 2, 300);
        // From an earlier session, untouched for an hour: stored although the room is live.
        // All the files were found by the same start-up scan: once it is stored, the watcher
        // has judged the others.
        let earlier = case.flv(1733000700, 2, 300);
        written_at(&earlier, hour_ago);

        let mut config = case.config();
        // Longer than the test: "written to lately" must not run out during it.
        config.watch.abandoned_after_ms = 600_000;
        let running = case.start_with(&env, config).await;
        wait_state(&env.db, &earlier, JobState::Cleaned).await;
        for path in segments.iter().chain([&playlist, &stalled, &writing]) {
            assert!(
                recording_jobs::by_source(&env.db, &path.to_string_lossy())
                    .await
                    .unwrap()
                    .is_none(),
                "{name}: {} is no job yet",
                path.display()
            );
            assert!(path.exists(), "{name}: {} untouched", path.display());
        }

        assert!(env.bus.clear_live(case.room, case.stream_id).await.unwrap());
        wait_state(&env.db, &stalled, JobState::Cleaned).await;
        wait_state(&env.db, &writing, JobState::Cleaned).await;
        for path in segments.iter().chain([&playlist]) {
            assert!(path.exists(), "{name}: {} untouched", path.display());
        }
        running.stop().await;
    }
}

#[tokio::test]
async fn a_callback_after_the_watcher_finished_still_sets_record_url() {
    for env in envs().await {
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let running = case.start(&env).await;
        let flv = case.flv(1733000800, 1, 300);
        let row = wait_state(&env.db, &flv, JobState::Cleaned).await;
        assert_eq!(case.record_url(&env).await, None);
        case.announce(&env, &flv).await;
        let url = livegate_tests::wait_until("record_url from the late callback", || async {
            case.record_url(&env).await
        })
        .await;
        assert_eq!(Some(url), row.object_url, "{}", env.name());
        assert_eq!(
            support::recordings_under(&dirs.store).len(),
            1,
            "{}: still one object",
            env.name()
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn shutdown_kills_ffmpeg_and_hands_the_job_back() {
    for env in envs().await {
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let name = env.name();
        let flv = case.flv(1733000900, 20, 300);
        let marker = dirs.work.parent().unwrap().join("ffmpeg.pid");
        let mut config = case.config();
        config.remux.ffmpeg = support::slow_ffmpeg(dirs.work.parent().unwrap(), &marker);
        let running = case.start_with(&env, config).await;
        case.announce(&env, &flv).await;
        let pid = livegate_tests::wait_until("ffmpeg to run", || async {
            let pid = std::fs::read_to_string(&marker).ok()?;
            let pid = pid.trim().to_owned();
            (!pid.is_empty()).then_some(pid)
        })
        .await;
        wait_state(&env.db, &flv, JobState::Remuxing).await;
        running.stop().await;

        let row = recording_jobs::by_source(&env.db, &flv.to_string_lossy())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.job_state(), JobState::Remuxing, "{name}");
        assert_eq!(row.lease_owner, None, "{name}: handed back");
        assert_eq!(
            row.attempts, 0,
            "{name}: a shutdown is not a failed attempt"
        );
        livegate_tests::wait_until("ffmpeg to be gone", || async {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting to be reaped: either way it no longer runs.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            matches!(state, None | Some("Z")).then_some(())
        })
        .await;

        // Another instance (or this one restarted) takes it from there.
        let running = case.start(&env).await;
        let row = wait_state(&env.db, &flv, JobState::Cleaned).await;
        let metrics = livegate_tests::wait_until("the job gauges to catch up", || async {
            let text = support::metrics(running.admin).await;
            text.contains("livegate_recorder_jobs{state=\"cleaned\"} 1")
                .then_some(text)
        })
        .await;
        let size = row.size_bytes.unwrap();
        assert!(
            metrics.contains(&format!("livegate_recorder_uploaded_bytes_total {size}")),
            "{name}: {metrics}"
        );
        assert!(
            metrics.contains("livegate_recorder_attempts_total{outcome=\"cleaned\"} 1"),
            "{name}: {metrics}"
        );
        assert!(
            support::files_under(&dirs.work).is_empty(),
            "{name}: no partial MP4 left"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn retention_keeps_the_local_copies_and_a_restart_stores_nothing_twice() {
    for env in envs().await {
        let name = env.name();
        let case = Case::new(&env).await;
        let dirs = &case.dirs;
        let flv = case.flv(1733001200, 1, 300);
        let mut config = case.config();
        config.storage.keep_local = true;
        let running = case.start_with(&env, config.clone()).await;
        case.announce(&env, &flv).await;
        wait_state(&env.db, &flv, JobState::Cleaned).await;
        running.stop().await;
        // Read once the service has stopped: its lease on the job is released after the
        // state is written.
        let row = recording_jobs::by_source(&env.db, &flv.to_string_lossy())
            .await
            .unwrap()
            .unwrap();
        assert!(flv.exists(), "{name}: source kept");
        let mp4 = std::path::PathBuf::from(row.work_path.clone().unwrap());
        assert!(mp4.exists(), "{name}: MP4 kept");

        // The start-up scan finds the kept file again, beside a new one: the new one is
        // stored, the kept one is known and nothing is redone.
        let other = case.flv(1733001300, 1, 300);
        let running = case.start_with(&env, config).await;
        wait_state(&env.db, &other, JobState::Cleaned).await;
        running.stop().await;
        let again = recording_jobs::by_source(&env.db, &flv.to_string_lossy())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again, row, "{name}: the row is unchanged");
        assert_eq!(
            support::recordings_under(&dirs.store).len(),
            2,
            "{name}: one object each"
        );
    }
}
