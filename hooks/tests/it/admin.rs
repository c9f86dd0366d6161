//! Admin endpoints, configuration files and shutdown.

use livegate_core::config::from_toml_str;
use livegate_core::db::Backend;
use livegate_hooks::Config;

use crate::support::{fixture, TestApp, FIXTURE_KEY};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.room(42, FIXTURE_KEY).await;
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        200
    );
    let get = |path: &str| {
        let url = format!("{}{path}", app.admin);
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(
        get("/readyz").await,
        (
            200,
            r#"{"ready":true,"checks":{"bus":"ok","database":"ok"}}"#.to_owned()
        )
    );
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"livegate_hooks_callbacks_total{dialect="srs",event="publish_start",outcome="accepted"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("livegate_hooks_callback_duration_seconds_count 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[test]
fn the_example_config_parses_and_hides_its_secrets() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/hooks.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let config: Config = from_toml_str(&text).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8085");
    assert_eq!(config.play.token_keys.len(), 1);
    let printed = format!("{config:?}");
    assert!(!printed.contains("livegate-dev-key-change-me"), "{printed}");
}

#[test]
fn config_problems_name_their_keys() {
    let err = from_toml_str::<Config>(
        "[server]\ndeadline_ms = 0\n[play]\nrequire_token = true\ntoken_keys = []\n[bus]\nurl = \"kafka://x\"\n",
    )
    .unwrap_err()
    .to_string();
    for key in ["server.deadline_ms", "play.token_keys", "bus.url"] {
        assert!(err.contains(key), "{err}");
    }
    let err = from_toml_str::<Config>("[server]\nlisten_port = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen_port"), "{err}");
}

#[tokio::test]
async fn shutdown_finishes_pending_bus_writes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.room(42, FIXTURE_KEY).await;
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        200
    );
    let bus = app.bus.clone();
    app.stop().await;
    // Whatever was queued before shutdown was applied before `run` returned.
    assert!(bus.live(42).await.unwrap().is_some());
}

/// Collects everything logged on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_carry_keys_or_tokens() {
    use livegate_core::token::TokenKeys;
    use livegate_core::Secret;
    use serde_json::json;

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("livegate_hooks=trace,livegate_core=trace,info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not scoped: the service's tasks and the other tests share this process, and a
    // scoped subscriber can miss events whose call sites another thread cached first. Logs
    // of concurrently running tests land here too, which only widens the check.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let app = TestApp::spawn(Backend::Sqlite).await;
    app.room(42, FIXTURE_KEY).await;
    let wrong = crate::support::fixture_with(
        "on_publish.json",
        &[("param", json!("?key=wrong-key-value"))],
    );
    assert_eq!(app.json("on_publish", wrong).await.0, 403);
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        200
    );
    let token = TokenKeys::new(&[Secret::new(crate::support::PLAY_KEY)])
        .unwrap()
        .mint(42, 1);
    let play = crate::support::fixture_with(
        "on_play_flv.json",
        &[("param", json!(format!("?token={token}")))],
    );
    assert_eq!(app.json("on_play", play).await.0, 403);
    app.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("publish started"), "nothing captured: {logs}");
    assert!(logs.contains("play token refused"), "{logs}");
    for secret in [FIXTURE_KEY, "wrong-key-value", token.as_str()] {
        assert!(!logs.contains(secret), "`{secret}` was logged:\n{logs}");
    }
}

#[tokio::test]
async fn app_build_wires_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::test_config();
    config.database.url =
        livegate_core::Secret::new(format!("sqlite:{}", dir.path().join("hooks.db").display()));
    let app = livegate_hooks::App::build(config).await.unwrap();
    assert!(matches!(
        app.state().bus(),
        livegate_core::bus::Bus::Memory(_)
    ));
    // Migrated at start: the tables exist.
    assert!(livegate_core::db::rooms::get(app.state().db(), 1)
        .await
        .unwrap()
        .is_none());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}/healthz", admin.local_addr().unwrap());
    let shutdown = livegate_core::service::Shutdown::new();
    let server = tokio::spawn(app.run(listener, admin, shutdown.clone()));
    let body = reqwest::get(admin_url).await.unwrap().text().await.unwrap();
    assert_eq!(body, "ok\n");
    shutdown.request(livegate_core::service::Stop::Drain);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn readiness_names_each_dependency_and_only_the_database_decides() {
    use livegate_core::bus::BusConfig;
    use livegate_core::Secret;

    use crate::support::{FakeSrs, Options};

    // An origin API configured: reported under its name.
    let app = TestApp::start(Options {
        srs: Some(std::sync::Arc::new(FakeSrs::default())),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let body = app.ready().await;
    assert_eq!(
        body,
        (
            200,
            r#"{"ready":true,"checks":{"bus":"ok","database":"ok","origin.srs":"ok"}}"#.to_owned()
        )
    );
    app.stop().await;

    // A bus that cannot be reached is reported, and the service stays ready: its writes wait
    // in the outbox.
    let app = TestApp::start(Options {
        bus: Some(BusConfig {
            url: Secret::new("redis://127.0.0.1:1"),
            timeout_ms: 200,
            ..BusConfig::default()
        }),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let (status, body) = app.ready().await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["checks"]["database"], "ok", "{body}");
    assert!(
        report["checks"]["bus"]
            .as_str()
            .unwrap()
            .starts_with("unavailable: "),
        "{body}"
    );
    // Dropped rather than stopped: there is no Redis to clean up after.
    drop(app);
}
