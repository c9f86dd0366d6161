//! End to end: a real nginx-rtmp origin calling the real service, a real ffmpeg publishing.

use std::time::Duration;

use livegate_core::bus::RoomEventKind;
use livegate_core::db::testing::backends;
use livegate_tests::rtmp::{Publisher, RtmpOrigin};

use crate::support::{next_event, redis_config, wait_until, Options, TestApp};

#[tokio::test]
async fn nginx_rtmp_publish_with_right_and_wrong_key() {
    for backend in backends() {
        // Redis when there is one (required under CI); the end-to-end path is the same on
        // the in-process bus.
        let app = TestApp::start(Options {
            bus: redis_config(),
            ..Options::new(backend)
        })
        .await;
        app.room(42, "abc").await;
        app.room(43, "def").await;
        let origin = RtmpOrigin::start(&app.base, "?origin=rtmp-e2e");
        origin.ready().await;
        let mut events = app.events().await;

        // The right key: accepted, live while it pushes, a stream row, a live event.
        let publisher = Publisher::start(&origin.url("42?key=abc"), 4);
        wait_until("room 42 to go live", || async {
            app.is_live(42).await.then_some(())
        })
        .await;
        let stream = app.open_stream(42).await;
        assert_eq!(stream.origin_kind, "nginx-rtmp");
        assert_eq!(stream.origin_server_id, "rtmp-e2e");
        let event = next_event(&mut events).await;
        assert_eq!(
            (event.kind, event.room_id, event.stream_id),
            (RoomEventKind::Live, 42, stream.id)
        );
        app.wait_bus_live(42, true).await;
        let status = publisher.finish(Duration::from_secs(60)).await;
        assert!(
            status.success(),
            "ffmpeg failed: {status}\n{}",
            origin.error_log()
        );

        // When the push ends: offline, and the closed recording queued as a job.
        wait_until("room 42 to go offline", || async {
            (!app.is_live(42).await).then_some(())
        })
        .await;
        app.wait_bus_live(42, false).await;
        let jobs = app.recording_jobs("e2e").await;
        let job = &jobs[0].payload;
        assert_eq!((job.room_id, job.stream_id), (42, Some(stream.id)));
        assert_eq!(job.origin_kind, "nginx-rtmp");
        assert!(
            job.path
                .starts_with(&origin.record_dir().display().to_string()),
            "{}",
            job.path
        );
        let size = std::fs::metadata(&job.path).unwrap().len();
        assert!(size > 0, "{} is empty", job.path);
        app.bus.recordings().ack(&jobs[0]).await.unwrap();
        assert_eq!(
            app.streams(42).await[0].record_url,
            None,
            "record_url waits for the recorder to store the MP4"
        );

        // A wrong key: ffmpeg is refused, nothing is written.
        let refused = Publisher::start(&origin.url("43?key=wrong"), 4);
        let status = refused.finish(Duration::from_secs(30)).await;
        assert!(!status.success(), "ffmpeg with a wrong key was not refused");
        assert!(!app.is_live(43).await);
        assert!(app.streams(43).await.is_empty());
        assert_eq!(app.bus.live(43).await.unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(origin.record_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("43"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "refused publish recorded {leftovers:?}"
        );
        app.stop().await;
    }
}
