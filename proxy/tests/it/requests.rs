//! What the proxy refuses, and how: tokens, methods, paths, CORS, dead origins.

use base64::Engine as _;
use livegate_core::unix_now;
use livegate_tests::media::make_hls;
use livegate_tests::nginx::{static_origin, Nginx};
use livegate_tests::{free_addr, wait_until};

use crate::support::{client, raw_exchange, token, token_expiring, ProxyBuilder, KEY};

async fn origin() -> (Nginx, tempfile::TempDir) {
    let media = tempfile::tempdir().unwrap();
    make_hls(media.path(), "42", 2);
    let nginx = Nginx::start("", &static_origin(media.path()));
    nginx.ready().await;
    (nginx, media)
}

#[tokio::test]
async fn bad_tokens_are_refused_without_touching_the_origin() {
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr).start().await;
    let forged = livegate_core::token::TokenKeys::new(&[livegate_core::Secret::new("not-our-key")])
        .unwrap()
        .mint(42, unix_now() + 60);
    let cases = [
        ("/live/42.m3u8".to_owned(), "missing"),
        ("/live/42-0.ts?token=".to_owned(), "malformed"),
        ("/live/42.flv?token=%%%".to_owned(), "malformed"),
        (
            format!("/live/42-0.ts?token={}", "A".repeat(600)),
            "malformed",
        ),
        (format!("/live/42.m3u8?token={forged}"), "bad_signature"),
        (
            format!("/live/42-0.ts?token={}", token_expiring(42, unix_now() - 5)),
            "expired",
        ),
        (format!("/live/42.m3u8?token={}", token(43)), "wrong_room"),
        (format!("/live/abc.flv?token={}", token(42)), "wrong_room"),
    ];
    for (path, reason) in &cases {
        let response = client().get(proxy.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path} ({reason})");
        assert_eq!(
            response.text().await.unwrap(),
            "forbidden\n",
            "no detail for the client"
        );
    }
    assert_eq!(
        nginx.origin_log(),
        "",
        "a refused request reached the origin"
    );
    let metrics = proxy.metrics().await;
    for (reason, count) in [
        ("missing", 1),
        ("malformed", 3),
        ("bad_signature", 1),
        ("expired", 1),
        ("wrong_room", 2),
    ] {
        let line = format!("livegate_proxy_token_rejections_total{{reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    let log = proxy.log();
    assert!(log.contains("reason=\"expired\""), "{log}");
    assert!(!log.contains(&forged), "a token was logged");
}

#[tokio::test]
async fn tokens_minted_by_php_with_the_standard_alphabet_are_accepted() {
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr).start().await;
    // What PHP's `urlencode(base64_encode(...))` produces: standard alphabet, padded, encoded.
    use hmac::Mac as _;
    let message = format!("42|{}", unix_now() + 600);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    let raw = format!("{message}|{}", hex::encode(mac.finalize().into_bytes()));
    let standard = base64::engine::general_purpose::STANDARD.encode(raw);
    let encoded: String = url_encode(&standard);
    let response = client()
        .get(proxy.url(&format!("/live/42-0.ts?token={encoded}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Sends a GET with `target` exactly as given and returns the response status.
async fn raw_status(addr: std::net::SocketAddr, target: &str) -> u16 {
    let request = format!("GET {target} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n");
    raw_exchange(addr, &request).await.0
}

fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn methods_paths_and_unknown_routes() {
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr).start().await;
    let t = token(42);

    let post = client()
        .post(proxy.url(&format!("/live/42.flv?token={t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD, OPTIONS");

    // Sent raw: an HTTP client library would normalise these paths before sending them.
    for path in [
        "/live/%2e%2e/42.m3u8",
        "/live/..%2f42.m3u8",
        "/live/42%00.flv",
        "/live/../live/42-0.ts",
        "/live/%2E%2E/live/42-0.ts",
    ] {
        let status = raw_status(proxy.addr, &format!("{path}?token={t}")).await;
        assert_eq!(status, 400, "{path}");
    }
    let response = client().get(proxy.url("/etc/passwd")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    let head = client()
        .head(proxy.url(&format!("/live/42.m3u8?token={t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let log = nginx
        .wait_for_origin_log("the HEAD to be logged", |log| !log.is_empty())
        .await;
    assert_eq!(log.lines().count(), 1, "only the HEAD reached the origin");
}

#[tokio::test]
async fn forwarding_headers_reach_the_origin() {
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr).start().await;
    let response = client()
        .get(proxy.url(&format!("/live/42-0.ts?a=1&token={}&b=2", token(42))))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = nginx
        .wait_for_origin_log("the request to be logged", |log| !log.is_empty())
        .await;
    // Through the cache, parameters that select nothing at the origin stay behind with the
    // token (`cache.key_query_params`).
    assert!(
        log.contains("/live/42-0.ts 200"),
        "only the kept parameters go on: {log}"
    );
    assert!(
        log.contains("xff=203.0.113.9, 127.0.0.1 real=127.0.0.1"),
        "{log}"
    );
}

#[tokio::test]
async fn the_token_goes_on_to_the_origin_by_default() {
    // The shipped origin configs keep their play hooks on: the origin checks the token too.
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr)
        .forward_token(true)
        .start()
        .await;
    let t = token(42);
    let response = client()
        .get(proxy.url(&format!("/live/42-0.ts?token={t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = nginx
        .wait_for_origin_log("the request to be logged", |log| !log.is_empty())
        .await;
    assert!(
        log.contains(&format!("/live/42-0.ts?token={t} 200")),
        "{log}"
    );
}

/// The `Host` the origin saw for one segment request sent with `viewer_host`.
async fn host_seen_by_origin(origin_lines: &str, viewer_host: &str) -> String {
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr)
        .origin(origin_lines)
        .start()
        .await;
    let response = client()
        .get(proxy.url(&format!("/live/42-0.ts?token={}", token(42))))
        .header("Host", viewer_host)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = nginx
        .wait_for_origin_log("the request to be logged", |log| !log.is_empty())
        .await;
    log.trim_end()
        .rsplit_once("host=")
        .map(|(_, host)| host.to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_viewer_does_not_choose_the_origins_host() {
    let origin_addr = host_seen_by_origin("", "vhost.evil.example").await;
    assert!(origin_addr.starts_with("127.0.0.1:"), "{origin_addr}");
    let configured = host_seen_by_origin("host = \"srs.internal\"", "vhost.evil.example").await;
    assert_eq!(configured, "srs.internal");
    let forwarded = host_seen_by_origin("forward_viewer_host = true", "edge.example").await;
    assert_eq!(forwarded, "edge.example");
}

#[tokio::test]
async fn http11_requests_need_exactly_one_host() {
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr).start().await;
    let target = format!("/live/42-0.ts?token={}", token(42));
    for head in [
        format!("GET {target} HTTP/1.1\r\n\r\n"),
        format!("GET {target} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ] {
        assert_eq!(raw_exchange(proxy.addr, &head).await.0, 400, "{head:?}");
    }
    // HTTP/1.0 has no Host requirement.
    let head = format!("GET {target} HTTP/1.0\r\n\r\n");
    assert_eq!(raw_exchange(proxy.addr, &head).await.0, 200);
}

#[tokio::test]
async fn cors_preflight_is_answered_locally() {
    let (nginx, _media) = origin().await;
    let proxy = ProxyBuilder::new(nginx.addr)
        .with("[cors]\nallowed_origins = [\"https://player.example\"]\nmax_age_s = 120")
        .start()
        .await;
    let preflight = client()
        .request(reqwest::Method::OPTIONS, proxy.url("/live/42.m3u8"))
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "range")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://player.example");
    assert_eq!(h["access-control-allow-headers"], "range");
    assert_eq!(h["access-control-max-age"], "120");

    let refused = client()
        .request(reqwest::Method::OPTIONS, proxy.url("/live/42.m3u8"))
        .header("Origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let get = client()
        .get(proxy.url(&format!("/live/42-0.ts?token={}", token(42))))
        .header("Origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.headers()["access-control-allow-origin"],
        "https://player.example"
    );
    let log = nginx
        .wait_for_origin_log("the GET to be logged", |log| !log.is_empty())
        .await;
    assert_eq!(log.lines().count(), 1, "preflights never reach the origin");
}

#[tokio::test]
async fn a_refusing_origin_is_a_502_for_every_kind() {
    let dead = free_addr();
    let proxy = ProxyBuilder::new(dead).start().await;
    let t = token(42);
    // Refused connections are a 502 whatever the kind of request.
    for path in ["/live/42.m3u8", "/live/42-0.ts", "/live/42.flv"] {
        let response = client()
            .get(proxy.url(&format!("{path}?token={t}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{path}");
    }
    let ready = client()
        .get(format!("http://{}/readyz", proxy.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.text().await.unwrap(),
        r#"{"ready":false,"checks":{"origin":"unavailable: no healthy origin"}}"#
    );
}

#[tokio::test]
async fn a_stream_sticks_to_one_origin_and_fails_over_when_it_dies() {
    let media = tempfile::tempdir().unwrap();
    make_hls(media.path(), "42", 2);
    let first = Nginx::start("", &static_origin(media.path()));
    let second = Nginx::start("", &static_origin(media.path()));
    first.ready().await;
    second.ready().await;
    // Every request must reach an origin to show which one serves the stream.
    let proxy = ProxyBuilder::new(first.addr)
        .origins(&[first.addr, second.addr])
        .with("[cache]\nenabled = false")
        .start()
        .await;
    let url = proxy.url(&format!("/live/42-0.ts?token={}", token(42)));
    for _ in 0..10 {
        assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
    }
    livegate_tests::wait_until("both origins to log all 10 requests", || {
        let total = first.origin_log().lines().count() + second.origin_log().lines().count();
        async move { (total == 10).then_some(()) }
    })
    .await;
    let (served_first, served_second) = (
        first.origin_log().lines().count(),
        second.origin_log().lines().count(),
    );
    assert!(
        (served_first, served_second) == (10, 0) || (served_first, served_second) == (0, 10),
        "one stream must stay on one origin: {served_first}/{served_second}"
    );
    let (survivor, victim) = if served_first == 10 {
        (second, first)
    } else {
        (first, second)
    };
    drop(victim);
    wait_until("the proxy to fail over to the surviving origin", || {
        let url = url.clone();
        async move {
            let response = client().get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        }
    })
    .await;
    survivor
        .wait_for_origin_log("the surviving origin to log the request", |log| {
            log.lines().count() >= 1
        })
        .await;
}

#[tokio::test]
async fn a_hung_origin_is_a_504_for_every_kind() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = ProxyBuilder::new(hung.local_addr().unwrap())
        .with("[timeouts]\nupstream_read_s = 1\ndownstream_write_s = 5\nfetch_ms = 1000")
        .start()
        .await;
    let t = token(42);
    // A timeout is a 504 whatever the kind of request.
    for path in ["/live/42.m3u8", "/live/42-0.ts", "/live/42.flv"] {
        let response = client()
            .get(proxy.url(&format!("{path}?token={t}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 504, "{path}");
    }
}

#[tokio::test]
async fn a_chunked_playlist_over_the_cap_is_refused() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // An origin that streams a playlist without Content-Length, 100 KiB in 1 KiB chunks.
    let origin = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let line = "#EXTINF:2.000,\n42-1.ts\n".repeat(1024 / 23);
            for _ in 0..100 {
                response.extend_from_slice(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes());
            }
            response.extend_from_slice(b"0\r\n\r\n");
            let _ = stream.write_all(&response).await;
        }
    });
    let proxy = ProxyBuilder::new(addr)
        .with("[playlist]\nmax_bytes = 4096")
        .start()
        .await;
    let response = client()
        .get(proxy.url(&format!("/live/42.m3u8?token={}", token(42))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    origin.abort();
}

#[tokio::test]
async fn playlists_that_would_grow_too_large_or_have_huge_lines_are_refused() {
    use livegate_tests::scripted::{Script, ScriptedOrigin};
    // 1 MB of one-character URIs: each gains the token, some 150 bytes.
    let many = "#EXTM3U\n".to_owned() + &"a\n".repeat(500_000);
    let long_line = format!("#EXTM3U\n#EXTINF:2,\n{}.ts\n", "a".repeat(20_000));
    for (playlist, reason) in [(many, "output_too_large"), (long_line, "line_too_long")] {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{playlist}",
            playlist.len()
        );
        let origin = ScriptedOrigin::start(Script::Send(response.into_bytes())).await;
        let proxy = ProxyBuilder::new(origin.addr).start().await;
        let response = client()
            .get(proxy.url(&format!("/live/42.m3u8?token={}", token(42))))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{reason}");
        let counted = format!("livegate_proxy_playlists_refused_total{{reason=\"{reason}\"}} 1");
        assert!(proxy.metrics().await.contains(&counted), "{reason}");
    }
}

#[tokio::test]
async fn upgrades_are_refused_and_origin_cors_headers_do_not_leak() {
    let media = tempfile::tempdir().unwrap();
    make_hls(media.path(), "42", 2);
    let nginx = Nginx::start(
        "",
        &livegate_tests::nginx::static_origin_with(
            media.path(),
            &format!(
                "location /open/ {{ alias {}/; add_header Access-Control-Allow-Origin *; }}",
                media.path().display()
            ),
        ),
    );
    nginx.ready().await;
    let proxy = ProxyBuilder::new(nginx.addr)
        .with("[routes]\nsegment = [\"/open/{stream}-{seq}.ts\"]")
        .start()
        .await;
    let t = token(42);
    let response = client()
        .get(proxy.url(&format!("/open/42-0.ts?token={t}")))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin"),
        "the origin's CORS header widened the proxy's policy"
    );

    let upgrade = client()
        .get(proxy.url(&format!("/open/42-0.ts?token={t}")))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status(), 400);
}
