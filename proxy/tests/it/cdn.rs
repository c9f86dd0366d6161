//! CDN pullers ("CDN-verifies"): the CDN's own requests skip the token check, get playlists as
//! the origin wrote them and answers they may keep for every viewer.

use livegate_tests::scripted::{Script, ScriptedOrigin};

use crate::support::{client, token, ProxyBuilder};

const SECRET: &str = "a-long-shared-cdn-secret";
const PLAYLIST: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n42-1.ts\n";

fn answer(content_type: &str, body: &str) -> Script {
    Script::Send(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

async fn pulled(url: String, secret: Option<&str>) -> reqwest::Response {
    let mut request = client().get(url);
    if let Some(secret) = secret {
        request = request.header("x-livegate-cdn-secret", secret);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_puller_with_the_secret_gets_origin_playlists_and_cacheable_answers() {
    let playlists = ScriptedOrigin::start(answer("application/vnd.apple.mpegurl", PLAYLIST)).await;
    let cdn = format!("[cdn]\nsecret = \"{SECRET}\"\nplaylist_max_age_s = 2");
    let proxy = ProxyBuilder::new(playlists.addr)
        .forward_token(true)
        .with(&cdn)
        .start()
        .await;

    let response = pulled(proxy.url("/live/42.m3u8"), Some(SECRET)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=2");
    assert_eq!(
        response.text().await.unwrap(),
        PLAYLIST,
        "served as the origin wrote it"
    );
    // The origin, which checks tokens when they are forwarded, got one the proxy minted, and
    // never the CDN's secret.
    let head = playlists.heads()[0].to_ascii_lowercase();
    assert!(head.contains("token="), "{head}");
    assert!(!head.contains("x-livegate-cdn-secret"), "{head}");

    // Without the secret, or with a wrong one, it is an ordinary viewer without a token.
    for secret in [None, Some("a-long-shared-cdn-secreT")] {
        let refused = pulled(proxy.url("/live/42.m3u8"), secret).await;
        assert_eq!(refused.status(), 403, "{secret:?}");
    }
    // Viewers with tokens still get their own rewritten, private copy.
    let viewer = client()
        .get(proxy.url(&format!("/live/42.m3u8?token={}", token(42))))
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), 200);
    assert!(viewer.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-store"));
    assert!(viewer.text().await.unwrap().contains("42-1.ts?token="));
}

#[tokio::test]
async fn puller_segments_are_cacheable_long_on_both_paths() {
    let segments = ScriptedOrigin::start(answer("video/mp2t", "ts-bytes")).await;
    for cache in ["true", "false"] {
        let config = format!(
            "[cdn]\nsecret = \"{SECRET}\"\nsegment_max_age_s = 600\n[cache]\nenabled = {cache}"
        );
        let proxy = ProxyBuilder::new(segments.addr).with(&config).start().await;
        let response = pulled(proxy.url("/live/42-3.ts"), Some(SECRET)).await;
        assert_eq!(response.status(), 200, "cache {cache}");
        assert_eq!(response.headers()["cache-control"], "public, max-age=600");
        assert_eq!(response.text().await.unwrap(), "ts-bytes");
    }
    for head in segments.heads() {
        assert!(
            !head.to_ascii_lowercase().contains("x-livegate-cdn-secret"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn pullers_can_be_known_by_address() {
    let playlists = ScriptedOrigin::start(answer("application/vnd.apple.mpegurl", PLAYLIST)).await;
    let ours = ProxyBuilder::new(playlists.addr)
        .with("[cdn]\npullers = [\"127.0.0.0/8\"]")
        .start()
        .await;
    assert_eq!(pulled(ours.url("/live/42.m3u8"), None).await.status(), 200);
    let elsewhere = ProxyBuilder::new(playlists.addr)
        .with("[cdn]\npullers = [\"10.0.0.0/8\"]")
        .start()
        .await;
    assert_eq!(
        pulled(elsewhere.url("/live/42.m3u8"), None).await.status(),
        403
    );
}
