//! What a viewer may send before its request is looked at: request target and head size, the
//! time to send a head, and how long a path routing will look at.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use livegate_tests::scripted::{Script, ScriptedOrigin};

use crate::support::{raw_exchange, read_response_head, token, ProxyBuilder, TestProxy};

async fn proxy_with(limits: &str) -> (TestProxy, ScriptedOrigin) {
    let origin = ScriptedOrigin::start(Script::Send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(),
    ))
    .await;
    let proxy = ProxyBuilder::new(origin.addr).with(limits).start().await;
    (proxy, origin)
}

#[tokio::test]
async fn a_64_kib_path_is_answered_414_before_routing() {
    let (proxy, origin) = proxy_with("").await;
    let path = format!("/live/{}x.ts?token={}", "-".repeat(64 * 1024), token(42));
    let (status, head) = raw_exchange(
        proxy.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: e\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 414, "{head}");
    assert_eq!(origin.requests(), 0);
    assert!(proxy
        .metrics()
        .await
        .contains("livegate_proxy_request_heads_refused_total{reason=\"target_too_long\"} 1"));
}

#[tokio::test]
async fn a_63_kib_path_within_raised_limits_is_routed() {
    // Routing a hostile 64 KiB path costs milliseconds, not a minute of a worker.
    let (proxy, origin) =
        proxy_with("[limits]\nmax_path_bytes = 70000\nmax_header_bytes = 80000").await;
    // Just under the longest URI `http` accepts (65534 bytes).
    for path in [
        format!("/live/{}x.ts", "-".repeat(63 * 1024)),
        format!(
            "/live/42/{}x.ts",
            format!("{}/", "-".repeat(200)).repeat(315)
        ),
    ] {
        let (status, head) = raw_exchange(
            proxy.addr,
            &format!("GET {path}?token={} HTTP/1.1\r\nHost: e\r\n\r\n", token(42)),
        )
        .await;
        assert!(status == 404 || status == 403, "{head}");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn an_oversized_head_is_answered_431_and_the_connection_closed() {
    let (proxy, origin) = proxy_with("[limits]\nmax_header_bytes = 8192").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /live/42-0.ts HTTP/1.1\r\nHost: e\r\n")
        .await
        .unwrap();
    // An unfinished header block that never ends: the proxy must not keep collecting it.
    let pad = format!("X-Pad: {}\r\n", "p".repeat(1000));
    for _ in 0..16 {
        if stream.write_all(pad.as_bytes()).await.is_err() {
            break;
        }
    }
    let (status, head) = read_response_head(&mut stream).await;
    assert_eq!(status, 431, "{head}");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_head_dribbled_past_the_deadline_is_answered_408() {
    let (proxy, origin) = proxy_with("[limits]\nheader_timeout_ms = 1000").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = b"GET /live/42-0.ts HTTP/1.1\r\nHost: e\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // One byte every 100 ms: each read is quick, the head as a whole is not. Look for the
    // answer before each write: a byte written after the proxy has closed draws a reset, and
    // a reset throws away whatever the kernel had received but we had not read yet.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut answered = None;
    for byte in head.iter() {
        pace.tick().await;
        let mut probe = [0u8; 1];
        if let Ok(result) = tokio::time::timeout(Duration::ZERO, stream.peek(&mut probe)).await {
            answered = Some(result.map(|n| n > 0));
            break;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
    }
    assert!(
        answered.is_some(),
        "the proxy waited for the whole slow head"
    );
    let (status, text) = read_response_head(&mut stream).await;
    assert_eq!(status, 408, "{text}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let (proxy, _origin) = proxy_with("[limits]\nheader_timeout_ms = 500").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(livegate_tests::patience(), stream.read_to_end(&mut buf))
        .await
        .expect("the idle connection was never closed")
        .unwrap();
    assert!(buf.is_empty());
}

#[tokio::test]
async fn keep_alive_requests_each_get_their_own_budget() {
    let (proxy, origin) = proxy_with("").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for round in 1..=3 {
        // A segment each time: the same one again would be answered from the cache.
        let request = format!(
            "GET /live/42-{round}.ts?token={} HTTP/1.1\r\nHost: e\r\n\r\n",
            token(42)
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (status, mut text) = read_response_head(&mut stream).await;
        assert_eq!(status, 200, "round {round}: {text}");
        // The head may have arrived together with the body.
        if !text.ends_with("ok") {
            let mut body = [0u8; 2];
            stream.read_exact(&mut body).await.unwrap();
            text.push_str(&String::from_utf8_lossy(&body));
        }
        assert!(text.ends_with("\r\n\r\nok"), "round {round}: {text}");
    }
    assert_eq!(origin.requests(), 3);
}
