//! Bad input, unwelcome callers, and the failure policy for a dead database or Redis.

use std::time::{Duration, Instant};

use livegate_core::bus::BusConfig;
use livegate_core::db::testing::{backends, TestDatabase};
use livegate_core::db::{Backend, Database, DbConfig};
use livegate_core::Secret;
use livegate_hooks::config::DbDownPolicy;
use livegate_tests::patience;

use crate::support::{
    fixture, fixture_with, mysql_app_with_deadline, test_config, wait_until, Options, TestApp,
    ACCEPT, FIXTURE_KEY,
};

#[tokio::test]
async fn bad_input_gets_a_readable_4xx() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let cases = [
        ("not json at all", "unrecognised callback"),
        ("{\"hello\":1}", "unrecognised callback"),
        ("{\"action\":\"on_publish\"", "body is not valid JSON"),
        (
            "{\"action\":\"on_publish\",\"client_id\":\"x\"}",
            "field `server_id` is missing",
        ),
        (
            "{\"action\":\"on_explode\",\"server_id\":\"s\"}",
            "unknown SRS event `on_explode`",
        ),
        ("call=explode&name=1", "unknown nginx-rtmp event `explode`"),
        ("", "unrecognised callback"),
    ];
    for (body, message) in cases {
        let (status, ctype, reply) = app
            .post_raw("on_publish", "application/json", body.to_owned())
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(ctype, "application/json");
        assert!(reply.contains(message), "{body} -> {reply}");
        assert!(reply.starts_with("{\"code\":400"), "{reply}");
    }
    // Unknown routes and methods.
    let status = app
        .client
        .post(format!("{}/api/v1/hook/on_nothing", app.base))
        .body("{}")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let status = app
        .client
        .put(format!("{}/api/v1/hook/on_publish", app.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 405);
    // Oversized bodies.
    let huge = "x".repeat(200 * 1024);
    assert_eq!(
        app.post_raw("on_publish", "application/json", huge).await.0,
        413
    );
    app.stop().await;
}

#[tokio::test]
async fn callers_outside_the_allowlist_or_without_the_secret_get_403() {
    for backend in backends() {
        let mut config = test_config();
        config.callers.allow_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend)
        })
        .await;
        app.room(42, FIXTURE_KEY).await;
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await,
            (403, r#"{"code":403,"msg":"caller not allowed"}"#.to_owned())
        );
        assert!(!app.is_live(42).await);
        app.stop().await;

        let mut config = test_config();
        config.callers.secret = Some(Secret::new("a-long-shared-secret"));
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend)
        })
        .await;
        app.room(42, FIXTURE_KEY).await;
        for route in [
            "on_publish",
            "on_publish?secret=wrong",
            "on_publish?secret=",
        ] {
            assert_eq!(
                app.json(route, fixture("on_publish.json")).await.0,
                403,
                "{route}"
            );
        }
        assert!(!app.is_live(42).await);
        assert_eq!(
            app.json(
                "on_publish?secret=a-long-shared-secret",
                fixture("on_publish.json")
            )
            .await,
            (200, ACCEPT.to_owned())
        );
        app.stop().await;
    }
}

async fn unreachable_db() -> Database {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    Database::connect(&DbConfig {
        url: Secret::new("mysql://u:p@127.0.0.1:1/none"),
        acquire_timeout_ms: 300,
        ..DbConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn database_down_refuses_publishes_within_the_deadline() {
    let mut config = test_config();
    config.server.deadline_ms = 1000;
    let app = TestApp::start(Options {
        config,
        db: Some(unreachable_db().await),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    // Answered, not left hanging (the origin would wait for its own timeout).
    let reply = tokio::time::timeout(
        patience(),
        app.json("on_publish", fixture("on_publish.json")),
    )
    .await
    .expect("the publish is answered");
    assert_eq!(
        reply,
        (
            503,
            r#"{"code":503,"msg":"service unavailable, try again"}"#.to_owned()
        )
    );
    // Notifications are answered too, not left hanging.
    assert_eq!(
        app.json("on_unpublish", fixture("on_unpublish.json"))
            .await
            .0,
        503
    );
    // Plays need no database.
    assert_eq!(
        app.json("on_play", fixture("on_play_hls.json")).await.0,
        403
    );
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    app.stop().await;

    let mut config = test_config();
    config.publish.when_db_down = DbDownPolicy::Allow;
    let app = TestApp::start(Options {
        config,
        db: Some(unreachable_db().await),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await,
        (200, ACCEPT.to_owned())
    );
    app.stop().await;
}

#[tokio::test]
async fn a_hung_database_refuses_publishes_within_the_deadline() {
    // A "database" that accepts connections and never says a word, and a pool that waits
    // for it far longer than the test's patience: only the deadline can end the wait.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    let db = Database::connect(&DbConfig {
        url: Secret::new(format!("mysql://u:p@127.0.0.1:{port}/none")),
        acquire_timeout_ms: u64::try_from(patience().as_millis() * 10).unwrap(),
        ..DbConfig::default()
    })
    .await
    .unwrap();
    let mut config = test_config();
    config.server.deadline_ms = 700;
    let app = TestApp::start(Options {
        config,
        db: Some(db),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let started = Instant::now();
    let reply = tokio::time::timeout(
        patience(),
        app.json("on_publish", fixture("on_publish.json")),
    )
    .await
    .expect("the deadline answers the publish");
    assert_eq!(
        reply,
        (
            503,
            r#"{"code":503,"msg":"service unavailable, try again"}"#.to_owned()
        )
    );
    // Not before the deadline: the service did wait for the database.
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(
        app.json("on_unpublish", fixture("on_unpublish.json"))
            .await
            .0,
        503
    );
    app.stop().await;
    drop(hung);
}

#[tokio::test]
async fn simultaneous_publishers_of_one_room_get_exactly_one_stream() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        app.room(42, FIXTURE_KEY).await;
        let mut publishes = tokio::task::JoinSet::new();
        for client in 0..16 {
            let body = fixture_with(
                "on_publish.json",
                &[("client_id", format!("client-{client}").into())],
            );
            let (client, url) = (
                app.client.clone(),
                format!("{}/api/v1/hook/on_publish", app.base),
            );
            publishes.spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            });
        }
        let mut accepted = 0;
        while let Some(reply) = publishes.join_next().await {
            let (status, body) = reply.unwrap();
            match status {
                200 => accepted += 1,
                403 => assert!(body.contains("room is already live"), "{body}"),
                other => panic!("{backend:?}: unexpected {other} {body}"),
            }
        }
        assert_eq!(accepted, 1, "{backend:?}");
        let streams = app.streams(42).await;
        assert_eq!(streams.len(), 1, "{backend:?}");
        assert!(streams[0].stop_at.is_none());
        assert!(app.is_live(42).await);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_locked_row_cannot_stall_a_publish_past_the_deadline() {
    let Some((test_db, app)) = mysql_app_with_deadline(500).await else {
        return;
    };
    let Database::Mysql(pool) = &test_db.db else {
        unreachable!()
    };
    // Another client holds the room's row: the publish's UPDATE would wait for it, up to the
    // server's lock wait timeout (50 s on this pool, which sets no session limits).
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM rooms WHERE id = 42 FOR UPDATE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let reply = tokio::time::timeout(
        patience(),
        app.json("on_publish", fixture("on_publish.json")),
    )
    .await
    .expect("the deadline answers the publish");
    assert_eq!(reply.0, 503);
    locker.rollback().await.unwrap();
    // Nothing half-done remains, and the publisher's retry goes through.
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        200
    );
    assert_eq!(app.streams(42).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn statements_of_timed_out_publishes_cannot_exhaust_the_pool() {
    if livegate_core::testing::mysql_url().is_none() {
        return;
    }
    let test_db = TestDatabase::create(Backend::Mysql).await.unwrap();
    // The pool the service would build: two connections, statements limited to the deadline.
    let db = Database::connect(&DbConfig {
        url: Secret::new(test_db.url.clone()),
        max_connections: 2,
        acquire_timeout_ms: 300,
        statement_timeout_ms: Some(500),
        ..DbConfig::default()
    })
    .await
    .unwrap();
    let mut config = test_config();
    config.server.deadline_ms = 500;
    let app = TestApp::start(Options {
        config,
        db: Some(db),
        ..Options::new(Backend::Mysql)
    })
    .await;
    app.room(42, FIXTURE_KEY).await;
    app.room(43, "other-key").await;
    let Database::Mysql(pool) = &test_db.db else {
        unreachable!()
    };
    // Another client holds room 42's row for the whole test.
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM rooms WHERE id = 42 FOR UPDATE")
        .execute(&mut *locker)
        .await
        .unwrap();
    // More timed-out publishes than the pool has connections; each leaves its statement
    // waiting for the lock on the server.
    let publish = || app.json("on_publish", fixture("on_publish.json"));
    let (a, b, c, d) = tokio::join!(publish(), publish(), publish(), publish());
    for (status, _) in [a, b, c, d] {
        assert_eq!(status, 503);
    }
    // The server ends those statements at the lock wait limit (1 s), so their connections
    // come back and another room can publish (a refused attempt changes nothing, so retry).
    let other = fixture_with(
        "on_publish.json",
        &[("stream", "43".into()), ("param", "?key=other-key".into())],
    );
    let reply = wait_until("room 43 to publish", || async {
        let reply = app.json("on_publish", other.clone()).await;
        (reply.0 == 200).then_some(reply)
    })
    .await;
    locker.rollback().await.unwrap();
    assert_eq!(reply, (200, ACCEPT.to_owned()));
    assert!(app.is_live(43).await);
    app.stop().await;
}

#[tokio::test]
async fn redis_down_keeps_the_database_true_and_retries_the_bus() {
    // Its own Redis, started and stopped by the test.
    if livegate_core::testing::tool("redis-server").is_none() {
        return;
    }
    let port = livegate_tests::free_port();
    let bus = BusConfig {
        url: Secret::new(format!("redis://127.0.0.1:{port}")),
        key_prefix: "lgdown".into(),
        timeout_ms: 200,
        ..BusConfig::default()
    };
    for backend in backends() {
        let app = TestApp::start(Options {
            bus: Some(bus.clone()),
            ..Options::new(backend)
        })
        .await;
        app.room(42, FIXTURE_KEY).await;
        // Redis is not running: the publish still succeeds and the database knows.
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await,
            (200, ACCEPT.to_owned())
        );
        assert!(app.is_live(42).await);
        app.wait_metric("livegate_hooks_bus_retries_total", 1.0)
            .await;

        // Redis comes up: the pending live key lands.
        let dir = tempfile::tempdir().unwrap();
        let server = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _server = livegate_tests::ChildGuard::new("redis-server", server);
        app.wait_bus_live(42, true).await;
        let live = app.bus.live(42).await.unwrap().unwrap();
        assert_eq!(live.stream_id, app.streams(42).await[0].id);
        app.stop().await;
        drop(_server);
        // The next backend starts from a dead Redis again.
        let probe = livegate_core::bus::Bus::connect(&bus).unwrap();
        wait_until("redis to stop", || {
            let probe = probe.clone();
            async move { probe.ping().await.is_err().then_some(()) }
        })
        .await;
    }
}
