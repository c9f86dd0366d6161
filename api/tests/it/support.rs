//! A real API service on 127.0.0.1:0 over a throw-away database and bus, and a client that
//! speaks its JSON.

use std::net::SocketAddr;

use livegate_api::config::Config;
use livegate_api::kick::Origins;
use livegate_api::{App, Deps};
use livegate_core::bus::{Bus, BusConfig};
use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{Backend, Database};
use livegate_core::service::{Shutdown, Stop};
use livegate_core::Secret;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

pub(crate) use livegate_tests::wait_until;

/// The play token key of every test app (also the proxy's, where a test starts one).
pub(crate) const PLAY_KEY: &str = "test-play-key";
/// The JWT key of every test app.
pub(crate) const JWT_KEY: &str = "test-jwt-key-0123456789abcdef0123456789";
/// The password every test user gets.
pub(crate) const PASSWORD: &str = "correct horse battery";

/// The configuration tests start from: cheap argon2, no play-token limit.
pub(crate) fn test_config() -> Config {
    let mut config = Config::default();
    config.auth.jwt_keys = vec![Secret::new(JWT_KEY)];
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    config.play_token.keys = vec![Secret::new(PLAY_KEY)];
    config.play_token.per_address_per_minute = 0;
    config.auth.registrations_per_address_per_hour = 0;
    config.rooms.ingest_host = "ingest.example:1935".to_owned();
    config.rooms.edge_base_url = "https://edge.example".to_owned();
    config.server.shutdown_grace_ms = 2000;
    config
}

/// A name no other test uses.
pub(crate) fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}{}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis bus config with a key prefix of its own, when Redis is configured (required
/// under CI, see `livegate_core::testing`).
pub(crate) fn redis_config() -> Option<BusConfig> {
    let url = livegate_core::testing::redis_url()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some(BusConfig {
        url: Secret::new(url),
        key_prefix: format!("lgapitest:{}:{nanos}", unique("p")),
        ..BusConfig::default()
    })
}

/// The setups to run a suite against: SQLite with the in-process bus always, and MariaDB
/// with Redis where they are configured.
pub(crate) fn setups() -> Vec<(Backend, Option<BusConfig>)> {
    let mut setups = vec![(Backend::Sqlite, None)];
    if livegate_core::testing::mysql_url().is_some() {
        setups.push((Backend::Mysql, redis_config()));
    } else if let Some(redis) = redis_config() {
        setups.push((Backend::Sqlite, Some(redis)));
    }
    setups
}

/// What to start a test app with.
pub(crate) struct Options {
    pub(crate) backend: Backend,
    pub(crate) config: Config,
    pub(crate) bus: Option<BusConfig>,
    pub(crate) origins: Origins,
    /// A database to use instead of a fresh one (shared with a hooks service).
    pub(crate) db: Option<Database>,
}

impl Options {
    pub(crate) fn new(backend: Backend, bus: Option<BusConfig>) -> Self {
        Self {
            backend,
            config: test_config(),
            bus,
            origins: Origins::default(),
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
    pub(crate) app_state: livegate_api::state::AppState,
    pub(crate) client: reqwest::Client,
    shutdown: Shutdown,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    // Dropped last: the database outlives the service.
    _test_db: Option<TestDatabase>,
}

/// An answer: status and JSON body (`Value::Null` when empty).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    /// The envelope's `error.code`.
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// The envelope's `error.field`.
    pub(crate) fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or_default()
    }
}

/// Sends `request` and reads its answer (an empty body is `null`; any other must be JSON).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) user_id: i64,
    pub(crate) access: String,
    pub(crate) refresh: String,
}

impl TestApp {
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
                origins: options.origins,
            },
        )
        .unwrap();
        let app_state = app.state().clone();
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
            app_state,
            client: reqwest::Client::new(),
            shutdown,
            handle: Some(handle),
            _test_db: test_db,
        }
    }

    pub(crate) async fn spawn(backend: Backend, bus: Option<BusConfig>) -> TestApp {
        Self::start(Options::new(backend, bus)).await
    }

    /// `method path` with an optional bearer token and JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Registers `username` with `role` (an admin token is needed for `admin`).
    pub(crate) async fn register(&self, username: &str, role: &str, by: Option<&str>) -> Reply {
        self.post(
            "/api/v1/users",
            by,
            json!({"username": username, "password": PASSWORD, "role": role}),
        )
        .await
    }

    /// Logs `username` in.
    pub(crate) async fn login(&self, username: &str) -> Session {
        let reply = self
            .post(
                "/api/v1/sessions",
                None,
                json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        session(&reply)
    }

    /// A fresh user with `role` (admins created as the CLI does), logged in.
    pub(crate) async fn user(&self, role: &str) -> Session {
        let name = unique(role);
        if role == "admin" {
            livegate_api::create_admin(&self.app_state, &name, PASSWORD)
                .await
                .unwrap();
        } else {
            let reply = self.register(&name, role, None).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
        }
        self.login(&name).await
    }

    /// A room created by `owner`: (room id, stream key).
    pub(crate) async fn room(&self, owner: &Session) -> (i64, String) {
        let reply = self
            .post(
                "/api/v1/rooms",
                Some(&owner.access),
                json!({"title": "test room"}),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        (
            reply.body["room"]["id"].as_i64().unwrap(),
            reply.body["stream_key"].as_str().unwrap().to_owned(),
        )
    }

    /// `GET /metrics`.
    pub(crate) async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Shuts the service down and checks it stopped cleanly.
    pub(crate) async fn stop(mut self) {
        self.shutdown.request(Stop::Drain);
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(livegate_tests::patience(), handle)
                .await
                .expect("the service stops")
                .unwrap()
                .unwrap();
        }
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

/// The session in a login or refresh answer.
pub(crate) fn session(reply: &Reply) -> Session {
    Session {
        user_id: reply.body["user"]["id"].as_i64().unwrap(),
        access: reply.body["access_token"].as_str().unwrap().to_owned(),
        refresh: reply.body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// An address nothing listens on.
pub(crate) fn dead_addr() -> SocketAddr {
    livegate_tests::free_addr()
}
