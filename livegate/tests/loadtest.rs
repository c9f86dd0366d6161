//! A smoke run of `livegate loadtest` against real components: a real nginx-rtmp origin (HLS
//! on its HTTP side), `livegate up` as the proxy in front of it, the loadtest's own ffmpeg
//! publisher pushing into nginx, FLV and HLS viewers through the proxy, and a share of bad
//! tokens that must be refused.
//!
//! nginx-rtmp serves no HTTP-FLV, so the test's nginx hands `.flv` requests to the harness's
//! relay ([`FlvRelay`]), which answers each with `ffmpeg -i rtmp://… -c copy -f flv` of the
//! live stream, the way SRS serves `/{app}/{stream}.flv`: the proxy sees one origin that does
//! both, and the relay counts the pulls that reach it.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use livegate_tests::flv_relay::FlvRelay;
use livegate_tests::nginx::Nginx;
use livegate_tests::rtmp::RTMP_MODULE;
use livegate_tests::{free_addr, free_port_offset, patience, require_tool, wait_until, ChildGuard};
use serde_json::Value;

/// nginx with the RTMP module: application `live` with HLS in one-second fragments, the
/// fragments served over HTTP at `/live/<stream>.m3u8` and `/live/<stream>-<n>.ts` (the
/// shipped layout), `.flv` handed to the relay.
fn start_origin(rtmp: SocketAddr, relay: SocketAddr) -> Nginx {
    let main = format!(
        "load_module {RTMP_MODULE};\n\
         rtmp {{\n\
           server {{\n\
             listen {rtmp};\n\
             chunk_size 4096;\n\
             application live {{\n\
               live on;\n\
               hls on;\n\
               hls_path {{prefix}}/tmp/hls;\n\
               hls_fragment 1s;\n\
               hls_playlist_length 6s;\n\
             }}\n\
           }}\n\
         }}\n"
    );
    let http = format!(
        "server {{\n\
           listen {{listen}};\n\
           location ~ \\.flv$ {{ proxy_pass http://{relay}; proxy_buffering off; }}\n\
           location /live/ {{\n\
             alias {{prefix}}/tmp/hls/;\n\
             types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}\n\
             add_header Cache-Control no-cache;\n\
           }}\n\
         }}\n"
    );
    Nginx::start(&main, &http)
}

fn json_at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| &v[key])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_run_through_the_proxy_measures_viewers_and_refuses_bad_tokens() {
    require_tool("ffmpeg");
    require_tool("nginx");
    assert!(
        Path::new(RTMP_MODULE).exists(),
        "{RTMP_MODULE} is missing: install libnginx-mod-rtmp"
    );
    let dir = tempfile::tempdir().unwrap();
    let rtmp = free_addr();
    let relay = FlvRelay::start(rtmp).await.unwrap();
    let origin = start_origin(rtmp, relay.addr);
    origin.ready().await;
    livegate_tests::wait_for_listener("nginx-rtmp to listen", rtmp).await;

    // The proxy: `livegate up` with its keys made beforehand, so the test can mint tokens.
    let data = dir.path().join("data");
    let (secrets, _) = livegate::data::DataDir::open(&data)
        .unwrap()
        .secrets()
        .unwrap();
    let offset = free_port_offset(&livegate::up::ports::ALL, 30000, 11);
    let up_log = dir.path().join("up.log");
    let up = std::process::Command::new(env!("CARGO_BIN_EXE_livegate"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--port-offset", &offset.to_string()])
        .args(["--origin", &origin.addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&up_log).unwrap())
        .spawn()
        .unwrap();
    let up = ChildGuard::new("livegate up", up);
    let admin = 9180 + offset;
    wait_until("the proxy to be ready", || async move {
        let answer = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
            .await
            .ok()?;
        answer.status().is_success().then_some(())
    })
    .await;

    let out = dir.path().join("out");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_livegate"))
        .arg("loadtest")
        .args(["--url-base", &format!("http://127.0.0.1:{}", 8080 + offset)])
        .args(["--rtmp", &format!("rtmp://{rtmp}/live")])
        .args(["--room", "42", "--publish-key", "smoke-key"])
        .args(["--token-key", &secrets.token_key])
        .args([
            "--flv-viewers",
            "4",
            "--hls-viewers",
            "3",
            "--bad-token-share",
            "0.25",
        ])
        .args(["--bitrate-kbps", "400", "--duration", "6s", "--ramp", "1s"])
        .args(["--watch-pid", &up.id().to_string()])
        .args([
            "--proxy-metrics",
            &format!("http://127.0.0.1:{admin}/metrics"),
        ])
        .args(["--warmup-timeout", &format!("{}s", patience().as_secs())])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let limit = patience() * 2 + Duration::from_secs(20);
    let run = tokio::time::timeout(limit, run)
        .await
        .expect("the loadtest stops by itself")
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let context = || {
        format!(
            "stdout:\n{stdout}\nstderr:\n{stderr}\nlivegate up:\n{}",
            std::fs::read_to_string(&up_log).unwrap_or_default()
        )
    };
    assert!(run.status.success(), "{:?}\n{}", run.status, context());

    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let int = |path: &str| {
        json_at(&result, path)
            .as_u64()
            .unwrap_or_else(|| panic!("{path}: {}", context()))
    };
    // 4 FLV viewers with one bad token, 3 HLS with one: 3 + 2 good ones, all of them played
    // to the end.
    for (protocol, good) in [("flv", 3), ("hls", 2)] {
        assert_eq!(
            int(&format!("{protocol}.started")),
            good,
            "{protocol}\n{}",
            context()
        );
        assert_eq!(
            int(&format!("{protocol}.played")),
            good,
            "{protocol}\n{}",
            context()
        );
        assert_eq!(
            int(&format!("{protocol}.watched_to_end")),
            good,
            "{protocol}\n{}",
            context()
        );
        assert_eq!(int(&format!("{protocol}.first_frame_ms.count")), good);
        // The publisher's wall-clock stamps came through the origin and the proxy.
        let latency = json_at(&result, &format!("{protocol}.latency_ms.p50"))
            .as_f64()
            .unwrap_or_else(|| panic!("{protocol} latency missing\n{}", context()));
        assert!(
            latency > 0.0 && latency < 20_000.0,
            "{protocol} latency {latency}"
        );
        assert!(
            json_at(&result, &format!("{protocol}.bitrate_kbps.p50"))
                .as_f64()
                .unwrap()
                > 50.0
        );
    }
    assert_eq!(int("unexpected_errors"), 0, "{}", context());
    // The proxy's pull gauge was read while the FLV viewers watched, and the origin never saw
    // more than one pull at once.
    assert!(int("origin_pulls_max") >= 1, "{}", context());
    assert_eq!(relay.pulls.peak(), 1, "{}", context());
    assert_eq!(int("bad_tokens.sent"), 2);
    assert_eq!(int("bad_tokens.refused"), 2, "{}", context());
    assert_eq!(int("bad_tokens.accepted"), 0);
    assert_eq!(
        json_at(&result, "bad_tokens.refusal_rate").as_f64(),
        Some(1.0)
    );
    let publisher = &result["publishers"][0];
    assert!(publisher["frames"].as_u64().unwrap() > 25, "{publisher}");
    assert!(publisher["error"].is_null(), "{publisher}");

    // Sampled every second: all five viewers were playing at some point, and the proxy's
    // process was watched.
    let timeline = result["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 5, "{}", timeline.len());
    assert!(timeline.iter().any(|p| p["viewers"] == 5), "{}", context());
    assert!(timeline.iter().any(|p| p["mbit_s"].as_f64().unwrap() > 0.0));
    let watched = result["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == up.id())
        .expect("the proxy's process is in the report");
    assert!(watched["samples"].as_u64().unwrap() >= 5, "{watched}");
    assert!(watched["rss_mib_max"].as_f64().unwrap() > 1.0, "{watched}");

    // The generator clocked its own lateness, every second and in all.
    assert!(result["generator"]["longest_ms"].is_u64(), "{}", context());
    assert!(timeline.iter().all(|p| p["generator_late_ms"].is_u64()));

    let chart = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(chart.contains("<svg") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("viewers playing"));
    assert!(chart.contains("load generator"));
    assert!(
        stdout.contains("bad tokens: 2 sent, 2 refused"),
        "{}",
        context()
    );
}
