//! Bodies that say one thing twice, fields too big for their columns, and tokens pasted
//! unencoded — in every dialect, on every backend.

use livegate_core::db::testing::backends;
use livegate_core::db::{Backend, Database};
use livegate_core::token::TokenKeys;
use livegate_core::{unix_now, Secret};
use livegate_hooks::config::DbDownPolicy;

use crate::support::{
    fixture, fixture_with, test_config, zlm_body, Options, TestApp, ACCEPT, FIXTURE_KEY, PLAY_KEY,
};

/// `fixture` with `prefix` inserted right after its opening brace.
fn with_leading(json: &str, prefix: &str) -> String {
    format!("{{{prefix},{}", json.trim_start().trim_start_matches('{'))
}

#[tokio::test]
async fn a_body_that_names_a_field_twice_is_refused_and_changes_nothing() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, FIXTURE_KEY).await;
        app.room(43, "k43").await;
        let form = "application/x-www-form-urlencoded";
        let cases: Vec<(&str, &str, String, &str)> = vec![
            // serde keeps the last `stream` (42), a form reader the first (43).
            (
                "on_publish",
                "application/json",
                with_leading(&fixture("on_publish.json"), r#""stream":"43""#),
                "stream",
            ),
            // A stop that also says it is a publish.
            (
                "on_publish",
                "application/json",
                fixture("on_unpublish.json")
                    .trim_end()
                    .trim_end_matches('}')
                    .to_owned()
                    + r#","action":"on_publish","param":"?key=secret123"}"#,
                "action",
            ),
            (
                "on_publish",
                "application/json",
                with_leading(
                    &zlm_body(
                        "on_publish",
                        "reply_code0=True",
                        &[("params", "key=k43".into()), ("stream", "42".into())],
                    ),
                    r#""stream":"43""#,
                ),
                "stream",
            ),
            // Deeper down: ZLMediaKit's registration names its publisher in `originSock`.
            (
                "on_stream_changed",
                "application/json",
                zlm_body("on_stream_changed", "regist=True", &[]).replacen(
                    r#""identifier":"10-11""#,
                    r#""identifier":"10-11","identifier":"99-9""#,
                    1,
                ),
                "identifier",
            ),
            (
                "on_publish",
                form,
                "app=live&addr=127.0.0.1&clientid=2&call=publish&name=43&type=live&key=k43&name=42"
                    .to_owned(),
                "name",
            ),
        ];
        for (route, ctype, body, field) in cases {
            let (status, _, reply) = app.post_raw(route, ctype, body.clone()).await;
            assert_eq!(status, 400, "{body} -> {reply}");
            assert!(
                reply.contains(&format!("field `{field}` appears more than once")),
                "{reply}"
            );
        }
        // nginx-rtmp's GET mode: the fields in the query.
        let (status, _, reply) = app
            .post_raw(
                "on_publish?app=live&call=publish&name=43&key=k43&call=publish_done",
                form,
                String::new(),
            )
            .await;
        assert_eq!(status, 400, "{reply}");
        assert!(app.streams(42).await.is_empty() && app.streams(43).await.is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn oversized_fields_are_a_bad_request_not_a_database_outage() {
    let long = "x".repeat(10 * 1024);
    for backend in backends() {
        for policy in [DbDownPolicy::Refuse, DbDownPolicy::Allow] {
            let mut config = test_config();
            config.publish.when_db_down = policy;
            let app = TestApp::start(Options {
                config,
                ..Options::new(backend)
            })
            .await;
            app.room(42, FIXTURE_KEY).await;
            for field in ["server_id", "client_id", "ip", "service_id"] {
                let body = fixture_with("on_publish.json", &[(field, long.clone().into())]);
                let (status, reply) = app.json("on_publish", body).await;
                assert_eq!(status, 400, "{backend:?} {field}: {reply}");
                assert!(reply.contains(&format!("field `{field}`")), "{reply}");
            }
            let zlm = zlm_body(
                "on_publish",
                "reply_code0=True",
                &[
                    ("params", format!("key={FIXTURE_KEY}").into()),
                    ("mediaServerId", long.clone().into()),
                ],
            );
            let (status, reply) = app.json("on_publish", zlm).await;
            assert_eq!(status, 400, "{reply}");
            assert!(reply.contains("field `mediaServerId`"), "{reply}");
            let nginx = format!("call=publish&name=42&key={FIXTURE_KEY}&addr={long}");
            let (status, reply) = app.form("on_publish", &nginx).await;
            assert_eq!(status, 400, "{reply}");
            assert!(!app.is_live(42).await, "{backend:?} {policy:?}");
            assert!(app.streams(42).await.is_empty());
            // A control character is no identifier either.
            let body = fixture_with("on_publish.json", &[("client_id", "a\u{0}b".into())]);
            assert_eq!(app.json("on_publish", body).await.0, 400);
            app.stop().await;
        }
    }
}

#[tokio::test]
async fn a_failing_query_is_refused_even_when_outages_are_let_through() {
    let mut config = test_config();
    config.publish.when_db_down = DbDownPolicy::Allow;
    let app = TestApp::start(Options {
        config,
        ..Options::new(Backend::Sqlite)
    })
    .await;
    app.room(42, FIXTURE_KEY).await;
    // The database answers, but the stream row cannot be written.
    let Database::Sqlite(pool) = &app.db else {
        unreachable!()
    };
    for table in ["interrupted_recordings", "streams"] {
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(pool)
            .await
            .unwrap();
    }
    let (status, reply) = app.json("on_publish", fixture("on_publish.json")).await;
    assert_eq!(status, 503, "{reply}");
    assert!(!app.is_live(42).await);
    app.stop().await;
}

/// A token for `room` as PHP's plain `base64_encode` writes it: standard alphabet, padded.
/// (The payload is ASCII, so no v1 token has a `+` or `/`; those are covered where the
/// query is read, in the dialects' unit tests and `token_from_query`'s.)
fn php_token(room: u64) -> String {
    let keys = TokenKeys::new(&[Secret::new(PLAY_KEY)]).unwrap();
    let token = keys.mint(room, unix_now() + 600);
    let padding = (4 - token.len() % 4) % 4;
    format!("{token}{}", "=".repeat(padding))
}

#[tokio::test]
async fn a_token_pasted_unencoded_plays_in_every_dialect() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Room 420: its payload's length leaves padding.
    let token = php_token(420);
    assert!(token.ends_with('='), "{token}");

    let srs = fixture_with(
        "on_play_flv.json",
        &[
            ("stream", "420".into()),
            ("param", format!("?token={token}").into()),
        ],
    );
    assert_eq!(app.json("on_play", srs).await, (200, ACCEPT.to_owned()));

    let zlm = zlm_body(
        "on_play",
        "reply_code0=True,schema=rtmp",
        &[
            ("stream", "420".into()),
            ("params", format!("token={token}").into()),
        ],
    );
    assert_eq!(app.json("on_play", zlm).await, (200, ACCEPT.to_owned()));

    let nginx = format!(
        "app=live&flashver=LNX%209%2C0%2C124%2C2&swfurl=&tcurl=rtmp://127.0.0.1/live&pageurl=&addr=127.0.0.1&clientid=7&call=play&name=420&start=-2&duration=0&reset=0&token={token}"
    );
    assert_eq!(app.form("on_play", &nginx).await, (200, "OK\n".to_owned()));
    // nginx-rtmp's GET mode too.
    let (status, _, _) = app
        .post_raw(
            &format!("on_play?{nginx}"),
            "application/x-www-form-urlencoded",
            String::new(),
        )
        .await;
    assert_eq!(status, 200);

    // Percent-encoded it still works; a `+` where the token has none is part of the token
    // (not a space) and makes it another, refused, token.
    let encoded = token.replace('=', "%3D");
    let srs = fixture_with(
        "on_play_flv.json",
        &[
            ("stream", "420".into()),
            ("param", format!("?token={encoded}").into()),
        ],
    );
    assert_eq!(app.json("on_play", srs).await.0, 200);
    let plus = format!("{}+", token.trim_end_matches('='));
    let srs = fixture_with(
        "on_play_flv.json",
        &[
            ("stream", "420".into()),
            ("param", format!("?token={plus}").into()),
        ],
    );
    assert_eq!(app.json("on_play", srs).await.0, 403);
    app.stop().await;
}

/// A caller that starts a request and never finishes its head is not held for ever: the
/// connection is closed once the head deadline passes.
#[tokio::test]
async fn an_unfinished_request_head_is_closed_at_its_deadline() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(b"POST /api/v1/hook/on_publish HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // Read until the server ends the connection (a 408, or nothing), well within the
    // outer limit, which is there only so that a regression fails instead of hanging.
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        socket.read_to_end(&mut answer),
    )
    .await;
    assert!(closed.is_ok(), "the connection is still open");
    app.stop().await;
}
