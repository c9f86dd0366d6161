//! The console and the watch page in a real browser, end to end: a real nginx-rtmp origin
//! (HLS, callbacks to the hooks service, its control module for kicks), `livegate up` in
//! front of it, ffmpeg publishing with the printed key, and `api/web/e2e/console.mjs` driving
//! Debian's Chromium headless through playwright-core: log in, see the room appear under Live
//! now, kick it (ffmpeg drops), rotate the key and publish with the new one, play the watch
//! page through the proxy, delete a viewer's chat message and see it vanish for the viewer.
//! The script asks this test for publishers (it owns ffmpeg) and fails on any browser
//! console error. Screenshots land in `artifacts/screenshots/` (or `LIVEGATE_SCREENSHOTS`).
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livegate_tests::nginx::Nginx;
use livegate_tests::rtmp::{Publisher, RTMP_MODULE};
use livegate_tests::{
    free_addr, free_port_offset, patience, require_tool, wait_until, wait_until_within, ChildGuard,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Where Debian installs Chromium (`apt-get install chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";

/// nginx-rtmp as `infra/nginx-rtmp/nginx.conf` sets it up: callbacks to the hooks service,
/// recording, HLS in one-second fragments served at `/live/`, and the control module.
fn start_origin(rtmp: SocketAddr, hooks: &str) -> Nginx {
    let hook = |event: &str| format!("{hooks}/api/v1/hook/{event}");
    let main = format!(
        "load_module {RTMP_MODULE};\n\
         rtmp {{\n\
           server {{\n\
             listen {rtmp};\n\
             chunk_size 4096;\n\
             notify_method post;\n\
             application live {{\n\
               live on;\n\
               on_publish {publish};\n\
               on_publish_done {publish_done};\n\
               on_done {done};\n\
               on_record_done {record_done};\n\
               record all;\n\
               record_path {{prefix}}/tmp;\n\
               record_unique on;\n\
               hls on;\n\
               hls_path {{prefix}}/tmp/hls;\n\
               hls_fragment 1s;\n\
               hls_playlist_length 6s;\n\
             }}\n\
           }}\n\
         }}\n",
        publish = hook("on_publish"),
        publish_done = hook("on_publish_done"),
        done = hook("on_done"),
        record_done = hook("on_record_done"),
    );
    let http = "server {\n\
           listen {listen};\n\
           location /live/ {\n\
             alias {prefix}/tmp/hls/;\n\
             types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }\n\
             add_header Cache-Control no-cache;\n\
           }\n\
           location = /health { return 200 \"ok\\n\"; }\n\
           location /control { rtmp_control all; }\n\
           location /stat { rtmp_stat all; }\n\
         }\n";
    Nginx::start(&main, http)
}

/// The value after `label` on the line containing `line_mark` of the welcome text.
fn field(text: &str, line_mark: &str, label: &str) -> String {
    let line = text
        .lines()
        .find(|line| line.contains(line_mark))
        .unwrap_or_else(|| panic!("no `{line_mark}` line in:\n{text}"));
    let rest = &line[line.find(label).unwrap() + label.len()..];
    rest.split_whitespace().next().unwrap().to_owned()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// playwright-core in `api/web/node_modules`: the API's build installs it with the web
/// build's other packages; a build from a prebuilt `LIVEGATE_WEB_DIST` does not, so this
/// installs it then.
fn e2e_tooling(web: &Path) {
    if web
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web)
        .status()
        .expect("run npm ci in api/web");
    assert!(status.success(), "npm ci in api/web: {status}");
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_watch_page_work_in_a_real_browser() {
    for tool in ["ffmpeg", "nginx", "node", "npm"] {
        require_tool(tool);
    }
    let chromium = std::env::var("LIVEGATE_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (see .ci/run)"
    );
    assert!(
        Path::new(RTMP_MODULE).exists(),
        "{RTMP_MODULE} is missing: install libnginx-mod-rtmp"
    );
    let web = workspace().join("api/web");
    e2e_tooling(&web);
    let screenshots = std::env::var_os("LIVEGATE_SCREENSHOTS")
        .map_or_else(|| workspace().join("artifacts/screenshots"), PathBuf::from);

    let dir = tempfile::tempdir().unwrap();
    let offset = free_port_offset(&livegate::up::ports::ALL, 10000, 13);
    let hooks = format!("http://127.0.0.1:{}", 8085 + offset);
    let rtmp = free_addr();
    let origin = start_origin(rtmp, &hooks);
    origin.ready().await;
    livegate_tests::wait_for_listener("nginx-rtmp to listen", rtmp).await;

    let data = dir.path().join("data");
    let up_log = dir.path().join("up.log");
    let up = std::process::Command::new(env!("CARGO_BIN_EXE_livegate"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--port-offset", &offset.to_string()])
        .args(["--origin", &origin.addr.to_string()])
        .arg("--recordings-from")
        .arg(origin.prefix().join("tmp"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&up_log).unwrap())
        .spawn()
        .unwrap();
    let _up = ChildGuard::new("livegate up", up);
    let up_text = || std::fs::read_to_string(&up_log).unwrap_or_default();
    let text = // Every service starts (and migrates its database) before it is printed.
    wait_until_within("the welcome text", patience() * 3, || async {
        let text = up_text();
        text.contains("  data   ").then_some(text)
    })
    .await;
    for admin in [9190 + offset, 9185 + offset, 9180 + offset] {
        wait_until("livegate up to be ready", || async move {
            let answer = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
                .await
                .ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
    }
    let room = field(&text, "publish (OBS or ffmpeg)", "/live/");
    let (room_id, key) = room.split_once("?key=").unwrap();
    let password = field(&text, "account admin", "password ");
    let base = format!("http://127.0.0.1:{}", 8090 + offset);

    let mut script = tokio::process::Command::new("node")
        .arg(web.join("e2e/console.mjs"))
        .current_dir(&web)
        .env("LG_BASE", &base)
        .env("LG_ROOM", room_id)
        .env("LG_STREAM_KEY", key)
        .env("LG_ADMIN_USER", "admin")
        .env("LG_ADMIN_PASSWORD", &password)
        .env("LG_SCREENSHOTS", &screenshots)
        .env("LG_CHROMIUM", &chromium)
        .env("LG_PATIENCE_MS", patience().as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut answers = script.stdin.take().unwrap();
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut publisher: Option<Publisher> = None;
    let conversation = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Some(request) = line.strip_prefix("@@ ") else {
                println!("{line}");
                continue;
            };
            let request: Value = serde_json::from_str(request).unwrap();
            let answer = match request["ask"].as_str() {
                Some("publish") => {
                    let key = request["key"].as_str().unwrap();
                    let url = format!("rtmp://{rtmp}/live/{room_id}?key={key}");
                    // Long enough to outlast the script; killed when replaced or dropped.
                    publisher = Some(Publisher::start(&url, 600));
                    json!({"ok": true, "started_at": now_ms()})
                }
                Some("publisher-gone") => match publisher.take() {
                    Some(running) => {
                        let status = running.finish(patience()).await;
                        json!({"ok": true, "status": status.to_string()})
                    }
                    None => json!({"ok": false, "error": "no publisher is running"}),
                },
                other => json!({"ok": false, "error": format!("unknown request {other:?}")}),
            };
            answers
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .unwrap();
        }
    };
    // The script's own waits are bounded by the patience; this bounds the whole run.
    let limit = patience() * 10 + Duration::from_secs(60);
    tokio::time::timeout(limit, conversation)
        .await
        .unwrap_or_else(|_| panic!("the browser script did not finish\n{}", up_text()));
    let status = script.wait().await.unwrap();
    assert!(
        status.success(),
        "the browser script failed ({status}); livegate up said:\n{}",
        up_text()
    );
    drop(publisher);
    for shot in ["console-live.png", "console-room.png", "watch.png"] {
        assert!(screenshots.join(shot).exists(), "{shot} was not saved");
    }
}
