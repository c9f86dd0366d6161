//! A real hooks service on 127.0.0.1:0 over a throw-away database and bus.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use livegate_core::bus::{Bus, BusConfig, Job, Received, RecordingJob, RoomEvent, Subscriber};
use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{rooms, streams, users, Backend, Database, Stream};
use livegate_core::origin::srs::SrsStreams;
use livegate_core::origin::{OriginControl, OriginError, OriginStreams, StreamRef};
use livegate_core::service::{Shutdown, Stop};
use livegate_core::Secret;
use livegate_hooks::config::Config;
use livegate_hooks::state::{AppState, Origins};
use livegate_hooks::{App, Deps};
use tokio::task::JoinHandle;

pub(crate) use livegate_tests::wait_until;

/// The key of the SRS fixtures' publisher (`?key=secret123`).
pub(crate) const FIXTURE_KEY: &str = "secret123";
/// The play token key used by every test app.
pub(crate) const PLAY_KEY: &str = "test-play-key";

/// Reads an SRS fixture body.
pub(crate) fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/srs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"))
}

/// An SRS fixture with some top-level fields replaced.
pub(crate) fn fixture_with(name: &str, changes: &[(&str, serde_json::Value)]) -> String {
    let mut body: serde_json::Value = serde_json::from_str(&fixture(name)).unwrap();
    for (key, value) in changes {
        body[*key] = value.clone();
    }
    body.to_string()
}

/// A Redis bus config with a key prefix of its own. Redis is required under CI (see
/// `livegate_core::testing`); elsewhere, without it, the skip is reported and `None` returned.
pub(crate) fn redis_config() -> Option<BusConfig> {
    let url = livegate_core::testing::redis_url()?;
    Some(BusConfig {
        url: Secret::new(url),
        key_prefix: unique("lgtest"),
        ..BusConfig::default()
    })
}

/// A name no other test uses.
pub(crate) fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}:{}:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The buses to run a suite against: the in-process one always, and Redis (required under
/// CI, see [`redis_config`]).
pub(crate) fn buses() -> Vec<Option<BusConfig>> {
    let mut buses = vec![None];
    if let Some(redis) = redis_config() {
        buses.push(Some(redis));
    }
    buses
}

/// The service on a fresh MariaDB database answering within `deadline_ms`, with room 42 keyed
/// [`FIXTURE_KEY`]; the test database is returned too, for holding locks from another
/// connection. MariaDB is required under CI (see `livegate_core::testing`); elsewhere,
/// without it, the skip is reported and `None` returned.
pub(crate) async fn mysql_app_with_deadline(deadline_ms: u64) -> Option<(TestDatabase, TestApp)> {
    livegate_core::testing::mysql_url()?;
    let test_db = TestDatabase::create(Backend::Mysql).await.unwrap();
    let mut config = test_config();
    config.server.deadline_ms = deadline_ms;
    let app = TestApp::start(Options {
        config,
        db: Some(test_db.db.clone()),
        ..Options::new(Backend::Mysql)
    })
    .await;
    app.room(42, FIXTURE_KEY).await;
    Some((test_db, app))
}

/// The configuration tests start from: loopback callers, one play key, no rate limit.
pub(crate) fn test_config() -> Config {
    let mut config = Config::default();
    config.play.token_keys = vec![Secret::new(PLAY_KEY)];
    config.publish.attempts_per_ip_per_minute = 0;
    config.server.shutdown_grace_ms = 2000;
    config.outbox.retry_initial_ms = 20;
    config.outbox.retry_max_ms = 200;
    config
}

/// An SRS API whose answers the test sets, and which records kicks.
#[derive(Debug, Default)]
pub(crate) struct FakeSrs {
    /// What `GET /api/v1/streams` returns.
    pub(crate) streams: Mutex<SrsStreams>,
    /// Client ids kicked so far.
    pub(crate) kicked: Mutex<Vec<String>>,
}

#[async_trait]
impl OriginControl for FakeSrs {
    async fn streams(&self) -> Result<OriginStreams, OriginError> {
        Ok(self.streams.lock().unwrap().clone().into())
    }

    async fn kick(&self, stream: &StreamRef<'_>) -> Result<(), OriginError> {
        let client_id = stream.publisher.unwrap_or_default();
        self.kicked.lock().unwrap().push(client_id.to_owned());
        Ok(())
    }
}

/// What to start a test app with.
pub(crate) struct Options {
    pub(crate) backend: Backend,
    pub(crate) config: Config,
    pub(crate) bus: Option<BusConfig>,
    pub(crate) srs: Option<Arc<FakeSrs>>,
    /// A ZLMediaKit API (e.g. the real client against a fake server).
    pub(crate) zlm: Option<Arc<dyn OriginControl>>,
    /// A database to use instead of a fresh test database (e.g. an unreachable one).
    pub(crate) db: Option<Database>,
}

impl Options {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend,
            config: test_config(),
            bus: None,
            srs: None,
            zlm: None,
            db: None,
        }
    }
}

/// A running service.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) db: Database,
    pub(crate) bus: Bus,
    pub(crate) state: AppState,
    pub(crate) client: reqwest::Client,
    shutdown: Shutdown,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    // Dropped last: the database outlives the service.
    _test_db: Option<TestDatabase>,
}

impl TestApp {
    pub(crate) async fn spawn(backend: Backend) -> TestApp {
        Self::start(Options::new(backend)).await
    }

    pub(crate) async fn start(options: Options) -> TestApp {
        let (db, test_db) = match options.db {
            Some(db) => (db, None),
            None => {
                let test_db = TestDatabase::create(options.backend).await.unwrap();
                (test_db.db.clone(), Some(test_db))
            }
        };
        let bus_config = options.bus.unwrap_or_default();
        let bus = Bus::connect(&bus_config).unwrap();
        let mut config = options.config;
        config.bus = bus_config;
        let app = App::build_with(
            config,
            Deps {
                db: db.clone(),
                bus: bus.clone(),
                origins: Origins {
                    srs: options.srs.map(|srs| srs as Arc<dyn OriginControl>),
                    zlm: options.zlm,
                },
            },
        )
        .unwrap();
        let state = app.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let admin_base = format!("http://{}", admin.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(app.run(listener, admin, shutdown.clone()));
        TestApp {
            base,
            admin: admin_base,
            db,
            bus,
            state,
            client: reqwest::Client::new(),
            shutdown,
            handle: Some(handle),
            _test_db: test_db,
        }
    }

    /// Posts `body` to `/api/v1/hook/{route}{query}` and returns status, content type and body.
    pub(crate) async fn post_raw(
        &self,
        route_and_query: &str,
        content_type: &str,
        body: String,
    ) -> (u16, String, String) {
        let response = self
            .client
            .post(format!("{}/api/v1/hook/{route_and_query}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let ctype = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ctype, response.text().await.unwrap())
    }

    /// Posts a JSON body (SRS, ZLMediaKit).
    pub(crate) async fn json(&self, route: &str, body: String) -> (u16, String) {
        let (status, ctype, body) = self.post_raw(route, "application/json", body).await;
        assert_eq!(ctype, "application/json", "JSON dialects get JSON replies");
        (status, body)
    }

    /// Posts a form body (nginx-rtmp).
    pub(crate) async fn form(&self, route: &str, body: &str) -> (u16, String) {
        let (status, _, body) = self
            .post_raw(route, "application/x-www-form-urlencoded", body.to_owned())
            .await;
        (status, body)
    }

    /// Creates a user and a room with this exact id and key.
    pub(crate) async fn room(&self, id: i64, key: &str) {
        self.room_with(id, key, None, None).await;
    }

    /// Creates a room with an allowlist and/or key expiry.
    pub(crate) async fn room_with(
        &self,
        id: i64,
        key: &str,
        cidrs: Option<&str>,
        expires_at: Option<i64>,
    ) {
        let user = format!("user{id}");
        let owner = users::create(&self.db, &user, "hash", "streamer", 1)
            .await
            .unwrap();
        let sql = "INSERT INTO rooms (id, owner_id, title, stream_key, stream_key_expires_at, \
                   publish_allow_cidrs, created_at) VALUES (?, ?, 'test', ?, ?, ?, 1)";
        match &self.db {
            Database::Mysql(pool) => {
                sqlx::query(sql)
                    .bind(id)
                    .bind(owner)
                    .bind(key)
                    .bind(expires_at)
                    .bind(cidrs)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Database::Sqlite(pool) => {
                sqlx::query(sql)
                    .bind(id)
                    .bind(owner)
                    .bind(key)
                    .bind(expires_at)
                    .bind(cidrs)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    pub(crate) async fn is_live(&self, room: i64) -> bool {
        rooms::get(&self.db, room).await.unwrap().unwrap().is_live
    }

    pub(crate) async fn streams(&self, room: i64) -> Vec<Stream> {
        streams::of_room(&self.db, room).await.unwrap()
    }

    /// The open stream of `room`, which must be live.
    pub(crate) async fn open_stream(&self, room: i64) -> Stream {
        streams::open(&self.db, room).await.unwrap().unwrap()
    }

    /// Subscribes to the room events.
    pub(crate) async fn events(&self) -> Subscriber<RoomEvent> {
        self.bus.events().subscribe().await.unwrap()
    }

    /// Waits for the recording jobs queued so far, as consumer `consumer` of the queue.
    pub(crate) async fn recording_jobs(&self, consumer: &str) -> Vec<Job<RecordingJob>> {
        let jobs = self.bus.recordings().consumer(consumer);
        wait_until("a recording job", || {
            let jobs = jobs.clone();
            async move {
                let got = jobs.next(10, Duration::ZERO).await.ok()?;
                (!got.is_empty()).then_some(got)
            }
        })
        .await
    }

    /// Waits until the bus's live key of `room` is `live`.
    pub(crate) async fn wait_bus_live(&self, room: i64, live: bool) {
        let bus = self.bus.clone();
        wait_until("the bus live key", || {
            let bus = bus.clone();
            async move {
                let state = bus.live(room).await.ok()?;
                (state.is_some() == live).then_some(())
            }
        })
        .await;
    }

    /// `GET /readyz`: status and body.
    pub(crate) async fn ready(&self) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}/readyz", self.admin))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Polls `/metrics` until a line starting with `prefix` reads at least `min`.
    pub(crate) async fn wait_metric(&self, prefix: &str, min: f64) {
        let url = format!("{}/metrics", self.admin);
        let client = self.client.clone();
        wait_until(prefix, || {
            let (url, client) = (url.clone(), client.clone());
            async move {
                let text = client.get(url).send().await.ok()?.text().await.ok()?;
                let value: f64 = text
                    .lines()
                    .find(|line| line.starts_with(prefix))?
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()?;
                (value >= min).then_some(())
            }
        })
        .await;
    }

    /// Shuts the service down and checks it stopped cleanly.
    pub(crate) async fn stop(self) {
        self.stop_as(Stop::Drain).await;
    }

    /// Asks the service to stop as `stop` says and checks it stopped cleanly, within the
    /// patience.
    pub(crate) async fn stop_as(mut self, stop: Stop) {
        self.shutdown.request(stop);
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(livegate_tests::patience(), handle)
                .await
                .expect("the service stops")
                .unwrap()
                .unwrap();
        }
        // Redis keeps nothing from this test.
        if let Bus::Redis(_) = &self.bus {
            self.bus.clear().await.unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.request(Stop::Now);
    }
}

/// The next room event of `events` (within the patience), past notices of missed ones.
pub(crate) async fn next_event(events: &mut Subscriber<RoomEvent>) -> RoomEvent {
    loop {
        let received = tokio::time::timeout(livegate_tests::patience(), events.recv())
            .await
            .expect("a room event")
            .expect("the bus is open");
        if let Received::Message(event) = received {
            return event;
        }
    }
}

/// The accept body both JSON dialects get.
pub(crate) const ACCEPT: &str = r#"{"code":0,"msg":"success"}"#;

/// The body of a ZLMediaKit fixture's sample whose `variant` is `variant` (`""` for the first).
pub(crate) fn zlm_fixture(name: &str, variant: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/zlmediakit/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"));
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let samples = file["samples"].as_array().unwrap();
    let sample = samples
        .iter()
        .find(|s| variant.is_empty() || s["variant"] == variant)
        .unwrap_or_else(|| panic!("{name}: no sample {variant:?}"));
    sample["body"].clone()
}

/// A ZLMediaKit fixture body with some top-level fields replaced, as a string.
pub(crate) fn zlm_body(name: &str, variant: &str, changes: &[(&str, serde_json::Value)]) -> String {
    let mut body = zlm_fixture(name, variant);
    for (key, value) in changes {
        body[*key] = value.clone();
    }
    body.to_string()
}

/// A play token for `room` valid for `seconds` more, signed with [`PLAY_KEY`].
pub(crate) fn play_token(room: u64, seconds: u64) -> String {
    livegate_core::token::TokenKeys::new(&[Secret::new(PLAY_KEY)])
        .unwrap()
        .mint(room, livegate_core::unix_now() + seconds)
}

/// What a fake ZLMediaKit API has been asked, and what it answers.
#[derive(Debug, Default)]
pub(crate) struct ZlmApiState {
    /// The media sources `getMediaList` lists (entries shaped like `makeMediaSourceJson`).
    pub(crate) media: Vec<serde_json::Value>,
    /// Every call: the API name and its form fields.
    pub(crate) calls: Vec<(String, Vec<(String, String)>)>,
    /// The raw query strings the calls came with.
    pub(crate) queries: Vec<String>,
}

/// The `api.secret` the fake ZLMediaKit API expects.
pub(crate) const ZLM_SECRET: &str = "zlm-api-secret-4711";

/// A ZLMediaKit HTTP API on 127.0.0.1:0 answering `getMediaList` and `close_streams` the way
/// ZLMediaKit does (a wrong secret gets code -100).
pub(crate) struct FakeZlm {
    pub(crate) base: String,
    pub(crate) state: Arc<Mutex<ZlmApiState>>,
    server: JoinHandle<()>,
}

impl FakeZlm {
    pub(crate) async fn start() -> FakeZlm {
        use axum::extract::{Path, RawQuery, State};
        use axum::routing::post;
        let state = Arc::new(Mutex::new(ZlmApiState::default()));
        let app = axum::Router::new()
            .route(
                "/index/api/{api}",
                post(
                    |State(state): State<Arc<Mutex<ZlmApiState>>>,
                     Path(api): Path<String>,
                     RawQuery(query): RawQuery,
                     body: String| async move {
                        let form: Vec<(String, String)> =
                            form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                        let mut state = state.lock().unwrap();
                        state.calls.push((api.clone(), form.clone()));
                        state.queries.push(query.unwrap_or_default());
                        let field = |name: &str| {
                            form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
                        };
                        if field("secret").as_deref() != Some(ZLM_SECRET) {
                            return serde_json::json!({"code": -100, "msg": "Incorrect secret"})
                                .to_string();
                        }
                        match api.as_str() {
                            "getMediaList" => {
                                serde_json::json!({"code": 0, "data": state.media}).to_string()
                            }
                            "close_streams" => {
                                let before = state.media.len();
                                let stream = field("stream");
                                state.media.retain(|m| m["stream"].as_str() != stream.as_deref());
                                let hit = before - state.media.len();
                                serde_json::json!({"code": 0, "count_hit": hit, "count_closed": hit})
                                    .to_string()
                            }
                            _ => serde_json::json!({"code": -500, "msg": "not found"}).to_string(),
                        }
                    },
                ),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeZlm {
            base,
            state,
            server,
        }
    }

    /// The real client for this server, as server `zlm-1`.
    pub(crate) fn client(&self) -> Arc<dyn OriginControl> {
        Arc::new(
            livegate_core::origin::zlm::ZlmApi::new(
                &self.base,
                Secret::new(ZLM_SECRET),
                "zlm-1",
                Duration::from_secs(5),
            )
            .unwrap(),
        )
    }

    /// Lists `stream` of `live` with a publisher `publisher` and `readers` viewers, in the
    /// schemas rtmp, rtsp and hls, shaped like the fixture's `regist:true` body.
    pub(crate) fn publish(&self, stream: &str, publisher: &str, readers: u64) {
        let mut state = self.state.lock().unwrap();
        for schema in ["rtmp", "rtsp", "hls"] {
            let mut source = zlm_fixture("on_stream_changed", "regist=True");
            let object = source.as_object_mut().unwrap();
            for key in ["regist", "mediaServerId", "hook_index"] {
                object.remove(key);
            }
            source["schema"] = schema.into();
            source["stream"] = stream.into();
            source["originSock"]["identifier"] = publisher.into();
            source["readerCount"] = (if schema == "hls" { readers } else { 0 }).into();
            source["totalReaderCount"] = readers.into();
            state.media.push(source);
        }
    }

    /// Lists nothing any more.
    pub(crate) fn clear(&self) {
        self.state.lock().unwrap().media.clear();
    }
}

impl Drop for FakeZlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The test configuration with ZLMediaKit's API set up for server `zlm-1`.
pub(crate) fn zlm_config(fake: &FakeZlm) -> Config {
    let mut config = test_config();
    config.zlmediakit.api_url = Some(fake.base.clone());
    config.zlmediakit.api_secret = Some(Secret::new(ZLM_SECRET));
    config.zlmediakit.server_id = Some("zlm-1".to_owned());
    config
}
