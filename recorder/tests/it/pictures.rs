//! Pictures: a poster beside every recording (local and S3), and snapshots of a live room
//! pulled from a real nginx-rtmp origin while the hooks service says it is live.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use livegate_core::bus::Received;
use livegate_core::db::{covers, JobState};
use livegate_core::service::Stop;
use livegate_recorder::storage::local::LocalStorage;
use livegate_recorder::storage::poster_key;
use livegate_recorder::storage::s3::S3Storage;
use livegate_tests::rtmp::{Publisher, RtmpOrigin};

use crate::support::{
    self, dirs, envs, picture_of, room_with_key, start, wait_state, Case, S3Server,
};

/// Writes `seconds` of a tone alone (no video) as FLV.
fn make_audio_only(path: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string(), "-c:a", "aac", "-f", "flv"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn every_recording_gets_a_poster_beside_it_and_its_room_a_cover() {
    for env in envs().await {
        let name = env.name();
        let case = Case::new(&env).await;
        let (dirs, room) = (&case.dirs, case.room);
        let mut ready = env.bus.recordings_ready().subscribe().await.unwrap();
        let mut config = case.config();
        config.pictures.max_width = 320;
        let running = case.start_with(&env, config).await;

        let flv = case.flv(1733002000, 4, 500);
        case.announce(&env, &flv).await;
        let voice = dirs.rec.join(format!("{room}-1733001000.flv"));
        make_audio_only(&voice, 3);
        let row = wait_state(&env.db, &flv, JobState::Cleaned).await;
        let voice_row = wait_state(&env.db, &voice, JobState::Cleaned).await;

        let object = PathBuf::from(row.object_url.clone().unwrap());
        let poster = PathBuf::from(row.poster_url.clone().expect("a poster"));
        assert_eq!(poster, object.with_extension("jpg"), "{name}: beside it");
        assert_eq!(
            picture_of(&poster),
            ("mjpeg".to_owned(), 320, 180),
            "{name}: a JPEG, scaled to pictures.max_width"
        );
        assert_eq!(
            voice_row.poster_url, None,
            "{name}: no picture of a recording without video, and still stored"
        );
        let cover = covers::of_room(&env.db, room).await.unwrap().unwrap();
        assert_eq!(
            cover.url(false),
            Some(poster.to_str().unwrap()),
            "{name}: the room's cover is its newest recording's poster"
        );
        assert_eq!(cover.poster_at, Some(row.started_at), "{name}");

        // An older recording stored later keeps its own poster but does not take the cover.
        let older = case.flv(1733001500, 2, 500);
        let older_row = wait_state(&env.db, &older, JobState::Cleaned).await;
        assert!(older_row.poster_url.is_some(), "{name}");
        let cover = covers::of_room(&env.db, room).await.unwrap().unwrap();
        assert_eq!(cover.url(false), Some(poster.to_str().unwrap()), "{name}");

        let event = tokio::time::timeout(support::patience(), async {
            loop {
                if let Some(Received::Message(event)) = ready.recv().await {
                    if event.job_id == row.id {
                        return event;
                    }
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(event.poster_url, row.poster_url, "{name}");
        running.stop().await;
    }
}

#[tokio::test]
async fn in_s3_the_poster_is_an_object_beside_the_recording_and_the_cover_says_where() {
    let Some(server) = S3Server::start().await else {
        return;
    };
    let env = envs().await.remove(0);
    let case = Case::new(&env).await;
    let config = support::with_s3(case.config(), server.config(&server.endpoint()));
    let s3 = config.storage.s3.clone().unwrap();
    let storage = Arc::new(S3Storage::new(&s3));
    let running = start(config, &env, storage).await;
    let flv = case.flv(1733002100, 3, 500);
    case.announce(&env, &flv).await;
    let row = wait_state(&env.db, &flv, JobState::Cleaned).await;
    let key = row.object_key.clone().unwrap();
    let poster = poster_key(&key);
    assert_eq!(server.keys().await, [poster.clone(), key.clone()]);
    assert_eq!(row.poster_url, Some(format!("s3://recordings/{poster}")));
    let stored = server.get(&poster).await;
    assert_eq!(&stored[..2], [0xFF, 0xD8], "a JPEG");

    // The cover keeps where the poster is, not a presigned link that would expire: the room
    // API signs one whenever it is asked.
    let cover = covers::of_room(&env.db, case.room).await.unwrap().unwrap();
    assert_eq!(cover.url(false), row.poster_url.as_deref());
    let link = S3Storage::new(&s3)
        .presign_get(&poster, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let response = reqwest::get(&link).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), stored.as_slice());
    running.stop().await;
}

#[tokio::test]
async fn a_live_room_is_snapshotted_every_few_seconds_until_it_goes_offline() {
    for env in envs().await {
        let name = env.name();
        let dirs = dirs();
        let (room, key) = room_with_key(&env.db, "snapshots").await;
        let (base, hooks_shutdown, hooks_task) = crate::rtmp::hooks(&env).await;
        let origin = RtmpOrigin::start(&base, "?origin=rtmp-snap");
        origin.ready().await;
        let mut config = support::config(&dirs);
        config.watch.dirs = Vec::new();
        config.pictures.public_base_url = Some("https://cdn.example.test/media/".to_owned());
        let snapshots = &mut config.pictures.snapshots;
        snapshots.enabled = true;
        snapshots.play_url = origin.url("{room}");
        snapshots.interval_ms = 300;
        snapshots.concurrency = 2;
        snapshots.timeout_ms = 10_000;
        let running = start(config, &env, Arc::new(LocalStorage::new(&dirs.store))).await;

        let publisher = Publisher::start(&origin.url(&format!("{room}?key={key}")), 120);
        let first = livegate_tests::wait_until("a snapshot of the live room", || async {
            covers::of_room(&env.db, room)
                .await
                .unwrap()
                .filter(|cover| cover.snapshot_url.is_some())
        })
        .await;
        let snapshot = dirs.store.join(format!("snapshots/{room}.jpg"));
        assert_eq!(
            picture_of(&snapshot),
            ("mjpeg".to_owned(), 320, 240),
            "{name}: a keyframe of the publisher's 320x240 picture"
        );
        let link = first.url(true).unwrap();
        assert!(
            link.starts_with(&format!(
                "https://cdn.example.test/media/snapshots/{room}.jpg?v="
            )),
            "{name}: {link}"
        );
        let refreshed = livegate_tests::wait_until("the snapshot to be refreshed", || async {
            covers::of_room(&env.db, room)
                .await
                .unwrap()
                .filter(|cover| cover.snapshot_at > first.snapshot_at)
        })
        .await;
        assert_ne!(
            refreshed.snapshot_url, first.snapshot_url,
            "{name}: a new version"
        );

        // The publisher stops: the room goes offline and its snapshots stop.
        drop(publisher);
        livegate_tests::wait_until("snapshots to stop", || async {
            let text = support::metrics(running.admin).await;
            text.lines()
                .any(|line| line == "livegate_recorder_snapshot_rooms 0")
                .then_some(())
        })
        .await;
        let stored = support::metrics(running.admin).await;
        assert!(
            stored
                .contains("livegate_recorder_pictures_total{kind=\"snapshot\",outcome=\"stored\"}"),
            "{name}: {stored}"
        );
        running.stop().await;
        hooks_shutdown.request(Stop::Drain);
        hooks_task.await.unwrap().unwrap();
    }
}
