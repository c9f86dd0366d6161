//! Stopping: the whole drain shares one grace period, and an immediate stop abandons it.

use livegate_core::db::{Backend, Database, DbConfig};
use livegate_core::service::Stop;
use livegate_core::Secret;
use livegate_tests::patience;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{fixture, test_config, Options, TestApp};

/// A database that accepts connections and never answers, waited for far beyond the
/// patience: a publish on it outlives its request for as long as the service lets it.
async fn hung_database() -> (std::net::TcpListener, Database) {
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    let db = Database::connect(&DbConfig {
        url: Secret::new(format!("mysql://u:p@127.0.0.1:{port}/none")),
        acquire_timeout_ms: u64::try_from(patience().as_millis() * 10).unwrap(),
        ..DbConfig::default()
    })
    .await
    .unwrap();
    (hung, db)
}

/// Opens a hook request whose body never arrives, and returns once the service is waiting
/// for it (it asked for the body with `100 Continue`).
async fn unfinished_request(app: &TestApp) -> TcpStream {
    let addr = app.base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/hook/on_publish HTTP/1.1\r\nHost: hooks\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("100 Continue") {
        let mut chunk = [0u8; 256];
        let read = tokio::time::timeout(patience(), stream.read(&mut chunk))
            .await
            .expect("the service asks for the body")
            .unwrap();
        assert!(read > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..read]);
    }
    stream
}

/// A service with a request in flight and a publish past its deadline, both of which would
/// run for longer than `grace_ms`.
async fn stuck_app(grace_ms: u64) -> (TestApp, TcpStream, std::net::TcpListener) {
    let (hung, db) = hung_database().await;
    let mut config = test_config();
    config.server.deadline_ms = 200;
    config.server.shutdown_grace_ms = grace_ms;
    let app = TestApp::start(Options {
        config,
        db: Some(db),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    // The database never answers: the origin hears 503, the publish goes on.
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        503
    );
    let unfinished = unfinished_request(&app).await;
    (app, unfinished, hung)
}

#[tokio::test]
async fn the_whole_drain_takes_one_grace_period() {
    // Over half the patience: two steps that each waited a whole grace period (requests,
    // then the publish past its deadline) would outlast it.
    let grace_ms = u64::try_from(patience().as_millis() * 6 / 10).unwrap();
    let (app, _unfinished, _hung) = stuck_app(grace_ms).await;
    // Stops within the patience, or fails.
    app.stop_as(Stop::Drain).await;
}

#[tokio::test]
async fn an_immediate_stop_abandons_the_drain() {
    let grace_ms = u64::try_from(patience().as_millis() * 10).unwrap();
    let (app, _unfinished, _hung) = stuck_app(grace_ms).await;
    app.stop_as(Stop::Now).await;
}
