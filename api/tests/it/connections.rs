//! Both listeners of the API close connections whose request head never completes, at the
//! configured `server.header_timeout_ms`, while ordinary requests are served.

use livegate_core::db::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Options, TestApp};

/// Sends the start of a request head and nothing more, then reads until the server closes
/// the connection (within the test's patience); returns what it answered, if anything.
async fn partial_head_then_silence(base: &str) -> Vec<u8> {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-slow: ")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(livegate_tests::patience(), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{base} kept a connection with a partial head open"));
    seen
}

#[tokio::test]
async fn an_unfinished_request_head_is_cut_off_on_the_api_and_admin_listeners() {
    let mut options = Options::new(Backend::Sqlite, None);
    options.config.server.header_timeout_ms = 200;
    let app = TestApp::start(options).await;

    for base in [&app.base, &app.admin] {
        let seen = partial_head_then_silence(base).await;
        assert!(
            seen.is_empty() || seen.starts_with(b"HTTP/1.1 408"),
            "{base}: {}",
            String::from_utf8_lossy(&seen)
        );
    }

    // Complete requests are served as before, on both.
    let reply = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let reply = app
        .client
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    app.stop().await;
}
