//! `livegate up` as a newcomer runs it: one process, a demo room and accounts on first start,
//! a real nginx-rtmp origin publishing into it with the printed key, the recording stored as an
//! MP4, a clean stop on SIGTERM, and the same data after a restart, where a recording left
//! without its callback is found in the origin's directory.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::path::Path;
use std::process::{Command, Stdio};

use livegate_tests::rtmp::{Publisher, RtmpOrigin};
use livegate_tests::{free_port_offset, patience, wait_until, wait_until_within, ChildGuard};
use serde_json::{json, Value};

/// `livegate up` taking the recordings of the origin that records into `recordings`.
fn start(data: &Path, offset: u16, origin: &str, recordings: &Path, log: &Path) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_livegate"))
        .args(["up", "--data-dir"])
        .arg(data)
        .args(["--port-offset", &offset.to_string(), "--origin", origin])
        .arg("--recordings-from")
        .arg(recordings)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    ChildGuard::new("livegate up", child)
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

async fn ready(admin_port: u16) {
    wait_until("livegate up to be ready", || async move {
        let answer = reqwest::get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .await
            .ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
}

/// The welcome text, once it is all written (it follows the services' start).
async fn welcome(log: &Path) -> String {
    // Every service starts (and migrates its database) before it is printed.
    wait_until_within("the welcome text", patience() * 3, || async {
        let text = std::fs::read_to_string(log).ok()?;
        text.contains("  data   ").then_some(text)
    })
    .await
}

async fn login(api: &str, username: &str, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{api}/api/v1/sessions"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn up_runs_the_toolkit_a_publisher_goes_live_and_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("up.log");
    let offset = free_port_offset(&livegate::up::ports::ALL, 20000, 7);
    let (hooks, api) = (8085 + offset, 8090 + offset);
    let origin = RtmpOrigin::start(&format!("http://127.0.0.1:{hooks}"), "");
    origin.ready().await;

    let mut up = start(&data, offset, "127.0.0.1:1", &origin.record_dir(), &log);
    ready(9190 + offset).await;
    ready(9185 + offset).await;
    let text = welcome(&log).await;
    assert!(text.contains("(made now)"), "{text}");
    let room = field(&text, "publish (OBS or ffmpeg)", "/live/");
    let (room_id, key) = room.split_once("?key=").unwrap();
    let password = field(&text, "account admin", "password ");
    let api_base = format!("http://127.0.0.1:{api}");
    assert!(text.contains(&format!("{api_base}/console")), "{text}");
    assert!(
        text.contains(&format!("{api_base}/watch/{room_id}")),
        "{text}"
    );
    assert_eq!(login(&api_base, "admin", &password).await, 201);

    // Publishing with the printed key through a real origin puts the room live.
    let publisher = Publisher::start(&origin.url(&format!("{room_id}?key={key}")), 30);
    let details = format!("{api_base}/api/v1/rooms/{room_id}");
    wait_until("the demo room to go live", || {
        let details = details.clone();
        async move {
            let room: Value = reqwest::get(&details).await.ok()?.json().await.ok()?;
            (room["is_live"] == true).then_some(())
        }
    })
    .await;
    // Enough of a recording to hold video frames before the publisher goes.
    let record_dir = origin.record_dir();
    wait_until("the origin to have recorded some video", || {
        let record_dir = record_dir.clone();
        async move {
            let recorded = std::fs::read_dir(&record_dir)
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .any(|meta| meta.len() > 200_000);
            recorded.then_some(())
        }
    })
    .await;
    drop(publisher);

    // The origin's recording reaches the recorder through the hooks service's job and ends as
    // an MP4 in the data directory's storage, which the stream then points at.
    let session: Value = reqwest::Client::new()
        .post(format!("{api_base}/api/v1/sessions"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = session["access_token"].as_str().unwrap().to_owned();
    let streams_url = format!("{details}/streams");
    let stored = wait_until("the recording to be stored", || {
        let (streams_url, access) = (streams_url.clone(), access.clone());
        async move {
            let page: Value = reqwest::Client::new()
                .get(&streams_url)
                .bearer_auth(&access)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let url = page["items"][0]["record_url"].as_str()?.to_owned();
            url.ends_with(".mp4").then_some(url)
        }
    })
    .await;
    let stored_path = stored.strip_prefix("file://").unwrap_or(&stored);
    assert!(
        Path::new(stored_path).starts_with(&data) && Path::new(stored_path).exists(),
        "{stored}"
    );

    // The console's health page reads the embedded services' metrics, and the recording
    // has a download link into the data directory's storage.
    let client = reqwest::Client::new();
    let health: Value = client
        .get(format!("{api_base}/api/v1/admin/health"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for service in ["proxy", "hooks", "recorder", "storage"] {
        let check = health["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|check| check["name"] == service)
            .unwrap_or_else(|| panic!("no {service} check in {health}"));
        assert_eq!(check["ok"], true, "{service}: {health}");
    }
    assert!(health["recorder"]["backlog"].is_number(), "{health}");
    let recordings: Value = client
        .get(format!("{api_base}/api/v1/rooms/{room_id}/recordings"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = recordings["items"][0]["download_url"].as_str().unwrap();
    let download = client
        .get(format!("{api_base}{link}"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200, "{recordings}");
    assert_eq!(
        download.bytes().await.unwrap().len() as u64,
        std::fs::metadata(stored_path).unwrap().len()
    );
    // The recording's poster is the offline room's cover, which a browser loads from the API.
    let cover = wait_until(
        "the room to have the recording's poster as its cover",
        || {
            let client = client.clone();
            let details = format!("{api_base}/api/v1/rooms/{room_id}");
            async move {
                let room: Value = client.get(details).send().await.ok()?.json().await.ok()?;
                room["cover_url"].as_str().map(str::to_owned)
            }
        },
    )
    .await;
    let picture = client
        .get(format!("{api_base}{cover}"))
        .send()
        .await
        .unwrap();
    assert_eq!(picture.status(), 200, "{cover}");
    assert_eq!(picture.headers()["content-type"], "image/jpeg");
    assert_eq!(&picture.bytes().await.unwrap()[..2], [0xFF, 0xD8], "a JPEG");

    up.signal("TERM");
    let status = tokio::task::spawn_blocking(move || up.wait())
        .await
        .unwrap()
        .expect("livegate up exits after SIGTERM");
    assert!(status.success(), "{status}");

    // A recording whose callback never came, left while livegate was down: the restarted
    // recorder finds it in the origin's directory.
    let orphan_name = format!("{room_id}-1733000000.flv");
    let made = dir.path().join(&orphan_name);
    livegate_tests::media::make_flv(&made, 2, 300);
    let orphan = origin.record_dir().join(&orphan_name);
    std::fs::rename(&made, &orphan).unwrap();

    // The same installation after a restart: no new accounts, the same password.
    let log_again = dir.path().join("up-again.log");
    let _up = start(
        &data,
        offset,
        "127.0.0.1:1",
        &origin.record_dir(),
        &log_again,
    );
    ready(9190 + offset).await;
    let text = welcome(&log_again).await;
    assert!(
        !text.contains("(made now)") && !text.contains("account admin"),
        "{text}"
    );
    assert!(text.contains(&format!("demo room {room_id}")), "{text}");
    assert_eq!(login(&api_base, "admin", &password).await, 201);
    let found = data
        .join("stored")
        .join(room_id)
        .join(format!("1733000000000-{room_id}-1733000000.mp4"));
    wait_until_within(
        "the recording without a callback to be stored",
        patience() * 3,
        || {
            let stored = found.exists() && !orphan.exists();
            async move { stored.then_some(()) }
        },
    )
    .await;
}
