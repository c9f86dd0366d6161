//! The service runtime: one bounded drain, the admin server with named readiness checks
//! (against a real database and bus), listener errors, and the shared command line.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use livegate_core::bus::{Bus, BusConfig};
use livegate_core::config::{EnvSource, Problems, Validate};
use livegate_core::db::testing::{backends, TestDatabase};
use livegate_core::service::{
    admin, bind, ConfigArgs, ConfigFailure, OnDefaults, Readiness, Shutdown, Stop,
};
use livegate_core::telemetry::Registry;
use livegate_core::Secret;
use prometheus_client::metrics::counter::Counter;

#[tokio::test(start_paused = true)]
async fn the_whole_drain_takes_at_most_the_grace_period() {
    let shutdown = Shutdown::new();
    shutdown.request(Stop::Drain);
    let grace = Duration::from_secs(10);
    let started = tokio::time::Instant::now();
    let mut drain = shutdown.drain(grace);
    // A quick step is done and leaves the rest of the budget.
    assert_eq!(drain.step("quick", async { 7 }).await, Some(7));
    assert_eq!(drain.remaining(), grace);
    // A step that never ends takes what is left, and nothing remains for the others.
    assert_eq!(
        drain.step("requests", std::future::pending::<()>()).await,
        None
    );
    assert_eq!(
        drain.step("bus writes", std::future::pending::<()>()).await,
        None
    );
    assert_eq!(
        drain.step("admin", std::future::pending::<()>()).await,
        None
    );
    // Virtual time: exactly one grace period, not one per step.
    assert_eq!(started.elapsed(), grace);
    assert_eq!(drain.finish(), ["requests", "bus writes", "admin"]);
}

#[tokio::test(start_paused = true)]
async fn an_immediate_stop_leaves_nothing_to_drain_and_cuts_a_step_short() {
    let shutdown = Shutdown::new();
    let task = shutdown.spawn(std::future::pending::<()>());
    shutdown.request(Stop::Now);
    assert_eq!(shutdown.requested().await, Stop::Now);
    let mut drain = shutdown.drain(Duration::from_secs(30));
    assert_eq!(drain.remaining(), Duration::ZERO);
    assert!(!drain.tasks().await, "a pending task cannot have finished");
    task.abort();

    // Asked during a drain, it ends the step in progress.
    let shutdown = Shutdown::new();
    shutdown.request(Stop::Drain);
    let mut drain = shutdown.drain(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    let stopper = shutdown.clone();
    let step = drain.step("slow", async move {
        stopper.request(Stop::Now);
        std::future::pending::<()>().await;
    });
    assert_eq!(step.await, None);
    // Cut short at once, not at the end of the grace period.
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(drain.remaining(), Duration::ZERO);
}

#[tokio::test]
async fn a_server_runs_until_the_stop_and_its_requests_are_the_first_drain_step() {
    // A server that ends its connections when the stop token is cancelled.
    let shutdown = Shutdown::new();
    let token = shutdown.token().clone();
    let server = async move {
        token.cancelled().await;
        Ok(())
    };
    let stopper = shutdown.clone();
    let stop = tokio::spawn(async move { stopper.request(Stop::Drain) });
    let (drain, served) = shutdown
        .serve_then_drain(server, Duration::from_secs(5))
        .await;
    stop.await.unwrap();
    assert!(served.is_ok());
    assert!(drain.finish().is_empty());

    // A server that fails first makes the rest of the process stop too.
    let shutdown = Shutdown::new();
    let failing = async { Err(std::io::Error::other("listener gone")) };
    let (drain, served) = shutdown
        .serve_then_drain(failing, Duration::from_secs(5))
        .await;
    assert!(served.is_err());
    assert!(shutdown.token().is_cancelled());
    assert_eq!(shutdown.kind(), Stop::Drain);
    drop(drain);
}

#[tokio::test]
async fn tracked_tasks_are_awaited_by_the_drain() {
    let shutdown = Shutdown::new();
    let token = shutdown.token().clone();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = finished.clone();
    shutdown.spawn(async move {
        token.cancelled().await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    shutdown.request(Stop::Drain);
    let mut drain = shutdown.drain(livegate_tests::patience());
    assert!(drain.tasks().await);
    assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn the_admin_server_reports_metrics_health_and_each_readiness_check() {
    for backend in backends() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        let mut registry = Registry::with_prefix("kit");
        let served = Counter::<u64>::default();
        registry.register("requests", "Requests served", served.clone());
        served.inc();

        let db = test_db.db.clone();
        let live_bus = Bus::connect(&BusConfig {
            url: Secret::new(livegate_core::testing::redis_url().unwrap_or("memory:".into())),
            ..BusConfig::default()
        })
        .unwrap();
        // Nothing listens on port 1: a real bus that cannot be reached.
        let dead_bus = Bus::connect(&BusConfig {
            url: Secret::new("redis://127.0.0.1:1"),
            timeout_ms: 200,
            ..BusConfig::default()
        })
        .unwrap();
        let readiness = |bus: Bus| {
            let db = db.clone();
            Readiness::new(Duration::from_secs(5))
                .check("database", move || {
                    let db = db.clone();
                    async move { db.ping().await }
                })
                .check("bus", move || {
                    let bus = bus.clone();
                    async move { bus.ping().await }
                })
        };
        let registry = Arc::new(registry);
        let shutdown = Shutdown::new();
        let listener = bind("127.0.0.1:0".parse().unwrap(), "admin.listen")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = shutdown.spawn(admin::serve(
            listener,
            admin::router(registry.clone(), readiness(dead_bus)),
            shutdown.token().clone(),
        ));

        let (status, body) = get(&format!("http://{addr}/metrics")).await;
        assert_eq!(status, 200);
        assert!(body.contains("livegate_kit_requests_total 1"), "{body}");
        assert_eq!(get(&format!("http://{addr}/healthz")).await.0, 200);
        let (status, body) = get(&format!("http://{addr}/readyz")).await;
        assert_eq!(status, 503, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(report["ready"], false, "{body}");
        assert_eq!(report["checks"]["database"], "ok", "{backend:?}: {body}");
        let bus = report["checks"]["bus"].as_str().unwrap();
        assert!(bus.starts_with("unavailable: "), "{body}");

        // The same service with a bus that answers is ready.
        let listener = bind("127.0.0.1:0".parse().unwrap(), "admin.listen")
            .await
            .unwrap();
        let ready_addr = listener.local_addr().unwrap();
        shutdown.spawn(admin::serve(
            listener,
            admin::router(registry.clone(), readiness(live_bus)),
            shutdown.token().clone(),
        ));
        let (status, body) = get(&format!("http://{ready_addr}/readyz")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            r#"{"ready":true,"checks":{"bus":"ok","database":"ok"}}"#
        );

        shutdown.request(Stop::Drain);
        let mut drain = shutdown.drain(livegate_tests::patience());
        assert!(drain.step("admin", server).await.is_some());
        assert!(drain.tasks().await);
    }
}

#[tokio::test]
async fn a_report_only_check_is_shown_but_does_not_decide() {
    let readiness = Readiness::new(Duration::from_millis(50))
        .check("database", || async { Ok::<(), String>(()) })
        .report_only("origin", || async {
            std::future::pending::<Result<(), String>>().await
        });
    let report = readiness.evaluate().await;
    assert!(report.ready);
    assert_eq!(report.checks["database"], "ok");
    assert_eq!(
        report.checks["origin"],
        "unavailable: no answer within 50 ms"
    );
}

#[tokio::test]
async fn a_listener_error_names_the_key_and_the_address() {
    let taken = bind("127.0.0.1:0".parse().unwrap(), "server.listen")
        .await
        .unwrap();
    let addr = taken.local_addr().unwrap();
    let err = bind(addr, "server.listen").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("server.listen {addr}: address already in use")
    );
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Sample {
    port: u16,
}

impl Validate for Sample {
    fn validate(&self, problems: &mut Problems) {
        problems.check(self.port != 0, "port", "must be set");
    }
}

#[test]
fn every_binary_takes_its_configuration_the_same_way() {
    use clap::CommandFactory as _;
    Cli::command().debug_assert();
    assert_eq!(ConfigArgs::config_variable("api"), "LIVEGATE_API_CONFIG");
    assert_eq!(ConfigArgs::env_prefix("api"), "LIVEGATE_API__");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.toml");
    std::fs::write(&file, "port = 8080\n").unwrap();
    let none = EnvSource::default();
    for argv in [["api", "-c"], ["api", "--config"]] {
        let cli = Cli::parse_from(argv.iter().copied().chain([file.to_str().unwrap()]));
        let config: Sample = cli
            .config
            .load_with("api", OnDefaults::Refuse, None, &none)
            .unwrap();
        assert_eq!(config.port, 8080);
    }
    // The variable names the file when the flag does not.
    let cli = Cli::parse_from(["api"]);
    let config: Sample = cli
        .config
        .load_with(
            "api",
            OnDefaults::Refuse,
            Some(file.display().to_string()),
            &none,
        )
        .unwrap();
    assert_eq!(config.port, 8080);

    // Neither: the binary says how to give one, and exits 64.
    let err = cli
        .config
        .load_with::<Sample>("api", OnDefaults::Refuse, None, &none)
        .unwrap_err();
    assert!(matches!(err, ConfigFailure::Missing { .. }));
    assert_eq!(err.exit_code(), 64);
    let text = err.to_string();
    assert!(text.contains("-c/--config FILE"), "{text}");
    assert!(text.contains("LIVEGATE_API_CONFIG=FILE"), "{text}");

    // A service that documents its defaults runs on them (and the environment).
    let env = EnvSource::from_pairs("LIVEGATE_API__", [("LIVEGATE_API__PORT", "9000")]);
    let config: Sample = cli
        .config
        .load_with("api", OnDefaults::Run, None, &env)
        .unwrap();
    assert_eq!(config.port, 9000);
    let err = cli
        .config
        .load_with::<Sample>("api", OnDefaults::Run, None, &none)
        .unwrap_err();
    // Defaults that do not make a configuration: what is wrong, and how to give a file.
    assert!(
        matches!(err, ConfigFailure::DefaultsInvalid { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("port: must be set"), "{text}");
    assert!(text.contains("-c/--config FILE"), "{text}");
    assert!(text.contains("LIVEGATE_API_CONFIG=FILE"), "{text}");
    assert_eq!(err.exit_code(), 64);
    // A file with problems needs no such hint.
    std::fs::write(&file, "port = 0\n").unwrap();
    let cli = Cli::parse_from(["api", "-c", file.to_str().unwrap()]);
    let err = cli
        .config
        .load_with::<Sample>("api", OnDefaults::Run, None, &none)
        .unwrap_err();
    assert!(matches!(err, ConfigFailure::Invalid { .. }), "{err:?}");
    assert!(!err.to_string().contains("no configuration file"), "{err}");
}
