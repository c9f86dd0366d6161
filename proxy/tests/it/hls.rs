//! HLS through the proxy: rewritten playlists, segments, and a real player.

use std::process::Command;

use livegate_core::unix_now;
use livegate_tests::media::make_hls;
use livegate_tests::nginx::{static_origin, static_origin_with, Nginx};
use tempfile::TempDir;

use crate::support::{client, token, token_expiring, ProxyBuilder};

struct HlsOrigin {
    nginx: Nginx,
    media: TempDir,
}

async fn hls_origin(seconds: u32) -> HlsOrigin {
    let media = tempfile::tempdir().unwrap();
    make_hls(media.path(), "42", seconds);
    let nginx = Nginx::start("", &static_origin(media.path()));
    nginx.ready().await;
    HlsOrigin { nginx, media }
}

fn uri_lines(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect()
}

/// `[cache]` for SRS with `hls_ctx on`: its session parameter selects what the origin answers,
/// so it is kept (in the key, and on the way to the origin) beside the LL-HLS directives.
const KEEP_HLS_CTX: &str =
    "[cache]\nkey_query_params = [\"_HLS_msn\", \"_HLS_part\", \"_HLS_skip\", \"hls_ctx\"]";

#[tokio::test]
async fn playlist_is_rewritten_and_the_token_never_reaches_the_origin() {
    let origin = hls_origin(6).await;
    let proxy = ProxyBuilder::new(origin.nginx.addr)
        .with(KEEP_HLS_CTX)
        .start()
        .await;
    let token = token(42);

    let response = client()
        .get(proxy.url(&format!("/live/42.m3u8?hls_ctx=ab12&token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-store"));
    let declared: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    let body = response.text().await.unwrap();
    assert_eq!(
        declared,
        body.len(),
        "Content-Length must match the rewritten body"
    );

    let original = std::fs::read_to_string(origin.media.path().join("42.m3u8")).unwrap();
    let uris = uri_lines(&body);
    assert_eq!(uris.len(), uri_lines(&original).len());
    assert!(uris.len() >= 3);
    for uri in &uris {
        assert_eq!(uri.matches("token=").count(), 1, "{uri}");
        assert!(uri.ends_with(&format!("?token={token}")), "{uri}");
    }
    // Tags other than URIs are passed through untouched.
    let tags = |p: &str| {
        p.lines()
            .filter(|l| l.starts_with('#'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(tags(&body), tags(&original));

    // Every rewritten segment URI is accepted by the proxy.
    for uri in &uris {
        let response = client()
            .get(proxy.url(&format!("/live/{uri}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes[0], 0x47, "MPEG-TS sync byte");
    }

    let origin_log = origin
        .nginx
        .wait_for_origin_log("the origin to log every request", |log| {
            log.lines().count() > uris.len()
        })
        .await;
    assert!(
        origin_log.contains("/live/42.m3u8?hls_ctx=ab12 200"),
        "{origin_log}"
    );
    assert!(
        !origin_log.contains("token"),
        "the token reached the origin:\n{origin_log}"
    );
    assert!(!proxy.log().contains(&token), "the token was logged");
}

fn ffprobe_video_frames(url: &str) -> Result<u64, String> {
    livegate_tests::require_tool("ffprobe");
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(url)
        .output()
        .unwrap();
    // HLS inputs list the stream once per program: the first line is the stream's count.
    let stdout = String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(stderr);
    }
    stdout
        .parse()
        .map_err(|_| format!("unexpected ffprobe output {stdout:?}: {stderr}"))
}

#[tokio::test]
async fn a_real_player_decodes_every_segment_through_the_proxy() {
    let origin = hls_origin(6).await;
    let proxy = ProxyBuilder::new(origin.nginx.addr).start().await;

    let segments_fetched = |log: String| {
        log.lines()
            .filter(|l| l.contains(".ts ") && (l.contains(" 200 ") || l.contains(" 206 ")))
            .count()
    };
    let direct =
        ffprobe_video_frames(&format!("http://{}/live/42.m3u8", origin.nginx.addr)).unwrap();
    assert!(direct >= 100, "the origin itself serves {direct} frames");
    let fetched_directly = segments_fetched(origin.nginx.origin_log());
    assert!(fetched_directly >= 3);

    let through_proxy = tokio::task::spawn_blocking({
        let url = proxy.url(&format!("/live/42.m3u8?token={}", token(42)));
        move || ffprobe_video_frames(&url)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(through_proxy, direct, "frames decoded through the proxy");
    // Waits until the origin logged as many segment fetches through the proxy as directly.
    origin
        .nginx
        .wait_for_origin_log("every segment to be fetched through the proxy", |log| {
            segments_fetched(log.to_owned()) == 2 * fetched_directly
        })
        .await;

    let expired = proxy.url(&format!(
        "/live/42.m3u8?token={}",
        token_expiring(42, unix_now() - 60)
    ));
    let refused = tokio::task::spawn_blocking(move || ffprobe_video_frames(&expired))
        .await
        .unwrap();
    let err = refused.expect_err("an expired token must not play");
    assert!(err.contains("403"), "{err}");
}

#[tokio::test]
async fn master_playlists_and_uri_attributes_are_rewritten() {
    let origin = hls_origin(2).await;
    let master = "#EXTM3U\n\
        #EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"/live/keys/42.key\"\n\
        #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"42-audio.m3u8?lang=en\"\n\
        #EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO=\"a\"\n\
        /live/42-hi.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=200000\n\
        https://other-cdn.example/live/42-lo.m3u8\n\
        #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI=\"42-iframe.m3u8\"\n";
    std::fs::write(origin.media.path().join("42-main.m3u8"), master).unwrap();
    let proxy = ProxyBuilder::new(origin.nginx.addr).start().await;
    let token = token(42);
    let body = client()
        .get(proxy.url(&format!("/live/42-main.m3u8?token={token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let t = format!("token={token}");
    assert!(
        body.contains(&format!("URI=\"/live/keys/42.key?{t}\"")),
        "{body}"
    );
    assert!(
        body.contains(&format!("URI=\"42-audio.m3u8?lang=en&{t}\"")),
        "{body}"
    );
    assert!(
        body.contains(&format!("\n/live/42-hi.m3u8?{t}\n")),
        "{body}"
    );
    assert!(
        body.contains("\nhttps://other-cdn.example/live/42-lo.m3u8\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!("URI=\"42-iframe.m3u8?{t}\"")),
        "{body}"
    );

    // The variant the master names is admitted with the URI as rewritten.
    std::fs::copy(
        origin.media.path().join("42.m3u8"),
        origin.media.path().join("42-hi.m3u8"),
    )
    .unwrap();
    let variant = client()
        .get(proxy.url(&format!("/live/42-hi.m3u8?{t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(variant.status(), 200);
    assert!(variant
        .text()
        .await
        .unwrap()
        .contains(&format!("42-0.ts?{t}")));
}

#[tokio::test]
async fn origin_redirects_keep_their_target_and_gain_the_token() {
    // SRS with `hls_ctx on` answers a new viewer's playlist request with a 302 to a session URL.
    let media = tempfile::tempdir().unwrap();
    make_hls(media.path(), "42", 2);
    let session_redirect = format!(
        "location = /live/42.m3u8 {{ if ($arg_hls_ctx = \"\") {{ return 302 /live/42.m3u8?hls_ctx=s1; }} alias {}/42.m3u8; }}",
        media.path().display()
    );
    let nginx = Nginx::start("", &static_origin_with(media.path(), &session_redirect));
    nginx.ready().await;
    let proxy = ProxyBuilder::new(nginx.addr)
        .with(KEEP_HLS_CTX)
        .start()
        .await;
    let token = token(42);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(proxy.url(&format!("/live/42.m3u8?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/live/42.m3u8?hls_ctx=s1&token={token}"));

    // Following it gets the session's playlist, rewritten.
    let followed = client().get(proxy.url(&location)).send().await.unwrap();
    assert_eq!(followed.status(), 200);
    assert!(followed
        .text()
        .await
        .unwrap()
        .contains(&format!("42-0.ts?token={token}")));
    assert!(!nginx.origin_log().contains("token"));
}

#[tokio::test]
async fn oversized_playlists_are_refused_with_502() {
    let origin = hls_origin(2).await;
    let mut big = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
    for i in 0..400 {
        big.push_str(&format!("#EXTINF:2.000,\n42-{i}.ts\n"));
    }
    assert!(big.len() > 4096);
    std::fs::write(origin.media.path().join("9.m3u8"), &big).unwrap();
    let proxy = ProxyBuilder::new(origin.nginx.addr)
        .with("[playlist]\nmax_bytes = 4096")
        .start()
        .await;

    let response = client()
        .get(proxy.url(&format!("/live/9.m3u8?token={}", token(9))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    // The small playlist of the same origin is still served.
    let ok = client()
        .get(proxy.url(&format!("/live/42.m3u8?token={}", token(42))))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(proxy
        .metrics()
        .await
        .contains("livegate_proxy_playlists_refused_total{reason=\"input_too_large\"} 1"));
}

#[tokio::test]
async fn origin_status_is_passed_through_for_missing_streams() {
    let origin = hls_origin(2).await;
    let proxy = ProxyBuilder::new(origin.nginx.addr).start().await;
    let response = client()
        .get(proxy.url(&format!("/live/5.m3u8?token={}", token(5))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
