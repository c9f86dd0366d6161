//! The HLS cache: later viewers served without the origin, concurrent misses coalesced into
//! one origin request, LL-HLS blocking reloads shared but never kept, purges.

use std::collections::HashSet;

use livegate_core::unix_now;
use livegate_tests::media::make_hls;
use livegate_tests::nginx::{static_origin, Nginx};
use livegate_tests::scripted::{Script, ScriptedOrigin};
use livegate_tests::wait_until;

use crate::support::{client, token, token_expiring, ProxyBuilder};

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
async fn concurrent_misses_make_one_origin_request() {
    let origin = ScriptedOrigin::start(Script::SendWhenReleased(ok_response(
        "video/mp2t",
        "segment bytes",
    )))
    .await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let viewers = 200;
    let requests: Vec<_> = (0..viewers)
        .map(|i| {
            let url = proxy.url(&format!(
                "/live/42-7.ts?token={}",
                token_expiring(42, unix_now() + 3600 + i)
            ));
            tokio::spawn(get(url))
        })
        .collect();
    wait_until("the first request to reach the origin", || {
        let reached = origin.requests() >= 1;
        async move { reached.then_some(()) }
    })
    .await;
    origin.release();
    let mut sources = Vec::new();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        sources.push(response.headers()["x-cache"].to_str().unwrap().to_owned());
        assert_eq!(response.text().await.unwrap(), "segment bytes");
    }
    assert_eq!(
        origin.requests(),
        1,
        "one origin request for {viewers} viewers"
    );
    assert_eq!(sources.iter().filter(|s| *s == "MISS").count(), 1);
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
    wait_until("the reload to reach the origin", || {
        let reached = origin.requests() >= 1;
        async move { reached.then_some(()) }
    })
    .await;
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
