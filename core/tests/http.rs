//! The kit's HTTP server against raw sockets: slow, idle and oversized request heads are cut
//! off at their limits, while ordinary requests, kept-alive connections, upgrades and the
//! graceful stop keep working.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use livegate_core::service::{http, CancellationToken, HttpLimits};
use livegate_tests::patience;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
}

async fn start(router: Router, limits: HttpLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(http::serve(listener, router, limits, stop.clone()));
    Server { addr, stop, handle }
}

fn hello() -> Router {
    Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("hi {peer}") }),
    )
}

fn limits(header_read_ms: u64, idle_ms: u64) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(header_read_ms),
        keep_alive_idle: Duration::from_millis(idle_ms),
        ..HttpLimits::default()
    }
}

/// Reads until the server closes the connection (or resets it), within the test's patience;
/// returns what was read and when the end came.
async fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(patience(), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server should have closed the connection");
    (seen, Instant::now())
}

/// Reads one response with a `content-length` from `stream`: its head and body as text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(patience(), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .map_or(0, |n| n.parse::<usize>().unwrap());
                if body.len() >= length {
                    return text;
                }
            }
        }
    })
    .await
    .expect("a whole response")
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";

#[tokio::test]
async fn a_partial_head_followed_by_silence_is_closed_at_the_header_timeout() {
    let server = start(hello(), limits(300, 60_000)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let sent = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: ")
        .await
        .unwrap();
    let (seen, closed) = read_to_close(&mut stream).await;
    assert!(
        seen.is_empty() || seen.starts_with(b"HTTP/1.1 408"),
        "{seen:?}"
    );
    assert!(closed - sent >= Duration::from_millis(300));
    server.stop.cancel();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_closed_at_the_header_timeout() {
    let server = start(hello(), limits(400, 60_000)).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Each byte comes well within the timeout: only a deadline for the whole head ends this.
    let trickle = tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(patience(), reader.read(&mut buf))
        .await
        .expect("the server should have closed the connection");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    tokio::time::timeout(patience(), trickle)
        .await
        .expect("the writer sees the closed connection")
        .unwrap();
    server.stop.cancel();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() {
    let server = start(hello(), limits(300, 60_000)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (seen, _) = read_to_close(&mut stream).await;
    assert!(seen.is_empty(), "{seen:?}");
    server.stop.cancel();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout_and_closes_when_idle_too_long() {
    let server = start(hello(), limits(100, 1500)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("hi 127.0.0.1:"), "{first}");

    // Idle for several header timeouts (the scenario, not a wait for a result): the
    // connection is still there for the next request.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stream.write_all(GET).await.unwrap();
    let answered = Instant::now();
    let second = read_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");

    let (seen, closed) = read_to_close(&mut stream).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert!(
        closed - answered >= Duration::from_millis(1500),
        "closed after {:?}, before the idle timeout",
        closed - answered
    );
    server.stop.cancel();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_head_larger_than_the_cap_is_answered_431() {
    let server = start(
        hello(),
        HttpLimits {
            max_header_bytes: 8192,
            ..HttpLimits::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    // The server may close before it has read everything: a write error is part of the answer.
    let _ = stream.write_all(big.as_bytes()).await;
    let (seen, _) = read_to_close(&mut stream).await;
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 431"), "{seen}");

    // Within the cap, the same request is served.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let fits = format!(
        "GET / HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n",
        "a".repeat(4 * 1024)
    );
    stream.write_all(fits.as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop.cancel();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_upgraded_connection_carries_the_new_protocol() {
    let (upgraded_tx, mut upgraded_rx) = mpsc::channel(1);
    let router = Router::new().route(
        "/echo",
        get(move |mut request: Request| {
            let upgraded_tx = upgraded_tx.clone();
            async move {
                upgraded_tx
                    .send(hyper::upgrade::on(&mut request))
                    .await
                    .unwrap();
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header(header::CONNECTION, "upgrade")
                    .header(header::UPGRADE, "echo")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }
        }),
    );
    let server = start(router, limits(200, 200)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"GET /echo HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    let upgraded = upgraded_rx.recv().await.unwrap().await.unwrap();
    let mut upgraded = TokioIo::new(upgraded);
    // Longer than both HTTP deadlines: they concern request heads, not the new protocol.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    upgraded.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    upgraded.write_all(b"pong").await.unwrap();
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
    server.stop.cancel();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn on_stop_the_request_in_flight_finishes_and_idle_connections_close() {
    let (entered_tx, entered_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let entered = std::sync::Mutex::new(Some(entered_tx));
    let release = std::sync::Mutex::new(Some(release_rx));
    let state = std::sync::Arc::new((entered, release));
    let router = Router::new().route("/", get(|| async { "idle" })).route(
        "/slow",
        get(move || {
            let state = state.clone();
            async move {
                let entered = state.0.lock().unwrap().take();
                let release = state.1.lock().unwrap().take();
                entered.unwrap().send(()).unwrap();
                release.unwrap().await.unwrap();
                "finished".into_response()
            }
        }),
    );
    let server = start(router, HttpLimits::default()).await;

    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));

    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    entered_rx.await.unwrap();

    server.stop.cancel();
    // The idle connection closes at once, well before its keep-alive timeout.
    let (seen, _) = read_to_close(&mut idle).await;
    assert!(seen.is_empty(), "{seen:?}");
    // New connections are refused: the listener is closed.
    tokio::time::timeout(patience(), async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener should close");
    assert!(!server.handle.is_finished(), "a request is still in flight");

    release_tx.send(()).unwrap();
    let (answer, _) = read_to_close(&mut busy).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("finished"), "{answer}");
    tokio::time::timeout(patience(), server.handle)
        .await
        .expect("the server returns once its connections are done")
        .unwrap()
        .unwrap();
}
