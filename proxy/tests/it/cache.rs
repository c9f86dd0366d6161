//! The HLS cache: later viewers served without the origin, concurrent misses coalesced into
//! one origin request whose bytes reach every viewer as they arrive, bodies cut short never
//! kept, LL-HLS blocking reloads shared but never kept, purges.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use livegate_core::unix_now;
use livegate_tests::media::make_hls;
use livegate_tests::nginx::{static_origin, Nginx};
use livegate_tests::scripted::{Script, ScriptedOrigin};
use livegate_tests::wait_until;

use crate::support::{
    client, read_response, streaming_client, token, token_expiring, ProxyBuilder,
};

fn ok_response(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn get(url: String) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

/// Incompressible bytes, the same on every call.
fn segment_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A segment's response head and its first `sent_first` body bytes.
fn segment_start(body: &[u8], sent_first: usize) -> Vec<u8> {
    let mut first = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    first.extend_from_slice(&body[..sent_first]);
    first
}

/// An origin answer of `body` with its `Content-Length`, whose first `sent_first` body bytes
/// go out at once and the rest only once the origin is released.
fn split_segment(body: &[u8], sent_first: usize) -> Script {
    Script::SendRestWhenReleased {
        first: segment_start(body, sent_first),
        rest: body[sent_first..].to_vec(),
    }
}

/// Reads a response body until at least one byte has arrived.
async fn first_bytes(response: &mut reqwest::Response) -> Vec<u8> {
    let chunk = tokio::time::timeout(livegate_tests::patience(), response.chunk())
        .await
        .expect("the first bytes in time")
        .unwrap()
        .expect("a body");
    chunk.to_vec()
}

/// Reads the rest of a body after `start`.
async fn rest_of(mut response: reqwest::Response, start: Vec<u8>) -> Vec<u8> {
    let mut body = start;
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    body
}

#[tokio::test]
async fn later_viewers_with_other_tokens_are_served_from_the_cache() {
    let media = tempfile::tempdir().unwrap();
    make_hls(media.path(), "42", 4);
    // The origin marks everything `no-cache`, as live origins do; the shield keeps it anyway.
    let nginx = Nginx::start("", &static_origin(media.path()));
    nginx.ready().await;
    let proxy = ProxyBuilder::new(nginx.addr)
        .forward_token(false)
        .with("[cache]\nplaylist_ttl_ms = 600000")
        .start()
        .await;
    // Two viewers, two different tokens for the same room.
    let first = token(42);
    let second = token_expiring(42, unix_now() + 7200);
    assert_ne!(first, second);

    let playlist = |token: &str| proxy.url(&format!("/live/42.m3u8?token={token}"));
    let miss = get(playlist(&first)).await;
    assert_eq!(miss.status(), 200);
    assert_eq!(miss.headers()["x-cache"], "MISS");
    let hit = get(playlist(&second)).await;
    assert_eq!(hit.status(), 200);
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert!(hit.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-store"));
    // The cached bytes are rewritten for each viewer: the second sees only its own token.
    let body = hit.text().await.unwrap();
    assert!(body.contains(&second) && !body.contains(&first), "{body}");
    let segment = body
        .lines()
        .find(|line| line.ends_with(&format!("?token={second}")))
        .expect("a segment URI")
        .to_owned();

    let miss = get(proxy.url(&format!("/live/{segment}"))).await;
    assert_eq!(miss.status(), 200);
    assert_eq!(miss.headers()["x-cache"], "MISS");
    let bytes = miss.bytes().await.unwrap();
    let other = segment.replace(&second, &first);
    let hit = get(proxy.url(&format!("/live/{other}"))).await;
    assert_eq!(hit.headers()["x-cache"], "HIT");
    let cache_control = hit.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(
        cache_control.starts_with("public, max-age="),
        "{cache_control}"
    );
    assert!(hit.headers().contains_key("age"));
    assert_eq!(hit.bytes().await.unwrap(), bytes);

    // The origin was asked once for each, and never saw a token.
    let log = nginx.origin_log();
    let segment_path = segment.split('?').next().unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("/live/42.m3u8"))
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with(&format!("/live/{segment_path}")))
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains("token="), "{log}");
}

#[tokio::test]
async fn viewers_get_a_segment_as_the_origin_sends_it_and_later_ones_from_memory() {
    let body = segment_bytes(512 * 1024);
    let origin = ScriptedOrigin::start(split_segment(&body, 256 * 1024)).await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let url = |i: u64| {
        proxy.url(&format!(
            "/live/42-9.ts?token={}",
            token_expiring(42, unix_now() + 3600 + i)
        ))
    };
    // The origin has sent half of the segment and waits: both viewers already get bytes.
    let mut first = streaming_client().get(url(0)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(first.headers()["content-length"], "524288");
    let first_start = first_bytes(&mut first).await;
    let mut second = streaming_client().get(url(1)).send().await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["x-cache"], "COALESCED");
    let second_start = first_bytes(&mut second).await;
    for start in [&first_start, &second_start] {
        assert!(!start.is_empty() && start.len() <= 256 * 1024);
        assert_eq!(start[..], body[..start.len()]);
    }
    assert_eq!(origin.requests(), 1);

    origin.release();
    assert!(rest_of(first, first_start).await == body);
    assert!(rest_of(second, second_start).await == body);
    let hit = get(url(2)).await;
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert!(hit.bytes().await.unwrap() == body);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_segment_cut_short_by_the_origin_fails_its_viewers_and_is_not_kept() {
    let body = segment_bytes(256 * 1024);
    // The origin promises the whole length, sends half, and closes once released.
    let origin = ScriptedOrigin::start(Script::SendRestWhenReleased {
        first: segment_start(&body, 128 * 1024),
        rest: Vec::new(),
    })
    .await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let url = proxy.url(&format!("/live/42-10.ts?token={}", token(42)));
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let mut response = streaming_client().get(url.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let start = first_bytes(&mut response).await;
        viewers.push((response, start));
    }
    origin.release();
    for (mut response, start) in viewers {
        let mut received = start.len();
        let ended = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => received += chunk.len(),
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        assert!(ended.is_err(), "a short body must not end like a whole one");
        assert!(received < body.len());
    }
    // Counted under the status their heads went out with, and as cut short.
    wait_until("both short answers to be counted", || {
        let proxy = &proxy;
        async move {
            let metrics = proxy.metrics().await;
            metrics
                .contains("livegate_proxy_responses_cut_short_total{kind=\"segment\"} 2")
                .then_some(())
        }
    })
    .await;
    // Nothing was kept: the next viewer makes the proxy ask the origin again.
    let again = streaming_client().get(url).send().await.unwrap();
    assert_ne!(
        again.headers().get("x-cache").map(|v| v.as_bytes()),
        Some(&b"HIT"[..])
    );
    drop(again);
    wait_until("the origin to be asked again", || {
        let asked = origin.requests();
        async move { (asked == 2).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_thousand_concurrent_misses_make_one_origin_request() {
    let body = segment_bytes(128 * 1024);
    let origin = ScriptedOrigin::start(split_segment(&body, 64 * 1024)).await;
    // The origin stays silent until every viewer is in, however long that takes here.
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[timeouts]\nupstream_read_s = 300\ndownstream_write_s = 300")
        .start()
        .await;
    let viewers = 1000;
    let client = streaming_client();
    let started = Arc::new(AtomicUsize::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let requests: Vec<_> = (0..viewers)
        .map(|i| {
            let url = proxy.url(&format!(
                "/live/42-7.ts?token={}",
                token_expiring(42, unix_now() + 3600 + i)
            ));
            let started = started.clone();
            let mut released = released.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let mut response = client.get(url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let source = response.headers()["x-cache"].to_str().unwrap().to_owned();
                let start = first_bytes(&mut response).await;
                started.fetch_add(1, Ordering::SeqCst);
                // Nothing more is read until every viewer has its first bytes.
                released.wait_for(|r| *r).await.unwrap();
                (source, rest_of(response, start).await)
            })
        })
        .collect();
    // Every viewer has the first half while the origin still holds the second.
    wait_until("every viewer to get its first bytes", || {
        let started = started.load(Ordering::SeqCst);
        async move { (started == viewers as usize).then_some(()) }
    })
    .await;
    assert_eq!(origin.requests(), 1);
    origin.release();
    release.send_replace(true);
    let mut sources = Vec::new();
    for request in requests {
        let (source, received) = request.await.unwrap();
        assert!(received == body, "every viewer gets the whole segment");
        sources.push(source);
    }
    assert_eq!(
        origin.requests(),
        1,
        "one origin request for {viewers} viewers"
    );
    assert_eq!(sources.iter().filter(|s| *s == "MISS").count(), 1);
    assert_eq!(
        sources.iter().filter(|s| *s == "COALESCED").count(),
        viewers as usize - 1
    );
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(r#"livegate_proxy_cache_lookups_total{kind="segment",result="miss"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn blocking_reloads_are_shared_while_they_wait_but_not_kept() {
    let playlist =
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1\n#EXTINF:4,\n42-5.ts\n";
    let origin = ScriptedOrigin::start(Script::SendWhenReleased(ok_response(
        "application/vnd.apple.mpegurl",
        playlist,
    )))
    .await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[cache]\nplaylist_ttl_ms = 600000")
        .start()
        .await;
    let reload = |i: u64| {
        proxy.url(&format!(
            "/live/42.m3u8?_HLS_msn=5&_HLS_part=1&token={}",
            token_expiring(42, unix_now() + 3600 + i)
        ))
    };
    let waiting: Vec<_> = (0..20).map(|i| tokio::spawn(get(reload(i)))).collect();
    wait_until("every reload to wait for the first one's", || async {
        let metrics = proxy.metrics().await;
        metrics
            .contains(
                r#"livegate_proxy_cache_lookups_total{kind="playlist",result="coalesced"} 19"#,
            )
            .then_some(())
    })
    .await;
    assert_eq!(origin.requests(), 1);
    origin.release();
    for request in waiting {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("42-5.ts"));
    }
    assert_eq!(origin.requests(), 1);
    // The origin got the blocking query as sent.
    let head = &origin.heads()[0];
    assert!(
        head.starts_with("GET /live/42.m3u8?_HLS_msn=5&_HLS_part=1"),
        "{head}"
    );
    // The same reload later goes to the origin again instead of being answered from memory.
    let again = get(reload(100)).await;
    assert_eq!(again.headers()["x-cache"], "MISS");
    assert_eq!(origin.requests(), 2);
}

const LIVE_PLAYLIST: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n42-5.ts\n";

/// The request line of an origin request head.
fn request_line(head: &str) -> &str {
    head.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn unknown_query_parameters_share_one_entry_and_never_reach_the_origin() {
    let origin = ScriptedOrigin::start(Script::Send(ok_response(
        "application/vnd.apple.mpegurl",
        LIVE_PLAYLIST,
    )))
    .await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[cache]\nplaylist_ttl_ms = 600000")
        .start()
        .await;
    for path in ["/live/42.m3u8", "/live/42-5.ts"] {
        let asked = origin.requests();
        let first = get(proxy.url(&format!("{path}?token={}&x=1", token(42)))).await;
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["x-cache"], "MISS", "{path}");
        for junk in ["x=2", "utm_source=a&x=3", "x=1&x=1&%78=4", "_hls_msn=5"] {
            let again = get(proxy.url(&format!("{path}?{junk}&token={}", token(42)))).await;
            assert_eq!(again.status(), 200);
            assert_eq!(again.headers()["x-cache"], "HIT", "{path}?{junk}");
        }
        assert_eq!(
            origin.requests(),
            asked + 1,
            "one origin request for {path}"
        );
        let heads = origin.heads();
        let line = request_line(heads.last().unwrap());
        assert_eq!(line, format!("GET {path} HTTP/1.1"));
    }
}

#[tokio::test]
async fn a_forwarded_token_goes_on_alone_beside_the_kept_parameters() {
    let origin = ScriptedOrigin::start(Script::Send(ok_response(
        "application/vnd.apple.mpegurl",
        LIVE_PLAYLIST,
    )))
    .await;
    let proxy = ProxyBuilder::new(origin.addr)
        .forward_token(true)
        .with("[cache]\nplaylist_ttl_ms = 600000")
        .start()
        .await;
    let first = token(42);
    let miss = get(proxy.url(&format!(
        "/live/42.m3u8?x=1&_HLS_skip=YES&token={first}&token=other"
    )))
    .await;
    assert_eq!(miss.headers()["x-cache"], "MISS");
    // Another viewer's token does not make another entry.
    let second = token_expiring(42, unix_now() + 7200);
    let hit = get(proxy.url(&format!("/live/42.m3u8?token={second}&_HLS_skip=YES&x=2"))).await;
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert_eq!(origin.requests(), 1);
    assert_eq!(
        request_line(&origin.heads()[0]),
        format!("GET /live/42.m3u8?_HLS_skip=YES&token={first} HTTP/1.1")
    );
}

#[tokio::test]
async fn ll_hls_directives_reach_the_origin_and_are_keyed_apart_in_any_order() {
    let origin = ScriptedOrigin::start(Script::SendWhenReleased(ok_response(
        "application/vnd.apple.mpegurl",
        LIVE_PLAYLIST,
    )))
    .await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[cache]\nplaylist_ttl_ms = 600000")
        .start()
        .await;
    let url = |i: u64, query: &str| {
        proxy.url(&format!(
            "/live/42.m3u8?{query}&token={}",
            token_expiring(42, unix_now() + 3600 + i)
        ))
    };
    let coalesced = |count: usize| {
        let proxy = &proxy;
        async move {
            let metrics = proxy.metrics().await;
            metrics
                .contains(&format!(
                    "livegate_proxy_cache_lookups_total{{kind=\"playlist\",result=\"coalesced\"}} {count}"
                ))
                .then_some(())
        }
    };
    // One blocking reload waits at the origin; the same one, written in another order and
    // with a parameter of no meaning, shares its wait; a reload for a later part does not.
    let first = tokio::spawn(get(url(0, "_HLS_msn=5&_HLS_part=1")));
    wait_until("the first reload to reach the origin", || {
        let asked = origin.requests();
        async move { (asked == 1).then_some(()) }
    })
    .await;
    let reordered = tokio::spawn(get(url(1, "x=7&_HLS_part=1&_HLS_msn=5")));
    wait_until("the reordered reload to wait for the first", || {
        coalesced(1)
    })
    .await;
    let later = tokio::spawn(get(url(2, "_HLS_part=0&_HLS_msn=6")));
    wait_until("the later reload to reach the origin", || {
        let asked = origin.requests();
        async move { (asked == 2).then_some(()) }
    })
    .await;
    origin.release();
    for (request, source) in [(first, "MISS"), (reordered, "COALESCED"), (later, "MISS")] {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-cache"], source);
    }
    let lines: Vec<String> = origin
        .heads()
        .iter()
        .map(|head| request_line(head).to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "GET /live/42.m3u8?_HLS_msn=5&_HLS_part=1 HTTP/1.1",
            "GET /live/42.m3u8?_HLS_msn=6&_HLS_part=0 HTTP/1.1",
        ]
    );

    // A delta update is kept under its directive, whatever else the query holds, apart from
    // the full playlist.
    let skip = get(url(3, "_HLS_skip=YES&x=1")).await;
    assert_eq!(skip.headers()["x-cache"], "MISS");
    let skip_again = get(url(4, "x=2&_HLS_skip=YES")).await;
    assert_eq!(skip_again.headers()["x-cache"], "HIT");
    let full = get(url(5, "x=3")).await;
    assert_eq!(full.headers()["x-cache"], "MISS");
    assert_eq!(origin.requests(), 4);
    let heads = origin.heads();
    assert_eq!(
        request_line(&heads[2]),
        "GET /live/42.m3u8?_HLS_skip=YES HTTP/1.1"
    );
    assert_eq!(request_line(&heads[3]), "GET /live/42.m3u8 HTTP/1.1");
}

#[tokio::test]
async fn purges_drop_one_room_or_everything() {
    let origin = ScriptedOrigin::start(Script::Send(ok_response("video/mp2t", "ts"))).await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let admin = |query: &str| format!("http://{}/cache/purge{query}", proxy.admin);
    for room in [42, 43] {
        let response = get(proxy.url(&format!("/live/{room}-1.ts?token={}", token(room)))).await;
        assert_eq!(response.headers()["x-cache"], "MISS");
    }
    let asked = origin.requests();

    let purged = client().post(admin("?room=42")).send().await.unwrap();
    assert_eq!(purged.status(), 200);
    assert_eq!(purged.text().await.unwrap().trim(), r#"{"purged":1}"#);
    let again = get(proxy.url(&format!("/live/42-1.ts?token={}", token(42)))).await;
    assert_eq!(again.headers()["x-cache"], "MISS");
    let kept = get(proxy.url(&format!("/live/43-1.ts?token={}", token(43)))).await;
    assert_eq!(kept.headers()["x-cache"], "HIT");
    assert_eq!(origin.requests(), asked + 1);

    let everything = client().post(admin("")).send().await.unwrap();
    assert_eq!(everything.text().await.unwrap().trim(), r#"{"purged":2}"#);
    let refused = client()
        .post(admin("?room=forty-two"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("room"));
    assert_eq!(client().get(admin("")).send().await.unwrap().status(), 405);
}

#[tokio::test]
async fn a_disabled_cache_relays_segments_as_the_proxy_path_does() {
    // A body of unknown length (it ends when the origin closes), with fields of the origin's
    // own that must reach the viewer as they were.
    let response = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: video/mp2t\r\nETag: \"seg-1\"\r\nX-Origin: kept\r\nConnection: close\r\n\r\n";
    let body = vec![7u8; 200_000];
    let origin = ScriptedOrigin::start(Script::Send([&response[..], &body[..]].concat())).await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[cache]\nenabled = false")
        .start()
        .await;
    let url = proxy.url(&format!("/live/42-1.ts?token={}&v=1", token(42)));
    let fetch = |range: Option<&'static str>| {
        let mut request = client()
            .get(url.clone())
            .header("connection", "keep-alive")
            .header("x-viewer", "as sent");
        if let Some(range) = range {
            request = request.header("range", range);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let mut headers: Vec<String> = response
                .headers()
                .iter()
                .filter(|(name, _)| *name != "date")
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
                .collect();
            headers.sort();
            (status, headers, response.bytes().await.unwrap())
        }
    };
    // A range goes through Pingora's proxy path; the same request without one is relayed.
    let (proxied_status, proxied_headers, proxied_body) = fetch(Some("bytes=0-")).await;
    let (status, headers, relayed_body) = fetch(None).await;
    assert_eq!(status, 200);
    assert_eq!((status, &headers), (proxied_status, &proxied_headers));
    assert!(
        headers.contains(&"etag: \"seg-1\"".to_owned()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"x-origin: kept".to_owned()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"transfer-encoding: chunked".to_owned()),
        "{headers:?}"
    );
    assert!(
        !headers.iter().any(|field| field.starts_with("server:")),
        "the origin's software stays its own: {headers:?}"
    );
    assert_eq!(relayed_body, body);
    assert_eq!(proxied_body, body);

    // The origin got the same request both times, the range aside: the viewer's fields, the
    // forwarding fields, no token and no hop-by-hop fields.
    let heads = origin.heads();
    assert_eq!(heads.len(), 2);
    let without_range = |head: &str| -> Vec<String> {
        head.lines()
            .filter(|line| !line.to_ascii_lowercase().starts_with("range:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(without_range(&heads[0]), without_range(&heads[1]));
    let relayed = heads[1].to_ascii_lowercase();
    assert!(
        relayed.starts_with("get /live/42-1.ts?v=1 http/1.1"),
        "{relayed}"
    );
    assert!(relayed.contains("x-viewer: as sent"), "{relayed}");
    assert!(relayed.contains("x-forwarded-for: 127.0.0.1"), "{relayed}");
    assert!(!relayed.contains("connection:"), "{relayed}");
}

#[tokio::test]
async fn byte_ranges_and_a_disabled_cache_go_to_the_origin_every_time() {
    let origin = ScriptedOrigin::start(Script::Send(ok_response("video/mp2t", "ts"))).await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[cache]\nenabled = false")
        .start()
        .await;
    let url = proxy.url(&format!("/live/42-1.ts?token={}", token(42)));
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let response = get(url.clone()).await;
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains_key("x-cache"));
        seen.insert(response.text().await.unwrap());
    }
    assert_eq!(origin.requests(), 3);
    assert_eq!(seen.len(), 1);

    let cached = ProxyBuilder::new(origin.addr).start().await;
    let url = cached.url(&format!("/live/42-2.ts?token={}", token(42)));
    for _ in 0..2 {
        let ranged = client()
            .get(url.clone())
            .header("range", "bytes=0-0")
            .send()
            .await
            .unwrap();
        assert!(!ranged.headers().contains_key("x-cache"));
    }
    assert_eq!(origin.requests(), 5);
}

/// Waits until the proxy has counted `count` segments sent from their sealed files (a
/// response is counted once its last byte is handed to the kernel, which the viewer may read
/// first), and checks that the count then stays there.
async fn sent_from_file_is(proxy: &crate::support::TestProxy, count: u64) {
    let sent = || async {
        proxy
            .metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix("livegate_proxy_segments_sent_from_file_total "))
            .expect("the sent-from-file counter")
            .parse::<u64>()
            .unwrap()
    };
    wait_until(
        &format!("{count} segments sent from sealed files"),
        || async { (sent().await >= count).then_some(()) },
    )
    .await;
    assert_eq!(sent().await, count);
}

#[tokio::test]
async fn cached_segments_go_out_from_sealed_files_and_the_connection_carries_on() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    let media = tempfile::tempdir().unwrap();
    let segment = segment_bytes(300 * 1024);
    std::fs::write(media.path().join("42-7.ts"), &segment).unwrap();
    std::fs::write(
        media.path().join("42.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n42-7.ts\n",
    )
    .unwrap();
    let nginx = Nginx::start("", &static_origin(media.path()));
    nginx.ready().await;
    let proxy = ProxyBuilder::new(nginx.addr)
        .forward_token(false)
        .start()
        .await;
    let token = token(42);
    let request = |path: &str, extra: &str| {
        format!("GET {path}?token={token} HTTP/1.1\r\nHost: viewer\r\n{extra}\r\n")
    };

    // Sends `request` on `connection` and reads one response.
    async fn exchange(
        connection: &mut BufReader<tokio::net::TcpStream>,
        request: &str,
    ) -> (String, Vec<u8>) {
        connection
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        read_response(connection).await
    }

    // The first request fills the cache; the next ones on the same connection are sent from
    // the sealed file, and the connection then goes on to carry a playlist.
    let mut connection = BufReader::new(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    for expected in ["MISS", "HIT", "HIT"] {
        let (head, body) = exchange(&mut connection, &request("/live/42-7.ts", "")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("x-cache: {}", expected.to_ascii_lowercase())),
            "{head}"
        );
        assert!(body == segment, "the segment's bytes, whole");
    }
    sent_from_file_is(&proxy, 2).await;
    let (head, body) = exchange(&mut connection, &request("/live/42.m3u8", "")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let playlist = String::from_utf8(body).unwrap();
    assert!(
        playlist.contains(&format!("42-7.ts?token={token}")),
        "{playlist}"
    );

    // Two requests sent at once: the second has already arrived, which the connection must
    // not be lent out without, so the first is written by the session; then the second is
    // answered on the same connection.
    let pipelined = request("/live/42-7.ts", "") + &request("/live/42.m3u8", "");
    let (head, body) = exchange(&mut connection, &pipelined).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && body == segment,
        "{head}"
    );
    let (head, body) = read_response(&mut connection).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8(body).unwrap().contains("42-7.ts?token="));
    sent_from_file_is(&proxy, 2).await;
    drop(connection);

    // A viewer that asks to close gets the segment from the file, then the end of the
    // connection.
    let mut connection = BufReader::new(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    let (head, body) = exchange(
        &mut connection,
        &request("/live/42-7.ts", "Connection: close\r\n"),
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 200") && body == segment,
        "{head}"
    );
    let mut rest = Vec::new();
    connection.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    sent_from_file_is(&proxy, 3).await;

    // The origin was asked once for the segment.
    let log = nginx.origin_log();
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("/live/42-7.ts"))
            .count(),
        1,
        "{log}"
    );
}
