//! The shipped proxy example of each origin in front of that origin's URL layout: HTTP-FLV
//! (where the origin offers it) and HLS play through it with a token.

use std::path::Path;

use livegate_tests::media::{make_flv, make_hls};
use livegate_tests::nginx::{static_origin, Nginx};
use livegate_tests::{free_addr, wait_for_listener};

use crate::flv::read_at_least;
use crate::support::{client, spawn_proxy_with_env, streaming_client, token_for_example};

/// What an origin serves for room 42, laid out under its HTTP root's `/live/`.
struct Layout {
    example: &'static str,
    flv: Option<&'static str>,
    playlist: &'static str,
}

/// Writes room 42's media in `layout`'s shape into `dir` (served as `/live/`).
fn lay_out(dir: &Path, layout: &Layout) {
    let made = tempfile::tempdir().unwrap();
    make_hls(made.path(), "42", 4);
    let playlist = std::fs::read_to_string(made.path().join("42.m3u8")).unwrap();
    let target = dir.join(layout.playlist.trim_start_matches("/live/"));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    if layout.example.contains("zlmediakit") {
        // ZLMediaKit: /live/42/hls.m3u8 naming segments in dated sub-directories.
        let segment_dir = dir.join("42/2026-12-01/09");
        std::fs::create_dir_all(&segment_dir).unwrap();
        let mut rewritten = String::new();
        for line in playlist.lines() {
            if let Some(n) = line.strip_prefix("42-").and_then(|l| l.strip_suffix(".ts")) {
                std::fs::copy(
                    made.path().join(line),
                    segment_dir.join(format!("29-24_{n}.ts")),
                )
                .unwrap();
                rewritten.push_str(&format!("2026-12-01/09/29-24_{n}.ts\n"));
            } else {
                rewritten.push_str(line);
                rewritten.push('\n');
            }
        }
        std::fs::write(&target, rewritten).unwrap();
    } else {
        for entry in std::fs::read_dir(made.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    if let Some(flv) = layout.flv {
        make_flv(&dir.join(flv.trim_start_matches("/live/")), 4, 800);
    }
}

#[tokio::test]
async fn each_shipped_example_plays_its_origins_layout() {
    for layout in [
        Layout {
            example: "proxy.example.toml",
            flv: Some("/live/42.flv"),
            playlist: "/live/42.m3u8",
        },
        Layout {
            example: "proxy.zlmediakit.example.toml",
            flv: Some("/live/42.live.flv"),
            playlist: "/live/42/hls.m3u8",
        },
        Layout {
            example: "proxy.nginx-rtmp.example.toml",
            flv: None,
            playlist: "/live/42.m3u8",
        },
    ] {
        plays(&layout).await;
    }
}

async fn plays(layout: &Layout) {
    let media = tempfile::tempdir().unwrap();
    lay_out(media.path(), layout);
    let nginx = Nginx::start("", &static_origin(media.path()));
    nginx.ready().await;

    // The shipped file as it is, with only its addresses moved to free test ports.
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra")
        .join(layout.example);
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let origin = nginx.addr.to_string();
    let pid = dir.path().join("proxy.pid");
    let sock = dir.path().join("upgrade.sock");
    let env = [
        ("LIVEGATE_PROXY__SERVER__LISTEN", format!("[\"{listen}\"]")),
        ("LIVEGATE_PROXY__ADMIN__LISTEN", admin.to_string()),
        (
            "LIVEGATE_PROXY__ORIGIN__ADDRESSES",
            format!("[\"{origin}\"]"),
        ),
        (
            "LIVEGATE_PROXY__SERVER__PID_FILE",
            pid.display().to_string(),
        ),
        (
            "LIVEGATE_PROXY__SERVER__UPGRADE_SOCK",
            sock.display().to_string(),
        ),
    ];
    let _proxy = spawn_proxy_with_env(&example, &env, dir.path().join("proxy.log"));
    wait_for_listener("the proxy to listen", listen).await;
    let token = token_for_example(&example, 42);
    let url = |path: &str| format!("http://{listen}{path}?token={token}");

    let playlist = client().get(url(layout.playlist)).send().await.unwrap();
    assert_eq!(
        playlist.status(),
        200,
        "{}: {}",
        layout.example,
        layout.playlist
    );
    let text = playlist.text().await.unwrap();
    let segments: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!segments.is_empty(), "{text}");
    let base = layout.playlist.rsplit_once('/').unwrap().0;
    for segment in segments {
        assert!(segment.contains("token="), "{segment}");
        let response = client()
            .get(format!("http://{listen}{base}/{segment}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}: {segment}", layout.example);
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    if let Some(flv) = layout.flv {
        let response = streaming_client().get(url(flv)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}: {flv}", layout.example);
        let mut body = response.bytes_stream();
        let received = read_at_least(&mut body, 13).await;
        assert_eq!(&received[..3], b"FLV");
    }
    // Wrong tokens are refused under every layout.
    let refused = client()
        .get(format!("http://{listen}{}?token=forged", layout.playlist))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
