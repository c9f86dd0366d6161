//! What the console tests share: origin APIs that answer captured bodies, a `/metrics` server,
//! and a reader of the live feed's server-sent events.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::routing::any;
use serde_json::{json, Value};

use crate::support::TestApp;

/// Answers by path (GET or POST): the JSON set for it, `{"code": -1}` otherwise.
pub(crate) type Answers = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP server answering `answers`; its base URL.
pub(crate) async fn answering_api(answers: Answers) -> String {
    let app = axum::Router::new()
        .fallback(any(
            |State(answers): State<Answers>, request: Request| async move {
                let path = request.uri().path().to_owned();
                let found = answers
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(at, _)| *at == path)
                    .map(|(_, body)| body.clone());
                axum::Json(found.unwrap_or_else(|| json!({"code": -1})))
            },
        ))
        .with_state(answers);
    serve(app).await
}

/// A `/metrics` server answering `text`; the metrics URL.
pub(crate) async fn metrics_server(text: &'static str) -> String {
    let app =
        axum::Router::new().route("/metrics", axum::routing::get(move || async move { text }));
    format!("{}/metrics", serve(app).await)
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// A fixture of the hooks service's tests (real SRS 6 and ZLMediaKit bodies).
pub(crate) fn fixture(path: &str) -> Value {
    let path = format!(
        "{}/../hooks/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"));
    serde_json::from_str(&text).unwrap()
}

/// SRS's `/api/v1/streams` and `/api/v1/clients` for the publisher of the SRS fixtures
/// (`on_publish.json`: client `70763180`, stream `vid-2591469`) publishing room `room`.
pub(crate) fn srs_answers(room: i64) -> Vec<(String, Value)> {
    let publish = fixture("srs/on_publish.json");
    let client = publish["client_id"].clone();
    vec![
        (
            "/api/v1/streams".to_owned(),
            json!({"code": 0, "server": publish["server_id"], "service": publish["service_id"],
                "streams": [{"id": publish["stream_id"], "name": room.to_string(), "app": "live",
                    "clients": 3, "kbps": {"recv_30s": 812, "send_30s": 1600},
                    "publish": {"active": true, "cid": client},
                    "video": {"codec": "H264", "profile": "High", "level": "3", "width": 640, "height": 360},
                    "audio": {"codec": "AAC", "sample_rate": 44100, "channel": 1, "profile": "LC"}}]}),
        ),
        (
            "/api/v1/clients".to_owned(),
            json!({"code": 0, "clients": [{"id": client, "ip": publish["ip"], "publish": true,
                "type": "fmle-publish", "stream": publish["stream_id"]}]}),
        ),
    ]
}

/// ZLMediaKit's `getMediaList` for room `room`: the registration body of the fixtures
/// (`on_stream_changed.json`, `regist=True`, which is what `getMediaList` lists), renamed.
pub(crate) fn zlm_answers(room: i64) -> Vec<(String, Value)> {
    let file = fixture("zlmediakit/on_stream_changed.json");
    let mut source = file["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sample| sample["variant"] == "regist=True")
        .unwrap()["body"]
        .clone();
    source["stream"] = json!(room.to_string());
    source["bytesSpeed"] = json!(125_000);
    vec![(
        "/index/api/getMediaList".to_owned(),
        json!({"code": 0, "data": [source]}),
    )]
}

/// Reads the live feed's events.
pub(crate) struct Feed {
    response: reqwest::Response,
    buffer: String,
}

impl Feed {
    /// Opens `GET /admin/live/events` with `token`: the response, for a refusal.
    pub(crate) async fn open(app: &TestApp, token: &str) -> Result<Feed, u16> {
        let response = app
            .client
            .get(format!("{}/api/v1/admin/live/events", app.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            return Err(response.status().as_u16());
        }
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Ok(Feed {
            response,
            buffer: String::new(),
        })
    }

    /// The next `snapshot` event's data; `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = Some(name.trim().to_owned());
                    } else if let Some(part) = line.strip_prefix("data:") {
                        data.push_str(part.trim_start());
                    }
                }
                if event.as_deref() == Some("snapshot") {
                    return Some(serde_json::from_str(&data).unwrap());
                }
            }
            let chunk = tokio::time::timeout(livegate_tests::patience(), self.response.chunk())
                .await
                .expect("the live feed sends within the patience")
                .ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Snapshots until one satisfies `check`.
    pub(crate) async fn until(&mut self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        loop {
            let snapshot = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the feed ended before {what}"));
            if check(&snapshot) {
                return snapshot;
            }
        }
    }
}

/// The room `room` in a snapshot, if listed.
pub(crate) fn room_in(snapshot: &Value, room: i64) -> Option<&Value> {
    snapshot["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|listed| listed["room_id"] == room)
}
