//! Chat survives an instance being SIGKILLed under load: two real `livegate-api` processes
//! share one MariaDB and one Redis; a thousand readers are on the first, publishers send
//! through the second. The first is killed in the middle of a burst; every reader reconnects
//! to the second with `since` and ends with exactly the room's whole sequence: nothing
//! missing, nothing twice, the gap recovered.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use livegate_core::bus::BusConfig;
use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{rooms, Backend, NewRoom};
use livegate_core::Secret;
use livegate_tests::{free_port, wait_until, ChildGuard};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::chat_support::Ws;
use crate::support::{redis_config, JWT_KEY, PASSWORD, PLAY_KEY};

/// Readers on the instance that is killed.
const READERS: usize = 1000;
/// Readers opening their connection at once.
const CONNECTING: usize = 32;
/// Publisher connections (the room's owner, on the surviving instance).
const PUBLISHERS: usize = 4;
/// Messages every reader has before the burst.
const BEFORE: usize = 100;
/// The burst: `KILL_AT` messages before the kill (the first instance is still handing them
/// out), `GAP` while the readers are away, `DURING` while they reconnect. No reader misses
/// more than these 250, within the recovery limit (300).
const KILL_AT: usize = 20;
const GAP: usize = 200;
const DURING: usize = 30;

struct Instance {
    port: u16,
    admin_port: u16,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Instance {
    fn new(dir: &std::path::Path, name: &str, db_url: &str, bus: &BusConfig) -> Instance {
        let instance = Instance {
            port: free_port(),
            admin_port: free_port(),
            config: dir.join(format!("{name}.toml")),
            log: dir.join(format!("{name}.log")),
        };
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin_port}"
shutdown_grace_ms = 1000

# A thousand readers reconnect at once (each reads the room and replays up to 300 entries)
# to a debug build on two shared cores: the database and bus waits below leave room for that.

[database]
url = "{db_url}"
acquire_timeout_ms = 5000

[bus]
url = "{bus_url}"
key_prefix = "{prefix}"
timeout_ms = 5000

[auth]
jwt_keys = ["{JWT_KEY}"]
argon2_memory_kib = 1024
argon2_iterations = 1

[play_token]
keys = ["{PLAY_KEY}"]
per_address_per_minute = 0

[log]
filter = "warn"
"#,
            port = instance.port,
            admin_port = instance.admin_port,
            bus_url = bus.url.expose(),
            prefix = bus.key_prefix,
        );
        std::fs::write(&instance.config, toml).unwrap();
        instance
    }

    async fn spawn(&self, client: &reqwest::Client) -> ChildGuard {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_livegate-api"))
            .arg("-c")
            .arg(&self.config)
            .env_remove("LIVEGATE_API_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let guard = ChildGuard::new("livegate-api", child);
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        wait_until("livegate-api ready", || {
            let request = client.get(&url).send();
            async move {
                request
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(drop)
            }
        })
        .await;
        guard
    }

    fn ws(&self, room: i64, token: &str, since: Option<&str>) -> String {
        let mut url = format!("ws://127.0.0.1:{}/ws?room={room}&token={token}", self.port);
        if let Some(since) = since {
            url.push_str(&format!("&since={since}"));
        }
        url
    }
}

fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn connect(url: &str) -> Result<Ws, String> {
    tokio_tungstenite::connect_async_with_config(url, Some(small_buffers()), false)
        .await
        .map(|(ws, _)| ws)
        .map_err(|err| err.to_string())
}

/// The next text frame as JSON; `None` when the connection ends.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(WsMessage::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// What one reader saw.
#[derive(Debug, Default)]
struct Seen {
    /// `(offset, id)` of each chat frame, in arrival order.
    frames: Vec<(u64, String)>,
    /// The welcome of each reconnect: `(recovered, replayed)`.
    reconnects: Vec<(Option<bool>, Option<u64>)>,
}

struct Shared {
    connected: AtomicUsize,
    /// Readers that have every message up to `BEFORE`.
    caught_up: AtomicUsize,
    finished: AtomicUsize,
    /// The first reader that failed, and why.
    failed: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// Panics with the first failure, if a reader failed.
    fn check(&self) {
        if let Some(failure) = self.failed.lock().unwrap().as_ref() {
            panic!("{failure}");
        }
    }
}

/// One reader: on `first` until it goes away, then (once `away` is false) on `second` from
/// where it was, until it has the room's last offset (sent on `last` once the publishers
/// are done).
async fn reader(
    urls: (String, String),
    gate: Arc<Semaphore>,
    shared: Arc<Shared>,
    mut away: watch::Receiver<bool>,
    mut last: watch::Receiver<Option<u64>>,
) -> Result<Seen, String> {
    let mut seen = Seen::default();
    let mut position = String::new();
    let mut ws = {
        let _permit = gate.acquire().await.unwrap();
        let mut ws = connect(&urls.0)
            .await
            .map_err(|err| format!("a reader cannot connect to the first instance: {err}"))?;
        let welcome = next_json(&mut ws).await.ok_or("no welcome")?;
        position = since(&welcome["position"], &position);
        ws
    };
    shared.connected.fetch_add(1, Ordering::SeqCst);
    let mut on_second = false;
    loop {
        let frame = tokio::select! {
            frame = next_json(&mut ws) => Some(frame),
            changed = last.changed() => {
                assert!(changed.is_ok(), "the test ended first");
                None
            }
        };
        match frame {
            Some(Some(frame)) if frame["type"] == "chat" => {
                let offset = frame["offset"].as_u64().unwrap();
                seen.frames
                    .push((offset, frame["id"].as_str().unwrap().to_owned()));
                position = since(&frame, &position);
                if offset == BEFORE as u64 {
                    shared.caught_up.fetch_add(1, Ordering::SeqCst);
                }
            }
            // Another frame, or the last offset is known now.
            Some(Some(_)) | None => {}
            Some(None) => {
                if on_second {
                    return Err("the surviving instance closed a reader".to_owned());
                }
                // The first instance is gone: on to the second, from the last frame seen,
                // once the test has published the gap.
                away.wait_for(|away| !*away)
                    .await
                    .map_err(|_| "the test ended first")?;
                let _permit = gate.acquire().await.unwrap();
                ws = connect(&urls.1.replace("SINCE", &position))
                    .await
                    .map_err(|err| format!("a reader cannot reconnect to the second: {err}"))?;
                let welcome = next_json(&mut ws).await.ok_or("no welcome on the second")?;
                assert_eq!(welcome["type"], "welcome", "{welcome}");
                seen.reconnects
                    .push((welcome["recovered"].as_bool(), welcome["replayed"].as_u64()));
                on_second = true;
            }
        }
        let done = *last.borrow();
        if let Some(done) = done {
            if seen
                .frames
                .last()
                .is_some_and(|(offset, _)| *offset >= done)
            {
                break;
            }
        }
    }
    shared.finished.fetch_add(1, Ordering::SeqCst);
    Ok(seen)
}

/// `OFFSET:EPOCH` of a frame (or position), URL-safe as epochs are; `current` when it has
/// no epoch yet.
fn since(frame: &Value, current: &str) -> String {
    match (frame["offset"].as_u64(), frame["epoch"].as_str()) {
        (Some(offset), Some(epoch)) => format!("{offset}:{epoch}"),
        _ => current.to_owned(),
    }
}

/// Sends `n` messages round-robin over `publishers`, each after the previous one's ack;
/// returns `(offset, id)` of each.
async fn publish(publishers: &mut [Ws], from: usize, n: usize) -> Vec<(u64, String)> {
    let mut acked = Vec::with_capacity(n);
    for index in from..from + n {
        let ws = &mut publishers[index % PUBLISHERS];
        let reference = format!("m{index}");
        let frame = json!({"type": "chat", "text": reference, "ref": reference});
        ws.send(WsMessage::text(frame.to_string())).await.unwrap();
        loop {
            let frame = next_json(ws).await.expect("the publisher stays connected");
            if frame["type"] == "ack" && frame["ref"] == reference.as_str() {
                acked.push((
                    frame["offset"].as_u64().unwrap(),
                    frame["id"].as_str().unwrap().to_owned(),
                ));
                break;
            }
            assert_ne!(frame["type"], "error", "{frame}");
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_a_killed_instance_recover_every_message_from_the_other() {
    if livegate_core::testing::mysql_url().is_none() {
        return;
    }
    let Some(bus) = redis_config() else {
        return;
    };
    // A thousand sockets here, besides the test's other files.
    let wanted = u64::try_from(READERS * 2 + 256).unwrap();
    let limit = rlimit::increase_nofile_limit(wanted).unwrap();
    assert!(limit >= wanted, "the file limit is {limit}, below {wanted}");

    let test_db = TestDatabase::create(Backend::Mysql).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = Instance::new(dir.path(), "first", &test_db.url, &bus);
    let second = Instance::new(dir.path(), "second", &test_db.url, &bus);
    let client = reqwest::Client::new();
    let mut first_process = first.spawn(&client).await;
    let _second_process = second.spawn(&client).await;

    // The owner publishes (owners are exempt from the rate limit); readers hold play tokens.
    let api = format!("http://127.0.0.1:{}/api/v1", second.port);
    let reply = client
        .post(format!("{api}/users"))
        .json(&json!({"username": "owner", "password": PASSWORD, "role": "streamer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let session: Value = client
        .post(format!("{api}/sessions"))
        .json(&json!({"username": "owner", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = session["access_token"].as_str().unwrap().to_owned();
    let owner = session["user"]["id"].as_i64().unwrap();
    let room = rooms::create(
        &test_db.db,
        &NewRoom {
            owner_id: owner,
            title: "failover",
            stream_key: "failover-key",
            stream_key_expires_at: None,
            publish_allow_cidrs: None,
        },
        livegate_core::db::now_ms(),
    )
    .await
    .unwrap();
    let keys = livegate_core::token::TokenKeys::new([&Secret::new(PLAY_KEY)]).unwrap();
    let play = keys.mint(
        u64::try_from(room).unwrap(),
        livegate_api::unix_now() + 3600,
    );

    let shared = Arc::new(Shared {
        connected: AtomicUsize::new(0),
        caught_up: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        failed: std::sync::Mutex::new(None),
    });
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let (away_tx, away_rx) = watch::channel(true);
    let (last_tx, last_rx) = watch::channel(None);
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..READERS {
        let urls = (
            first.ws(room, &play, None),
            second.ws(room, &play, Some("SINCE")),
        );
        let (gate, shared, last) = (gate.clone(), shared.clone(), last_rx.clone());
        let away = away_rx.clone();
        readers.spawn(async move {
            let seen = reader(urls, gate, shared.clone(), away, last).await;
            if let Err(err) = &seen {
                shared
                    .failed
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| err.clone());
            }
            seen
        });
    }
    wait_until("every reader is on the first instance", || async {
        shared.check();
        (shared.connected.load(Ordering::SeqCst) == READERS).then_some(())
    })
    .await;

    let mut publishers = Vec::with_capacity(PUBLISHERS);
    for _ in 0..PUBLISHERS {
        let mut ws = connect(&second.ws(room, &access, None)).await.unwrap();
        assert_eq!(next_json(&mut ws).await.unwrap()["type"], "welcome");
        publishers.push(ws);
    }
    let mut acked = publish(&mut publishers, 0, BEFORE).await;
    assert_eq!(
        acked[BEFORE - 1].0,
        BEFORE as u64,
        "the room's log starts at 1"
    );
    wait_until("every reader has the first messages", || async {
        shared.check();
        (shared.caught_up.load(Ordering::SeqCst) == READERS).then_some(())
    })
    .await;

    // The burst: the first instance is killed in the middle of it, while it is still
    // handing the last messages to its readers; the gap is published while they are away,
    // the rest while they reconnect.
    acked.extend(publish(&mut publishers, BEFORE, KILL_AT).await);
    first_process.signal("KILL");
    first_process.wait();
    acked.extend(publish(&mut publishers, BEFORE + KILL_AT, GAP).await);
    away_tx.send_replace(false);
    acked.extend(publish(&mut publishers, BEFORE + KILL_AT + GAP, DURING).await);
    let expected: Vec<(u64, String)> = acked;
    let final_offset = expected.last().unwrap().0;
    last_tx.send_replace(Some(final_offset));

    let limit = livegate_tests::patience() * 4;
    let all = tokio::time::timeout(limit, async {
        let mut all = Vec::with_capacity(READERS);
        while let Some(seen) = readers.join_next().await {
            match seen.unwrap() {
                Ok(seen) => all.push(seen),
                Err(err) => {
                    let log = std::fs::read_to_string(&second.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    panic!(
                        "{err}; the second instance's log ends with:\n{}",
                        tail.join("\n")
                    );
                }
            }
        }
        all
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} of {READERS} readers got every message",
            shared.finished.load(Ordering::SeqCst)
        )
    });

    // The log's offsets run on without a hole: the acks are the whole room.
    assert!(expected.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    let mut replayed: HashMap<u64, usize> = HashMap::new();
    for seen in &all {
        assert_eq!(seen.reconnects.len(), 1, "each reader reconnected once");
        let (recovered, count) = seen.reconnects[0];
        assert_eq!(recovered, Some(true), "the gap is recovered");
        *replayed.entry(count.unwrap()).or_default() += 1;
        assert_eq!(
            seen.frames.len(),
            expected.len(),
            "every message once, none twice"
        );
        assert_eq!(
            seen.frames, expected,
            "in order, the very messages published"
        );
    }
    let least = replayed.keys().min().copied().unwrap_or(0);
    let most = replayed.keys().max().copied().unwrap_or(0);
    println!(
        "{READERS} readers recovered after SIGKILL: {} messages each, {least} to {most} replayed on reconnect",
        expected.len()
    );
    assert!(least >= GAP as u64, "each reader missed the gap");
    assert!(most <= (KILL_AT + GAP + DURING) as u64);
}
