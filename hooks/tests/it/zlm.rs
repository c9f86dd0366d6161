//! ZLMediaKit bodies, built from its documented fields (WebHook.cpp / web_hook_api.md).

use livegate_core::db::testing::backends;
use serde_json::{json, Value};

use crate::support::{play_token, zlm_body, TestApp, ACCEPT};

fn publish(params: &str, id: &str) -> String {
    publish_at(params, id, 12)
}

fn publish_at(params: &str, id: &str, hook_index: u64) -> String {
    json!({
        "mediaServerId": "zlm-1", "hook_index": hook_index, "schema": "rtmp", "protocol": "rtmp",
        "vhost": "__defaultVhost__", "app": "live", "stream": "42", "params": params,
        "ip": "203.0.113.7", "port": 65284, "id": id, "originType": 1, "originTypeStr": "rtmp_push"
    })
    .to_string()
}

fn changed(schema: &str, regist: bool) -> String {
    changed_at(schema, regist, 13)
}

fn changed_at(schema: &str, regist: bool, hook_index: u64) -> String {
    json!({
        "mediaServerId": "zlm-1", "hook_index": hook_index, "schema": schema, "vhost": "__defaultVhost__",
        "app": "live", "stream": "42", "params": "key=zk", "regist": regist
    })
    .to_string()
}

#[tokio::test]
async fn zlmediakit_publish_record_and_unregister() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, "zk").await;

        // Refusals are HTTP 200 with a non-zero code: any other status makes ZLMediaKit retry.
        assert_eq!(
            app.json("on_publish", publish("key=nope", "140186529001776"))
                .await,
            (200, r#"{"code":-1,"msg":"wrong stream key"}"#.to_owned())
        );
        assert!(app.streams(42).await.is_empty());

        assert_eq!(
            app.json("on_publish", publish("key=zk&x=1", "140186529001776"))
                .await,
            (200, ACCEPT.to_owned())
        );
        let stream = app.open_stream(42).await;
        assert_eq!(
            (
                stream.origin_kind.as_str(),
                stream.origin_server_id.as_str()
            ),
            ("zlmediakit", "zlm-1")
        );
        assert_eq!(stream.origin_client_id.as_deref(), Some("140186529001776"));
        assert_eq!(stream.publisher_ip.as_deref(), Some("203.0.113.7"));

        // Registration events are acknowledged and change nothing.
        assert_eq!(
            app.json("on_stream_changed", changed("rtmp", true)).await,
            (200, ACCEPT.to_owned())
        );
        assert!(app.is_live(42).await);

        let record = json!({
            "mediaServerId": "zlm-1", "hook_index": 14, "start_time": 1735000000, "file_size": 1048576,
            "time_len": 12.5, "file_path": "/opt/media/record/live/42/2024-12-24/00-00-00.mp4",
            "file_name": "00-00-00.mp4", "folder": "/opt/media/record/live/42/",
            "url": "record/live/42/2024-12-24/00-00-00.mp4", "vhost": "__defaultVhost__",
            "app": "live", "stream": "42", "params": ""
        });
        assert_eq!(
            app.json("on_record_mp4", record.to_string()).await,
            (200, ACCEPT.to_owned())
        );
        let jobs = app.recording_jobs("t").await;
        let job = &jobs[0].payload;
        assert_eq!(
            job.path,
            "/opt/media/record/live/42/2024-12-24/00-00-00.mp4"
        );
        assert_eq!(
            (job.size_bytes, job.duration_ms),
            (Some(1_048_576), Some(12_500))
        );
        assert_eq!(
            (job.stream_id, job.origin_kind.as_str()),
            (Some(stream.id), "zlmediakit")
        );

        // One regist:false per schema: the first closes, the rest find nothing.
        for schema in ["rtmp", "rtsp", "hls"] {
            assert_eq!(
                app.json("on_stream_changed", changed(schema, false)).await,
                (200, ACCEPT.to_owned())
            );
        }
        assert!(!app.is_live(42).await);
        let rows = app.streams(42).await;
        assert_eq!(rows.len(), 1);
        assert!(rows[0].stop_at.is_some());
        app.stop().await;
    }
}

#[tokio::test]
async fn zlmediakit_server_events() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, "zk").await;
        assert_eq!(app.json("on_publish", publish("key=zk", "1")).await.0, 200);

        // A start notice alone (no API to confirm it) closes nothing: ZLMediaKit sends it
        // before binding its ports, so it may come from an instance that then fails.
        assert_eq!(
            app.json("on_server_started", zlm_body("on_server_started", "", &[]))
                .await,
            (200, ACCEPT.to_owned())
        );
        assert!(app.is_live(42).await);

        assert_eq!(
            app.json(
                "on_server_keepalive",
                zlm_body("on_server_keepalive", "", &[])
            )
            .await,
            (200, ACCEPT.to_owned())
        );
        assert_eq!(
            app.json("on_server_exited", zlm_body("on_server_exited", "", &[]))
                .await,
            (200, ACCEPT.to_owned())
        );
        // It may also come with an empty body.
        assert_eq!(
            app.json("on_server_exited", String::new()).await,
            (200, ACCEPT.to_owned())
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn zlmediakit_realm_and_none_reader_get_their_own_answers() {
    let app = TestApp::spawn(livegate_core::db::Backend::Sqlite).await;
    // An empty realm: no RTSP authentication of its own (on_play checks the token).
    assert_eq!(
        app.json("on_rtsp_realm", zlm_body("on_rtsp_realm", "", &[]))
            .await,
        (200, r#"{"code":0,"realm":""}"#.to_owned())
    );
    // A live room with nobody watching stays live.
    assert_eq!(
        app.json(
            "on_stream_none_reader",
            zlm_body("on_stream_none_reader", "", &[])
        )
        .await,
        (200, r#"{"code":0,"close":false}"#.to_owned())
    );
    let shell = json!({"mediaServerId": "zlm-1", "hook_index": 5, "user_name": "admin",
        "passwd": "x", "ip": "10.0.0.1", "port": 1, "id": "9"});
    assert_eq!(
        app.json("on_shell_login", shell.to_string()).await,
        (200, r#"{"code":-1,"msg":"not supported"}"#.to_owned())
    );
    app.stop().await;
}

#[tokio::test]
async fn zlmediakit_late_stops_cannot_close_a_resumed_session() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, "zk").await;
        assert_eq!(
            app.json("on_publish", publish_at("key=zk", "1", 10)).await,
            (200, ACCEPT.to_owned())
        );
        let first = app.open_stream(42).await;
        // The publisher comes back before ZLMediaKit's stops of the first session arrive: a
        // valid key from the same server replaces the open stream.
        assert_eq!(
            app.json("on_publish", publish_at("key=zk", "2", 20)).await,
            (200, ACCEPT.to_owned())
        );
        let second = app.open_stream(42).await;
        assert_ne!(second.id, first.id);
        assert_eq!(second.origin_client_id.as_deref(), Some("2"));
        // The first session's stops, one per schema, sent before the second publish.
        for (i, schema) in ["rtmp", "rtsp", "hls", "ts", "fmp4", "hls.fmp4"]
            .into_iter()
            .enumerate()
        {
            assert_eq!(
                app.json(
                    "on_stream_changed",
                    changed_at(schema, false, 11 + i as u64)
                )
                .await,
                (200, ACCEPT.to_owned())
            );
        }
        assert!(app.is_live(42).await);
        assert_eq!(app.open_stream(42).await.id, second.id);
        // The second session's stops: other schemas change nothing, its own closes it.
        for (i, schema) in ["rtsp", "hls", "ts"].into_iter().enumerate() {
            app.json(
                "on_stream_changed",
                changed_at(schema, false, 30 + i as u64),
            )
            .await;
        }
        assert!(app.is_live(42).await);
        app.json("on_stream_changed", changed_at("rtmp", false, 40))
            .await;
        assert!(!app.is_live(42).await);
        let rows = app.streams(42).await;
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|row| row.stop_at.is_some()));
        app.stop().await;
    }
}

fn http_access(path: &str, params: &str) -> String {
    zlm_body(
        "on_http_access",
        "",
        &[("path", path.into()), ("params", params.into())],
    )
}

fn reply(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn zlmediakit_http_access_grants_stream_files_for_the_tokens_life() {
    let app = TestApp::spawn(livegate_core::db::Backend::Sqlite).await;
    let ok = format!("token={}", play_token(42, 300));
    for path in ["/live/42/2026-12-01/09/32-33_0.ts", "/live/42/hls.m3u8"] {
        let (status, body) = app.json("on_http_access", http_access(path, &ok)).await;
        assert_eq!(status, 200);
        let granted = reply(&body);
        assert_eq!(
            (granted["code"].clone(), granted["err"].clone()),
            (json!(0), json!(""))
        );
        // The grant lasts as long as the token, not a fixed 600 s.
        let second = granted["second"].as_u64().unwrap();
        assert!((290..=301).contains(&second), "{body}");
    }
    // Refusals are code 0 with a reason in `err`: a non-zero code is ZLMediaKit's hook error.
    let other = format!("token={}", play_token(43, 300));
    for (path, params) in [
        ("/live/42/2026-12-01/09/32-33_0.ts", ""),
        ("/live/42/2026-12-01/09/32-33_0.ts", other.as_str()),
        // The fixture's own request: a page of the HTTP root.
        ("/index.html", ok.as_str()),
        // Recordings are never served around the proxy, whatever the token.
        (
            "/record/live/42/2026-12-01/2026-12-01-09-28-42-0.mp4",
            ok.as_str(),
        ),
        ("/record/live/42/", ok.as_str()),
        ("/live/../record/live/42/a.mp4", ok.as_str()),
    ] {
        assert_eq!(
            app.json("on_http_access", http_access(path, params)).await,
            (
                200,
                r#"{"code":0,"err":"play not allowed","path":"","second":0}"#.to_owned()
            ),
            "{path} {params}"
        );
    }
    app.stop().await;
}
