//! The operator console's live side: the live rooms with their media from SRS and ZLMediaKit
//! (captured bodies) and from a real nginx-rtmp's `/stat`, the feed of server-sent events, the
//! sampled history, kicks and the audit log, and the health page.

use livegate_api::config::OriginKind;
use livegate_api::kick::Origins;
use livegate_core::bus::{EdgeViewers, RoomEvent, RoomEventKind, RoomViewers};
use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{now_ms, rooms, Backend};
use livegate_tests::rtmp::{Publisher, RtmpOrigin};
use serde_json::{json, Value};

use crate::console_support::{
    answering_api, metrics_server, room_in, srs_answers, zlm_answers, Answers, Feed,
};
use crate::kicks::{origin, Hooks};
use crate::rooms::go_live;
use crate::support::{dead_addr, setups, test_config, wait_until, Options, TestApp};

async fn went_live(app: &TestApp, room: i64, stream: i64) {
    let event = RoomEvent {
        kind: RoomEventKind::Live,
        room_id: room,
        stream_id: stream,
        at_ms: now_ms(),
    };
    app.bus.events().publish(&event).await.unwrap();
}

#[tokio::test]
async fn live_rooms_carry_their_origins_media_and_the_feed_follows_a_publish() {
    for (backend, bus) in setups() {
        let srs: Answers = Answers::default();
        let zlm: Answers = Answers::default();
        let origins = Origins::from_config(&[
            origin(OriginKind::Srs, &answering_api(srs.clone()).await, None),
            origin(
                OriginKind::Zlmediakit,
                &answering_api(zlm.clone()).await,
                Some("zlm-secret"),
            ),
        ])
        .unwrap();
        let mut options = Options {
            origins,
            ..Options::new(backend, bus)
        };
        options.config.console.live_refresh_ms = 200;
        options.config.console.history_interval_s = 1;
        let app = TestApp::start(options).await;
        let owner = app.user("streamer").await;
        let other = app.user("streamer").await;
        let admin = app.user("admin").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&owner).await;
        let (other_room, _) = app.room(&other).await;
        srs.lock().unwrap().extend(srs_answers(room));
        zlm.lock().unwrap().extend(zlm_answers(other_room));

        assert_eq!(
            app.get("/api/v1/admin/live", Some(&viewer.access))
                .await
                .status,
            403
        );
        assert_eq!(Feed::open(&app, &viewer.access).await.err(), Some(403));
        assert_eq!(app.get("/api/v1/admin/live", None).await.status, 401);

        // The feed starts with what is live (nothing), then follows the publish.
        let mut feed = Feed::open(&app, &owner.access).await.unwrap();
        let first = feed.next().await.unwrap();
        assert_eq!(first["rooms"], json!([]), "{first}");
        let stream = go_live(&app, room, "srs", "70763180").await;
        went_live(&app, room, stream).await;
        let snapshot = feed
            .until("the room in the feed", |s| room_in(s, room).is_some())
            .await;
        let live = room_in(&snapshot, room).unwrap();
        assert_eq!(live["stream_id"], stream);
        assert_eq!(live["owner"]["id"], owner.user_id);
        assert!(live["owner"]["username"]
            .as_str()
            .unwrap()
            .starts_with("streamer"));
        assert_eq!(
            live["video"],
            json!({"codec": "H264", "width": 640, "height": 360})
        );
        assert_eq!(live["audio"], json!({"codec": "AAC"}));
        assert_eq!(live["bitrate_kbps"], 812);
        assert_eq!(live["publisher_addr"], "127.0.0.1");
        assert_eq!(live["viewers"]["origin"], 2);
        assert_eq!(live["recording"], "off");
        assert!(live["uptime_s"].as_i64().unwrap() >= 0);

        // ZLMediaKit's registration body, as getMediaList lists it.
        let other_stream = go_live(&app, other_room, "zlmediakit", "10-11").await;
        went_live(&app, other_room, other_stream).await;
        let all = app.get("/api/v1/admin/live", Some(&admin.access)).await;
        assert_eq!(all.status, 200, "{:?}", all.body);
        let theirs = room_in(&all.body, other_room).unwrap();
        assert_eq!(
            theirs["video"],
            json!({"codec": "H264", "width": 640, "height": 360})
        );
        assert_eq!(theirs["audio"], json!({"codec": "AAC"}));
        assert_eq!(theirs["publisher_addr"], "127.0.0.1:44190");
        assert_eq!(theirs["bitrate_kbps"], 1000);
        assert!(room_in(&all.body, room).is_some());
        // A streamer sees their own rooms only, in the listing and in the feed.
        let mine = app.get("/api/v1/admin/live", Some(&owner.access)).await;
        assert!(room_in(&mine.body, other_room).is_none(), "{:?}", mine.body);
        let later = feed.next().await.unwrap();
        assert!(room_in(&later, other_room).is_none(), "{later}");

        // The edges' viewer counts and chat reach the room.
        let report = EdgeViewers {
            edge: "edge-1".to_owned(),
            at_ms: now_ms(),
            valid_ms: 60_000,
            rooms: vec![RoomViewers {
                room_id: room.unsigned_abs(),
                flv: 3,
                hls: 4,
            }],
        };
        app.bus.edge_viewers().publish(&report).await.unwrap();
        let counted = feed
            .until("the edge's viewers", |s| {
                room_in(s, room).is_some_and(|r| r["viewers"]["flv"] == 3)
            })
            .await;
        assert_eq!(room_in(&counted, room).unwrap()["viewers"]["hls"], 4);

        // The sampler keeps the room's history on the bus.
        let path = format!("/api/v1/rooms/{room}/history?minutes=5");
        let history = wait_until("a history point with the edge's viewers", || async {
            let reply = app.get(&path, Some(&owner.access)).await;
            let points = reply.body["points"].as_array()?.clone();
            points
                .iter()
                .any(|p| p["viewers"] == 7 && p["bitrate_kbps"] == 812)
                .then_some(reply)
        })
        .await;
        assert_eq!(history.body["interval_s"], 1);
        assert_eq!(app.get(&path, Some(&other.access)).await.status, 403);
        assert_eq!(app.get(&path, Some(&viewer.access)).await.status, 403);
        let bad = app
            .get(
                &format!("/api/v1/rooms/{room}/history?minutes=0"),
                Some(&owner.access),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (400, "minutes"));
        let bad = app
            .get(
                &format!("/api/v1/rooms/{room}/history?minutes=soon"),
                Some(&owner.access),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (400, "minutes"));

        // Shutdown ends the feed.
        app.stop().await;
        // What was sent before reads out, then the stream ends (within the patience).
        while feed.next().await.is_some() {}
    }
}

#[tokio::test]
async fn a_real_nginx_rtmp_publish_reaches_the_feed_with_its_media() {
    let test_db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let bus = livegate_core::bus::Bus::connect(&Default::default()).unwrap();
    let hooks = Hooks::start_on(test_db.db.clone(), bus.clone()).await;
    let nginx = RtmpOrigin::start(&hooks.base, "");
    nginx.ready().await;
    let mut config = test_config();
    config.console.live_refresh_ms = 300;
    let app = TestApp::start(Options {
        // The stat URL is found beside the control URL.
        origins: Origins::from_config(&[origin(OriginKind::NginxRtmp, &nginx.control_url(), None)])
            .unwrap(),
        db: Some(test_db.db.clone()),
        config,
        ..Options::new(Backend::Sqlite, None)
    })
    .await;
    assert_eq!(
        nginx.stat_url(),
        nginx.control_url().replace("/control", "/stat")
    );
    let owner = app.user("streamer").await;
    let (room, key) = app.room(&owner).await;
    let mut feed = Feed::open(&app, &owner.access).await.unwrap();
    assert_eq!(feed.next().await.unwrap()["rooms"], json!([]));

    let _publisher = Publisher::start(&nginx.url(&format!("{room}?key={key}")), 60);
    let snapshot = feed
        .until("the published room with its video", |s| {
            room_in(s, room).is_some_and(|r| r["video"].is_object())
        })
        .await;
    let live = room_in(&snapshot, room).unwrap();
    assert_eq!(
        live["video"],
        json!({"codec": "H264", "width": 320, "height": 240})
    );
    assert_eq!(live["audio"], json!({"codec": "AAC"}));
    assert_eq!(live["publisher_addr"], "127.0.0.1");
    assert_eq!(live["origin"]["kind"], "nginx-rtmp");
    app.stop().await;
    hooks.stop().await;
}

#[tokio::test]
async fn kicks_rotations_and_bans_are_in_the_audit_log_with_who_and_how() {
    for (backend, bus) in setups() {
        let srs: Answers = Answers::default();
        srs.lock()
            .unwrap()
            .push(("/api/v1/clients/c%2D1".to_owned(), json!({"code": 0})));
        let app = TestApp::start(Options {
            origins: Origins::from_config(&[origin(
                OriginKind::Srs,
                &answering_api(srs.clone()).await,
                None,
            )])
            .unwrap(),
            ..Options::new(backend, bus)
        })
        .await;
        let owner = app.user("streamer").await;
        let other = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let admin = app.user("admin").await;
        let (room, _) = app.room(&owner).await;
        let kick = format!("/api/v1/rooms/{room}/kick");

        let idle = app.post(&kick, Some(&owner.access), json!({})).await;
        assert_eq!(idle.status, 200, "{:?}", idle.body);
        assert_eq!(idle.body, json!({"kicked": false, "outcome": "not_live"}));
        go_live(&app, room, "srs", "c-1").await;
        assert_eq!(
            app.post(&kick, Some(&viewer.access), json!({}))
                .await
                .status,
            403
        );
        assert_eq!(
            app.post(&kick, Some(&other.access), json!({})).await.status,
            403
        );
        let bad = app
            .post("/api/v1/rooms/0/kick", Some(&owner.access), json!({}))
            .await;
        assert_eq!((bad.status, bad.field()), (400, "id"));
        let kicked = app.post(&kick, Some(&owner.access), json!({})).await;
        assert_eq!(kicked.body, json!({"kicked": true, "outcome": "kicked"}));
        // The key stays: the room is not re-keyed by a kick.
        let key_before = rooms::get(&app.db, room).await.unwrap().unwrap().stream_key;
        let rotated = app
            .post(
                &format!("/api/v1/rooms/{room}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(rotated.status, 200);
        assert_ne!(
            rooms::get(&app.db, room).await.unwrap().unwrap().stream_key,
            key_before
        );
        let banned = app
            .post(
                &format!("/api/v1/rooms/{room}/bans"),
                Some(&owner.access),
                json!({"user_id": viewer.user_id}),
            )
            .await;
        assert_eq!(banned.status, 204, "{:?}", banned.body);

        assert_eq!(
            app.get("/api/v1/admin/audit", Some(&owner.access))
                .await
                .status,
            403
        );
        let log = app
            .get(
                &format!("/api/v1/admin/audit?room={room}"),
                Some(&admin.access),
            )
            .await;
        assert_eq!(log.status, 200, "{:?}", log.body);
        let entries = log.body["items"].as_array().unwrap();
        let find = |action: &str, status: u16| {
            entries
                .iter()
                .find(|e| e["action"] == action && e["status"] == status)
                .unwrap_or_else(|| panic!("no {action} {status} in {entries:?}"))
        };
        let entry = find("POST /api/v1/rooms/{id}/kick", 200);
        assert_eq!(entry["actor"]["id"], owner.user_id);
        assert_eq!(entry["actor"]["role"], "streamer");
        assert!(entry["actor"]["username"]
            .as_str()
            .unwrap()
            .starts_with("streamer"));
        assert_eq!(entry["target"], format!("id={room}"));
        assert!(entry["at"].as_i64().unwrap() > 0);
        let refused = entries
            .iter()
            .find(|e| e["status"] == 403 && e["actor"]["id"] == viewer.user_id)
            .unwrap();
        assert!(
            refused["detail"].as_str().unwrap().starts_with("forbidden"),
            "{refused}"
        );
        let rotation = find("POST /api/v1/rooms/{id}/stream-key/rotate", 200);
        assert_eq!(rotation["detail"], "kicked: kicked");
        assert_eq!(
            find("POST /api/v1/rooms/{id}/bans", 204)["actor"]["id"],
            owner.user_id
        );
        // Reads are not audited; entries are newest first.
        assert!(entries
            .iter()
            .all(|e| !e["action"].as_str().unwrap().starts_with("GET")));
        let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

        let theirs = app
            .get(
                &format!("/api/v1/admin/audit?actor={}&limit=1", owner.user_id),
                Some(&admin.access),
            )
            .await;
        assert_eq!(theirs.body["items"].as_array().unwrap().len(), 1);
        assert!(theirs.body["next_cursor"].is_string(), "{:?}", theirs.body);
        let bad = app
            .get("/api/v1/admin/audit?limit=0", Some(&admin.access))
            .await;
        assert_eq!((bad.status, bad.field()), (400, "limit"));
        let bad = app
            .get("/api/v1/admin/audit?room=x", Some(&admin.access))
            .await;
        assert_eq!((bad.status, bad.field()), (400, "room"));
        app.stop().await;
    }
}

const PROXY_METRICS: &str = "# TYPE livegate_proxy_token_rejections counter\n\
    livegate_proxy_token_rejections_total{reason=\"expired\"} 4\n\
    # TYPE livegate_proxy_flv_sessions_active gauge\n\
    livegate_proxy_flv_sessions_active 12\n\
    # TYPE livegate_proxy_upstream_latency_seconds histogram\n\
    livegate_proxy_upstream_latency_seconds_bucket{le=\"0.01\",kind=\"flv\"} 5\n\
    livegate_proxy_upstream_latency_seconds_bucket{le=\"+Inf\",kind=\"flv\"} 5\n\
    # EOF\n";

fn check<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {health}"))
}

#[tokio::test]
async fn health_checks_every_part_and_a_stopped_one_is_not_ok() {
    let test_db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let hooks = Hooks::start(test_db.db.clone()).await;
    let srs: Answers = Answers::default();
    srs.lock().unwrap().extend(srs_answers(1));
    let stored = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.console.proxy_metrics_url = Some(metrics_server(PROXY_METRICS).await);
    config.console.hooks_metrics_url = Some(format!("{}/metrics", hooks.admin));
    config.console.recorder_metrics_url = Some(format!("http://{}/metrics", dead_addr()));
    config.console.check_timeout_ms = 1000;
    config.recordings = Some(livegate_api::console::config::RecordingsConfig {
        local: livegate_recorder::config::LocalStorageConfig {
            dir: stored.path().to_path_buf(),
        },
        ..Default::default()
    });
    let app = TestApp::start(Options {
        origins: Origins::from_config(&[
            origin(OriginKind::Srs, &answering_api(srs).await, None),
            origin(
                OriginKind::NginxRtmp,
                &format!("http://{}/control", dead_addr()),
                None,
            ),
        ])
        .unwrap(),
        db: Some(test_db.db.clone()),
        config,
        ..Options::new(Backend::Sqlite, None)
    })
    .await;
    let admin = app.user("admin").await;
    let streamer = app.user("streamer").await;
    assert_eq!(
        app.get("/api/v1/admin/health", Some(&streamer.access))
            .await
            .status,
        403
    );

    let health = app.get("/api/v1/admin/health", Some(&admin.access)).await;
    assert_eq!(health.status, 200, "{:?}", health.body);
    let body = &health.body;
    for name in ["database", "bus", "origin srs", "storage", "proxy", "hooks"] {
        assert_eq!(check(body, name)["ok"], true, "{name}: {body}");
        assert!(check(body, name)["latency_ms"].is_u64());
    }
    assert_eq!(check(body, "origin nginx-rtmp")["ok"], false, "{body}");
    assert_eq!(check(body, "recorder")["ok"], false, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(body["proxy"]["flv_sessions_active"], 12.0);
    assert_eq!(body["proxy"]["upstream_latency_ms_p50"], 5.0);
    assert!(body["hooks"].is_object(), "{body}");
    assert!(body["recorder"].is_null());

    // The hooks service stops: the next look says so.
    hooks.stop().await;
    let health = app.get("/api/v1/admin/health", Some(&admin.access)).await;
    let hooks_check = check(&health.body, "hooks");
    assert_eq!(hooks_check["ok"], false, "{}", health.body);
    assert!(hooks_check["detail"].as_str().unwrap().contains("/metrics"));
    assert!(health.body["hooks"].is_null());
    app.stop().await;
}
