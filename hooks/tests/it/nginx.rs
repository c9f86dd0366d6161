//! nginx-rtmp form bodies as the module really sends them (captured from nginx 1.22 with
//! libnginx-mod-rtmp): the publisher's query appended raw, so fields can repeat.

use livegate_core::db::testing::backends;

use livegate_core::Secret;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{test_config, Options, TestApp};

const SESSION: &str = "app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19351/live&pageurl=&addr=127.0.0.1&clientid=2";

#[tokio::test]
async fn nginx_rtmp_publish_done_and_late_record_done() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, "abc").await;

        // Wrong key: 4xx refuses; nothing is written.
        let wrong = format!("{SESSION}&call=publish&name=42&type=live&key=nope");
        assert_eq!(
            app.form("on_publish", &wrong).await,
            (403, "wrong stream key\n".to_owned())
        );
        assert!(app.streams(42).await.is_empty());

        // The publisher's query repeats `name`: readers would disagree on which counts, so the
        // body is refused and nothing written.
        let body = format!("{SESSION}&call=publish&name=42&type=live&key=abc&name=evil");
        let (status, reply) = app.form("on_publish?origin=edge-a", &body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.contains("field `name` appears more than once"),
            "{reply}"
        );
        assert!(app.streams(42).await.is_empty());

        let body = format!("{SESSION}&call=publish&name=42&type=live&key=abc");
        assert_eq!(
            app.form("on_publish?origin=edge-a", &body).await,
            (200, "OK\n".to_owned())
        );
        let stream = app.open_stream(42).await;
        assert_eq!(stream.origin_kind, "nginx-rtmp");
        assert_eq!(stream.origin_server_id, "edge-a");
        assert_eq!(stream.origin_client_id.as_deref(), Some("2"));

        // A stop from another nginx (same client number, other origin) changes nothing.
        let done = format!("{SESSION}&call=publish_done&name=42&key=abc");
        assert_eq!(
            app.form("on_publish_done?origin=edge-b", &done).await.0,
            200
        );
        assert!(app.is_live(42).await);
        assert_eq!(
            app.form("on_publish_done?origin=edge-a", &done).await,
            (200, "OK\n".to_owned())
        );
        // Repeated, through the generic route: nothing more to close.
        assert_eq!(
            app.form("on_close?origin=edge-a", &done).await,
            (200, "OK\n".to_owned())
        );
        let done_all = format!("{SESSION}&call=done&name=42&key=abc");
        assert_eq!(app.form("on_done?origin=edge-a", &done_all).await.0, 200);
        assert!(!app.is_live(42).await);

        // The last on_record_done comes after publish_done.
        let record = format!(
            "{SESSION}&call=record_done&recorder=&name=42&path=/var/rec/42-1795647795.flv&key=abc"
        );
        assert_eq!(
            app.form("on_record_done?origin=edge-a", &record).await.0,
            200
        );
        let jobs = app.recording_jobs("t").await;
        assert_eq!(jobs[0].payload.path, "/var/rec/42-1795647795.flv");
        assert_eq!(jobs[0].payload.stream_id, Some(stream.id));
        app.stop().await;
    }
}

#[tokio::test]
async fn nginx_rtmp_get_mode_and_plays() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, "abc").await;
        // notify_method get: the fields travel in the URL, the body is empty.
        let query = format!("{SESSION}&call=publish&name=42&type=live&key=abc");
        let (status, _, body) = app
            .post_raw(
                &format!("on_publish?{query}"),
                "application/x-www-form-urlencoded",
                String::new(),
            )
            .await;
        assert_eq!((status, body.as_str()), (200, "OK\n"));
        assert!(app.is_live(42).await);

        // RTMP play without a token is refused, like any direct pull.
        let play = format!("{SESSION}&call=play&name=42&start=-2&duration=0&reset=0");
        assert_eq!(
            app.form("on_play", &play).await,
            (403, "play not allowed\n".to_owned())
        );
        app.stop().await;
    }
}

/// Sends `GET {uri}` exactly as nginx-rtmp's netcall does (HTTP/1.0, form content type, empty
/// body) and returns the status code and body.
async fn nginx_get(app: &TestApp, uri: &str) -> (u16, String) {
    let addr = app.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {uri} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Connection: Close\r\nContent-Length: 0\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.unwrap();
    let status = reply[9..12].parse().unwrap();
    let body = reply.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// nginx-rtmp appends the publisher's query verbatim, `?` included: a publisher that writes
/// fields of its own after a `?` must not have them read in place of the module's.
#[tokio::test]
async fn a_publishers_query_cannot_pose_as_the_callbacks_fields() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(3, "abc").await;
        // `rtmp://origin/live/3?x?call=play_done`, hook URL without a query: the fields are
        // read whole (the publisher's `x?call` is just an odd name), so the key is missing.
        let forged = format!("{SESSION}&call=publish&name=3&type=live&x?call=play_done");
        assert_eq!(
            nginx_get(&app, &format!("/api/v1/hook/on_publish?{forged}")).await,
            (403, "missing stream key\n".to_owned())
        );
        // The same behind a hook URL with a query of its own.
        let with_query = format!("/api/v1/hook/on_publish?origin=edge-a?{forged}");
        assert_eq!(
            nginx_get(&app, &with_query).await,
            (403, "missing stream key\n".to_owned())
        );
        // Fields of its own after the `?` repeat the module's, and are refused as such.
        let repeated = format!("{forged}&name=3&clientid=1");
        let (status, reply) = nginx_get(&app, &format!("/api/v1/hook/on_publish?{repeated}")).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply.contains("appears more than once"), "{reply}");
        assert!(!app.is_live(3).await);

        // Only a publish is taken on the publish route, only a play on the play route.
        let stop = format!("{SESSION}&call=play_done&name=3");
        let (status, reply) = nginx_get(&app, &format!("/api/v1/hook/on_publish?{stop}")).await;
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.contains("on_publish route takes only its own event"),
            "{reply}"
        );
        let (status, _) = nginx_get(&app, &format!("/api/v1/hook/on_play?{stop}")).await;
        assert_eq!(status, 400);
        assert!(!app.is_live(3).await);

        // The real thing still goes through.
        let right = format!("{SESSION}&call=publish&name=3&type=live&key=abc");
        assert_eq!(
            nginx_get(&app, &format!("/api/v1/hook/on_publish?{right}")).await,
            (200, "OK\n".to_owned())
        );
        assert!(app.is_live(3).await);
        app.stop().await;
    }
}

#[tokio::test]
async fn nginx_rtmp_get_mode_with_a_hook_url_query() {
    for backend in backends() {
        let mut config = test_config();
        config.callers.secret = Some(Secret::new("a-long-shared-secret"));
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend)
        })
        .await;
        app.room(42, "abc").await;
        // The hook URL is `/api/v1/hook/on_publish?origin=edge-a&secret=…`; nginx appends its
        // fields after a second `?`.
        let hook = "/api/v1/hook/on_publish?origin=edge-a&secret=a-long-shared-secret";
        let wrong = format!("{hook}?{SESSION}&call=publish&name=42&type=live&key=nope");
        assert_eq!(
            nginx_get(&app, &wrong).await,
            (403, "wrong stream key\n".to_owned())
        );
        let right = format!("{hook}?{SESSION}&call=publish&name=42&type=live&key=abc");
        assert_eq!(nginx_get(&app, &right).await, (200, "OK\n".to_owned()));
        let stream = app.open_stream(42).await;
        assert_eq!(stream.origin_server_id, "edge-a");
        assert_eq!(stream.origin_client_id.as_deref(), Some("2"));

        // A wrong secret is still refused before anything else.
        let done = format!("{SESSION}&call=publish_done&name=42&key=abc");
        let forged = format!("/api/v1/hook/on_publish_done?origin=edge-a&secret=wrong?{done}");
        assert_eq!(nginx_get(&app, &forged).await.0, 403);
        assert!(app.is_live(42).await);
        let stop = format!(
            "/api/v1/hook/on_publish_done?origin=edge-a&secret=a-long-shared-secret?{done}"
        );
        assert_eq!(nginx_get(&app, &stop).await, (200, "OK\n".to_owned()));
        assert!(!app.is_live(42).await);
        app.stop().await;
    }
}
