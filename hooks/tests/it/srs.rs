//! Every real SRS 6 fixture through the service, against each database backend, and against
//! Redis as well as the in-process bus.

use livegate_core::bus::{BusConfig, RoomEventKind};
use livegate_core::db::rooms;
use livegate_core::db::testing::backends;
use livegate_core::db::Backend;
use livegate_core::token::TokenKeys;
use livegate_core::{unix_now, Secret};
use serde_json::json;

use crate::support::{
    buses, fixture, fixture_with, next_event, wait_until, Options, TestApp, ACCEPT, FIXTURE_KEY,
    PLAY_KEY,
};

fn token(room: u64) -> String {
    TokenKeys::new(&[Secret::new(PLAY_KEY)])
        .unwrap()
        .mint(room, unix_now() + 600)
}

async fn lifecycle(backend: Backend, bus: Option<BusConfig>) {
    let app = TestApp::start(Options {
        bus,
        ..Options::new(backend)
    })
    .await;
    app.room(42, FIXTURE_KEY).await;
    let mut events = app.events().await;

    // on_publish: accepted, room live, stream row with the origin's ids, live key, live event.
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await,
        (200, ACCEPT.to_owned())
    );
    assert!(app.is_live(42).await);
    let streams = app.streams(42).await;
    assert_eq!(streams.len(), 1);
    let stream = &streams[0];
    assert_eq!(stream.origin_kind, "srs");
    assert_eq!(stream.origin_server_id, "srs-livegate-test");
    assert_eq!(stream.origin_service_id.as_deref(), Some("y36bo341"));
    assert_eq!(stream.origin_client_id.as_deref(), Some("70763180"));
    assert_eq!(stream.origin_stream_id.as_deref(), Some("vid-2591469"));
    assert_eq!(stream.publisher_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(stream.stop_at, None);
    app.wait_bus_live(42, true).await;
    let live = app.bus.live(42).await.unwrap().unwrap();
    assert_eq!(live.stream_id, stream.id);
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.kind, event.room_id, event.stream_id),
        (RoomEventKind::Live, 42, stream.id)
    );

    // on_play (HTTP-FLV) with the fixture's token `viewer1`: not a v1 token, refused.
    assert_eq!(
        app.json("on_play", fixture("on_play_flv.json")).await,
        (403, r#"{"code":403,"msg":"play not allowed"}"#.to_owned())
    );
    // on_play (HLS) without any token: refused.
    assert_eq!(
        app.json("on_play", fixture("on_play_hls.json")).await.0,
        403
    );
    // The same viewer with a real token: accepted and counted; its on_stop uncounts it.
    let param = format!("?token={}", token(42));
    let play = fixture_with("on_play_flv.json", &[("param", json!(param))]);
    assert_eq!(app.json("on_play", play).await, (200, ACCEPT.to_owned()));
    let bus = app.bus.clone();
    wait_until("viewer counted", || {
        let bus = bus.clone();
        async move { (bus.viewers(42).await.ok()? == 1).then_some(()) }
    })
    .await;
    // A token for another room is refused.
    let other = fixture_with(
        "on_play_flv.json",
        &[("param", json!(format!("?token={}", token(7))))],
    );
    assert_eq!(app.json("on_play", other).await.0, 403);
    assert_eq!(
        app.json("on_stop", fixture("on_stop_flv.json")).await,
        (200, ACCEPT.to_owned())
    );
    let bus = app.bus.clone();
    wait_until("viewer uncounted", || {
        let bus = bus.clone();
        async move { (bus.viewers(42).await.ok()? == 0).then_some(()) }
    })
    .await;
    assert_eq!(
        app.json("on_stop", fixture("on_stop_hls.json")).await,
        (200, ACCEPT.to_owned())
    );

    // WebRTC viewers (SRS 6.0.155): WHEP's `param` is the whole signalling query without a
    // `?` and `tcUrl` is empty; the play API's `param` is its `streamurl`'s query.
    let viewer = token(42);
    for (play, stop, param) in [
        (
            "on_play_whep.json",
            "on_stop_whep.json",
            format!("app=live&stream=42&token={viewer}"),
        ),
        (
            "on_play_rtc_api.json",
            "on_stop_rtc_api.json",
            format!("?token={viewer}"),
        ),
    ] {
        assert_eq!(app.json("on_play", fixture(play)).await.0, 403, "{play}");
        let wrong_room = param.replace(&viewer, &token(7));
        let refused = fixture_with(play, &[("param", json!(wrong_room))]);
        assert_eq!(app.json("on_play", refused).await.0, 403, "{play}");
        let admitted = fixture_with(play, &[("param", json!(param))]);
        assert_eq!(
            app.json("on_play", admitted).await,
            (200, ACCEPT.to_owned()),
            "{play}"
        );
        let bus = app.bus.clone();
        wait_until("WebRTC viewer counted", || {
            let bus = bus.clone();
            async move { (bus.viewers(42).await.ok()? == 1).then_some(()) }
        })
        .await;
        assert_eq!(
            app.json("on_stop", fixture(stop)).await,
            (200, ACCEPT.to_owned())
        );
        let bus = app.bus.clone();
        wait_until("WebRTC viewer uncounted", || {
            let bus = bus.clone();
            async move { (bus.viewers(42).await.ok()? == 0).then_some(()) }
        })
        .await;
    }

    // on_hls: acknowledged, changes nothing.
    assert_eq!(
        app.json("on_hls", fixture("on_hls.json")).await,
        (200, ACCEPT.to_owned())
    );
    assert!(app.is_live(42).await);

    // on_dvr: the recording goes on the durable queue; the stream gets no record_url until
    // the recorder has the MP4 in storage.
    assert_eq!(
        app.json("on_dvr", fixture("on_dvr.json")).await,
        (200, ACCEPT.to_owned())
    );
    let jobs = app.recording_jobs("test").await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0].payload;
    assert_eq!(job.path, "/data/dvr/live/42.1795648139942.flv");
    assert_eq!((job.room_id, job.stream_id), (42, Some(stream.id)));
    assert_eq!(
        (job.origin_kind.as_str(), job.origin_server_id.as_str()),
        ("srs", "srs-livegate-test")
    );
    app.bus.recordings().ack(&jobs[0]).await.unwrap();
    assert_eq!(app.streams(42).await[0].record_url, None);

    // on_unpublish: stream closed, room offline, live key cleared, offline event.
    assert_eq!(
        app.json("on_unpublish", fixture("on_unpublish.json")).await,
        (200, ACCEPT.to_owned())
    );
    assert!(!app.is_live(42).await);
    let closed = app.streams(42).await.remove(0);
    let stop_at = closed.stop_at.expect("stream closed");
    app.wait_bus_live(42, false).await;
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.kind, event.stream_id),
        (RoomEventKind::Offline, stream.id)
    );

    // A repeated on_unpublish changes nothing.
    assert_eq!(
        app.json("on_unpublish", fixture("on_unpublish.json")).await,
        (200, ACCEPT.to_owned())
    );
    assert_eq!(app.streams(42).await[0].stop_at, Some(stop_at));

    // on_dvr after on_unpublish (SRS sends them in either order) still finds the stream; a
    // relative `file` is resolved against SRS's `cwd`.
    let late_dvr = fixture_with(
        "on_dvr.json",
        &[("file", json!("./objs/nginx/html/live/42.1795648199999.flv"))],
    );
    assert_eq!(app.json("on_dvr", late_dvr).await.0, 200);
    let late = app.recording_jobs("test").await;
    assert_eq!(late[0].payload.stream_id, Some(stream.id));
    assert_eq!(
        late[0].payload.path,
        "/usr/local/srs/objs/nginx/html/live/42.1795648199999.flv"
    );
    app.stop().await;
}

#[tokio::test]
async fn srs_fixtures_drive_the_whole_lifecycle() {
    for backend in backends() {
        for bus in buses() {
            lifecycle(backend, bus).await;
        }
    }
}

#[tokio::test]
async fn srs_publish_refusals_write_nothing() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, FIXTURE_KEY).await;
        app.room(43, "k43").await;
        app.room_with(44, "k44", Some("10.0.0.0/8"), None).await;
        app.room_with(45, "k45", Some("127.0.0.0/8, 10.1.2.3"), None)
            .await;
        app.room_with(46, "k46", None, Some(1000)).await;
        app.room(47, "k47").await;
        rooms::set_disabled(&app.db, 47, true).await.unwrap();

        let cases: [(&str, &str, &str); 7] = [
            ("42", "?key=wrong", "wrong stream key"),
            ("42", "", "missing stream key"),
            ("42", "?other=1", "missing stream key"),
            ("99", "?key=secret123", "unknown room"),
            ("livestream", "?key=secret123", "unknown room"),
            (
                "44",
                "?key=k44",
                "publisher address not allowed for this room",
            ),
            ("46", "?key=k46", "stream key has expired"),
        ];
        for (stream, param, message) in cases {
            let body = fixture_with(
                "on_publish.json",
                &[("stream", json!(stream)), ("param", json!(param))],
            );
            assert_eq!(
                app.json("on_publish", body).await,
                (403, format!(r#"{{"code":403,"msg":"{message}"}}"#)),
                "{backend:?} stream {stream} param {param}"
            );
        }
        let disabled = fixture_with(
            "on_publish.json",
            &[("stream", json!("47")), ("param", json!("?key=k47"))],
        );
        assert_eq!(
            app.json("on_publish", disabled).await,
            (403, r#"{"code":403,"msg":"room is disabled"}"#.to_owned())
        );
        for room in [42, 43, 44, 46, 47] {
            assert!(!app.is_live(room).await, "{backend:?} room {room}");
            assert!(
                app.streams(room).await.is_empty(),
                "{backend:?} room {room}"
            );
        }
        // Inside the allowlist: accepted.
        let allowed = fixture_with(
            "on_publish.json",
            &[("stream", json!("45")), ("param", json!("?key=k45"))],
        );
        assert_eq!(
            app.json("on_publish", allowed).await,
            (200, ACCEPT.to_owned())
        );
        assert!(app.is_live(45).await);
        app.stop().await;
    }
}

#[tokio::test]
async fn second_publisher_is_refused_and_a_retry_of_the_first_is_not() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, FIXTURE_KEY).await;
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await.0,
            200
        );
        let intruder = fixture_with("on_publish.json", &[("client_id", json!("intruder"))]);
        assert_eq!(
            app.json("on_publish", intruder).await,
            (
                403,
                r#"{"code":403,"msg":"room is already live"}"#.to_owned()
            )
        );
        // The same session asking again is the same publisher.
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await.0,
            200
        );
        let streams = app.streams(42).await;
        assert_eq!(streams.len(), 1, "{backend:?}");
        assert_eq!(streams[0].origin_client_id.as_deref(), Some("70763180"));
        // The intruder's stop (SRS sends none for a refused publish, but a confused origin
        // might) does not end the real session.
        let stop = fixture_with("on_unpublish.json", &[("client_id", json!("intruder"))]);
        assert_eq!(app.json("on_unpublish", stop).await.0, 200);
        assert!(app.is_live(42).await);
        app.stop().await;
    }
}

#[tokio::test]
async fn reordered_and_orphan_stops_leave_the_right_state() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, FIXTURE_KEY).await;
        // A stop without a start.
        assert_eq!(
            app.json("on_unpublish", fixture("on_unpublish.json"))
                .await
                .0,
            200
        );
        assert!(app.streams(42).await.is_empty());

        // Session 1 starts and stops; session 2 starts; session 1's stop arrives again, late.
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await.0,
            200
        );
        assert_eq!(
            app.json("on_unpublish", fixture("on_unpublish.json"))
                .await
                .0,
            200
        );
        let second = fixture_with("on_publish.json", &[("client_id", json!("second1"))]);
        assert_eq!(app.json("on_publish", second).await.0, 200);
        assert_eq!(
            app.json("on_unpublish", fixture("on_unpublish.json"))
                .await
                .0,
            200
        );
        assert!(
            app.is_live(42).await,
            "{backend:?}: a stale stop ended the new session"
        );
        let open = app.open_stream(42).await;
        assert_eq!(open.origin_client_id.as_deref(), Some("second1"));
        let bus = app.bus.clone();
        wait_until("the live key names session 2", || {
            let bus = bus.clone();
            async move { (bus.live(42).await.ok()??.stream_id == open.id).then_some(()) }
        })
        .await;

        // Session 2's own stop ends it (here through the generic `on_close` route).
        let stop = fixture_with("on_unpublish.json", &[("client_id", json!("second1"))]);
        assert_eq!(app.json("on_close", stop).await, (200, ACCEPT.to_owned()));
        assert!(!app.is_live(42).await);
        app.wait_bus_live(42, false).await;
        assert!(app.streams(42).await.iter().all(|s| s.stop_at.is_some()));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_restarted_srs_ends_the_streams_of_its_previous_run() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, FIXTURE_KEY).await;
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await.0,
            200
        );
        // SRS crashed (no on_unpublish) and came back with a new service_id; the encoder
        // reconnects.
        let again = fixture_with(
            "on_publish.json",
            &[
                ("service_id", json!("newrun01")),
                ("client_id", json!("c-new")),
            ],
        );
        assert_eq!(
            app.json("on_publish", again).await,
            (200, ACCEPT.to_owned())
        );
        let streams = app.streams(42).await;
        assert_eq!(streams.len(), 2, "{backend:?}");
        assert!(streams[0].stop_at.is_some());
        assert_eq!(streams[1].origin_service_id.as_deref(), Some("newrun01"));
        assert!(app.is_live(42).await);
        app.stop().await;
    }
}
