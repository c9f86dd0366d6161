//! `livegate up`: the whole toolkit (proxy, hooks, room API, recorder) in one process on embedded defaults — a SQLite file, the
//! in-process bus shared by every service, local directories — with local ports that do not
//! clash, a demo room on first start, and one clean shutdown for all of it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livegate_api::auth::Role;
use livegate_core::bus::Bus;
use livegate_core::db::{rooms, Database};
use livegate_core::service::CancellationToken;
use livegate_core::service::{bind, Shutdown, Stop};
use livegate_core::token::TokenKeys;
use livegate_core::{unix_now, unix_now_ms, Secret};
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::oneshot;

use crate::data::{random_hex, DataDir, DataError};

/// Where everything listens: the shipped configs' ports, on loopback.
pub mod ports {
    /// Viewers (HTTP-FLV, HLS).
    pub const PROXY: u16 = 8080;
    /// The proxy's metrics and health.
    pub const PROXY_ADMIN: u16 = 9180;
    /// The origin's callbacks.
    pub const HOOKS: u16 = 8085;
    /// The hooks service's metrics and health.
    pub const HOOKS_ADMIN: u16 = 9185;
    /// The room API.
    pub const API: u16 = 8090;
    /// The API's metrics and health.
    pub const API_ADMIN: u16 = 9190;
    /// The recorder's metrics and health.
    pub const RECORDER_ADMIN: u16 = 9195;
    /// Every one of them, each moved by `--port-offset`.
    pub const ALL: [u16; 7] = [
        PROXY,
        HOOKS,
        API,
        PROXY_ADMIN,
        HOOKS_ADMIN,
        API_ADMIN,
        RECORDER_ADMIN,
    ];
}

/// How `livegate up` runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The origin's HTTP server (SRS's `http_server.listen`).
    pub origin: String,
    /// Redis instead of the in-process bus.
    pub redis: Option<String>,
    /// MySQL/MariaDB instead of the SQLite file.
    pub mysql: Option<String>,
    /// The host viewers and publishers use in the printed URLs.
    pub public_host: String,
    /// Added to every port (to run two toolkits side by side, and for tests).
    pub port_offset: u16,
    /// Directories besides the data directory's `recordings/` that the origin records into
    /// and whose files its callbacks may name (the recorder refuses files anywhere else).
    pub recordings_from: Vec<PathBuf>,
}

/// Why `livegate up` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The data directory.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A service's configuration, as assembled from the options.
    #[error("{service} configuration: {message}")]
    Config {
        /// Which service.
        service: &'static str,
        /// The problems.
        message: String,
    },
    /// The database.
    #[error("database: {0}")]
    Db(#[from] livegate_core::db::DbError),
    /// The bus.
    #[error("bus: {0}")]
    Bus(#[from] livegate_core::bus::BusError),
    /// A listener.
    #[error(transparent)]
    Bind(#[from] livegate_core::service::BindError),
    /// The hooks service.
    #[error("hooks: {0}")]
    Hooks(#[from] livegate_hooks::StartError),
    /// The room API.
    #[error("api: {0}")]
    Api(#[from] livegate_api::StartError),
    /// The proxy.
    #[error("proxy: {0}")]
    Proxy(String),
    /// The runtime, signals or a thread.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The services' configurations for these options.
pub struct Plan {
    /// The proxy's.
    pub proxy: livegate_proxy::Config,
    /// The hooks service's.
    pub hooks: livegate_hooks::Config,
    /// The room API's.
    pub api: livegate_api::Config,
    /// The recorder's.
    pub recorder: livegate_recorder::Config,
    /// The data directory.
    pub data: DataDir,
    /// Whether the secrets were made now (a first start).
    pub first_start: bool,
    options: UpOptions,
    token_key: Secret,
}

/// `dir` made absolute against the working directory (the recorder takes only absolute
/// directories).
fn absolute_dir(dir: &std::path::Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn port(options: &UpOptions, base: u16) -> u16 {
    base.saturating_add(options.port_offset)
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

impl Plan {
    /// Opens the data directory (making its secrets on first start) and assembles every
    /// service's configuration.
    pub fn new(options: UpOptions) -> Result<Plan, UpError> {
        let data = DataDir::open(&options.data_dir)?;
        let (secrets, first_start) = data.secrets()?;
        let key = toml_string(&secrets.token_key);
        let run = data.run_dir();
        // The API's own pages (the console, the watch page) play from the proxy and open chat,
        // under the public host and, on this machine, under `localhost` too.
        let api_port = port(&options, ports::API);
        let mut page_hosts = vec![options.public_host.as_str()];
        if options.public_host == "127.0.0.1" {
            page_hosts.push("localhost");
        }
        let pages = page_hosts
            .iter()
            .map(|host| toml_string(&format!("http://{host}:{api_port}")))
            .collect::<Vec<_>>()
            .join(", ");
        let proxy_text = format!(
            "[server]\nlisten = [\"127.0.0.1:{proxy}\"]\ngrace_period_s = 10\nshutdown_timeout_s = 2\n\
             pid_file = {pid}\nupgrade_sock = {sock}\n\
             [admin]\nlisten = \"127.0.0.1:{proxy_admin}\"\n\
             [origin]\naddresses = [{origin}]\n\
             [token]\nkeys = [{key}]\n\
             [cors]\nallowed_origins = [{pages}]\n",
            proxy = port(&options, ports::PROXY),
            proxy_admin = port(&options, ports::PROXY_ADMIN),
            pid = toml_string(&run.join("proxy.pid").display().to_string()),
            sock = toml_string(&run.join("proxy-upgrade.sock").display().to_string()),
            origin = toml_string(&options.origin),
        );
        let database = match &options.mysql {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", data.database().display()),
        };
        let hooks_text = format!(
            "[server]\nlisten = \"127.0.0.1:{hooks}\"\nadmin_listen = \"127.0.0.1:{hooks_admin}\"\n\
             [database]\nurl = {database}\n\
             [bus]\nurl = {bus}\n\
             [play]\ntoken_keys = [{key}]\n",
            hooks = port(&options, ports::HOOKS),
            hooks_admin = port(&options, ports::HOOKS_ADMIN),
            database = toml_string(&database),
            bus = toml_string(options.redis.as_deref().unwrap_or("memory:")),
        );
        let api_text = format!(
            "[server]\nlisten = \"127.0.0.1:{api}\"\nadmin_listen = \"127.0.0.1:{api_admin}\"\n\
             [database]\nurl = {database}\n\
             [bus]\nurl = {bus}\n\
             [auth]\njwt_keys = [{jwt}]\n\
             [rooms]\ningest_host = {host}\nedge_base_url = {edge}\n\
             [play_token]\nkeys = [{key}]\n\
             [payments]\ncallback_secrets = [{payment}]\n\
             [chat]
allowed_origins = [{edge}, {pages}]
\
             [[origins]]
kind = \"srs\"
url = \"http://127.0.0.1:1985\"
\
             [[origins]]
kind = \"nginx-rtmp\"
url = {control}
\
             [console]
proxy_metrics_url = \"http://127.0.0.1:{proxy_admin}/metrics\"
\
             hooks_metrics_url = \"http://127.0.0.1:{hooks_admin}/metrics\"
\
             recorder_metrics_url = \"http://127.0.0.1:{recorder_admin}/metrics\"
\
             [recordings]
kind = \"local\"
[recordings.local]
dir = {stored}
",
            api = port(&options, ports::API),
            api_admin = port(&options, ports::API_ADMIN),
            proxy_admin = port(&options, ports::PROXY_ADMIN),
            hooks_admin = port(&options, ports::HOOKS_ADMIN),
            recorder_admin = port(&options, ports::RECORDER_ADMIN),
            stored = toml_string(&data.root().join("stored").display().to_string()),
            database = toml_string(&database),
            bus = toml_string(options.redis.as_deref().unwrap_or("memory:")),
            jwt = toml_string(&secrets.jwt_key),
            payment = toml_string(&secrets.payment_secret),
            // nginx-rtmp's control module on its HTTP server (infra/nginx-rtmp/nginx.conf).
            control = toml_string(&format!("http://{}/control", options.origin)),
            host = toml_string(&options.public_host),
            edge = toml_string(&format!(
                "http://{}:{}",
                options.public_host,
                port(&options, ports::PROXY)
            )),
        );
        let root = data.root().display().to_string();
        // Watched, and the only places callbacks may name files in.
        let recording_dirs = std::iter::once(data.recordings())
            .chain(options.recordings_from.iter().map(|dir| absolute_dir(dir)))
            .map(|dir| toml_string(&dir.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let recorder_text = format!(
            "[server]\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [database]\nurl = {database}\n\
             [bus]\nurl = {bus}\n\
             [watch]\ndirs = [{watched}]\n\
             [remux]\nwork_dir = {work}\nfailed_dir = {failed}\n\
             [storage]\nkind = \"local\"\n[storage.local]\ndir = {stored}\n\
             [pictures.snapshots]\n\
             play_url = \"rtmp://127.0.0.1:1935/live/{{room}}?token={{token}}\"\n\
             token_key = {key}\n",
            admin = port(&options, ports::RECORDER_ADMIN),
            database = toml_string(&database),
            bus = toml_string(options.redis.as_deref().unwrap_or("memory:")),
            watched = recording_dirs,
            work = toml_string(&format!("{root}/recorder/work")),
            failed = toml_string(&format!("{root}/recorder/failed")),
            stored = toml_string(&format!("{root}/stored")),
        );
        let recorder = livegate_core::config::from_toml_str(&recorder_text).map_err(|err| {
            UpError::Config {
                service: "recorder",
                message: err.to_string(),
            }
        })?;
        let api =
            livegate_core::config::from_toml_str(&api_text).map_err(|err| UpError::Config {
                service: "api",
                message: err.to_string(),
            })?;
        let proxy =
            livegate_core::config::from_toml_str(&proxy_text).map_err(|err| UpError::Config {
                service: "proxy",
                message: err.to_string(),
            })?;
        let hooks =
            livegate_core::config::from_toml_str(&hooks_text).map_err(|err| UpError::Config {
                service: "hooks",
                message: err.to_string(),
            })?;
        Ok(Plan {
            proxy,
            hooks,
            api,
            recorder,
            data,
            first_start,
            options,
            token_key: Secret::new(secrets.token_key),
        })
    }
}

/// The demo room, made on first start with its streamer and the first admin.
#[derive(Debug, Clone)]
pub struct DemoRoom {
    /// Its id.
    pub id: i64,
    /// Its stream key.
    pub stream_key: String,
    /// The accounts made now, with their passwords (shown once).
    pub accounts: Vec<(&'static str, String)>,
}

/// Makes the first admin, a demo streamer and their room on first start (found again later by
/// the id noted in the data directory).
async fn demo_room(
    db: &Database,
    api: &livegate_api::state::AppState,
    plan: &Plan,
) -> Result<Option<DemoRoom>, UpError> {
    let noted = plan.data.root().join("demo-room");
    if let Ok(text) = std::fs::read_to_string(&noted) {
        if let Ok(id) = text.trim().parse::<i64>() {
            return Ok(rooms::get(db, id).await?.map(|room| DemoRoom {
                id: room.id,
                stream_key: room.stream_key,
                accounts: Vec::new(),
            }));
        }
    }
    let mut accounts = Vec::new();
    let mut owner = None;
    for (username, role) in [("admin", Role::Admin), ("demo", Role::Streamer)] {
        let password = random_hex(12)?;
        let id = livegate_api::create_account(api, username, &password, role).await?;
        accounts.push((username, password));
        owner = Some(id);
    }
    let owner = owner.unwrap_or_default();
    let stream_key = livegate_api::auth::random_token(32);
    let id = rooms::create(
        db,
        &rooms::NewRoom {
            owner_id: owner,
            title: "Demo room",
            stream_key: &stream_key,
            stream_key_expires_at: None,
            publish_allow_cidrs: None,
        },
        unix_now_ms(),
    )
    .await?;
    std::fs::write(&noted, format!("{id}\n")).map_err(|source| DataError::Io {
        path: noted,
        source,
    })?;
    Ok(Some(DemoRoom {
        id,
        stream_key,
        accounts,
    }))
}

/// Pingora's shutdown signal, from the process's shutdown switch.
struct FromShutdown(Shutdown);

#[async_trait]
impl ShutdownSignalWatch for FromShutdown {
    async fn recv(&self) -> ShutdownSignal {
        match self.0.requested().await {
            Stop::Drain => ShutdownSignal::GracefulTerminate,
            Stop::Now => ShutdownSignal::FastShutdown,
        }
    }
}

/// First SIGINT or SIGTERM: drain everything (Ctrl-C at a terminal means "stop cleanly");
/// a second one: stop at once.
async fn stop_on_signals(shutdown: Shutdown, done: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            () = done.cancelled() => return Ok(()),
        }
        let stop = if shutdown.token().is_cancelled() {
            Stop::Now
        } else {
            Stop::Drain
        };
        tracing::info!(stop = ?stop, "stop requested by signal");
        shutdown.request(stop);
    }
}

/// Runs everything until a signal (or `shutdown`) stops it.
pub async fn run(plan: Plan, shutdown: Shutdown) -> Result<(), UpError> {
    let signals_done = CancellationToken::new();
    // Not on the shutdown's tracker: the services' drains wait for tracked tasks, and this one
    // ends only after them (it is awaited below).
    let signals = tokio::spawn(stop_on_signals(shutdown.clone(), signals_done.clone()));

    let bus = Bus::connect(&plan.hooks.bus)?;
    let db = Database::connect(&plan.hooks.database).await?;
    db.migrate().await?;

    let api_listener = bind(plan.api.server.listen, "api server.listen").await?;
    let api_admin = bind(plan.api.server.admin_listen, "api server.admin_listen").await?;
    let api = livegate_api::App::build_with(
        plan.api.clone(),
        livegate_api::Deps {
            db: db.clone(),
            bus: bus.clone(),
            origins: livegate_api::kick::Origins::from_config(&plan.api.origins)
                .map_err(livegate_api::StartError::from)?,
        },
    )?;
    let demo = demo_room(&db, api.state(), &plan).await?;

    let recorder_admin = bind(
        plan.recorder.server.admin_listen,
        "recorder server.admin_listen",
    )
    .await?;
    let recorder = livegate_recorder::App::build_with(
        plan.recorder.clone(),
        db.clone(),
        bus.clone(),
        livegate_recorder::storage_of(&plan.recorder),
    );

    let hooks_listener = bind(plan.hooks.server.listen, "hooks server.listen").await?;
    let hooks_admin = bind(plan.hooks.server.admin_listen, "hooks server.admin_listen").await?;
    let origins = livegate_hooks::origins(&plan.hooks)?;
    let hooks = livegate_hooks::App::build_with(
        plan.hooks.clone(),
        livegate_hooks::Deps {
            db: db.clone(),
            bus: bus.clone(),
            origins,
        },
    )?;

    let (drained_tx, drained) = oneshot::channel::<()>();
    let drained_tx = std::sync::Mutex::new(Some(drained_tx));
    let embedded = livegate_proxy::Embedded {
        bus: Some(bus.clone()),
        shutdown: Box::new(FromShutdown(shutdown.clone())),
        drained: Box::new(move || {
            if let Some(tx) = drained_tx.lock().ok().and_then(|mut tx| tx.take()) {
                let _ = tx.send(());
            }
        }),
    };
    let proxy_config = Arc::new(plan.proxy);
    let (proxy_done_tx, mut proxy_done) = oneshot::channel();
    let proxy_thread = {
        let config = proxy_config.clone();
        std::thread::Builder::new()
            .name("livegate-proxy".to_owned())
            .spawn(move || {
                let outcome = livegate_proxy::run_with(
                    &config,
                    livegate_proxy::StartOptions::default(),
                    Some(embedded),
                );
                let _ = proxy_done_tx.send(outcome.map_err(|err| err.to_string()));
            })?
    };

    // A service's run drains the tracker's tasks, so it is not one of them itself; it is
    // awaited below.
    let hooks_task = tokio::spawn(hooks.run(hooks_listener, hooks_admin, shutdown.clone()));
    let api_task = tokio::spawn(api.run(api_listener, api_admin, shutdown.clone()));
    let recorder_task = tokio::spawn(recorder.run(recorder_admin, shutdown.clone()));
    print_welcome(
        &plan.options,
        &plan.token_key,
        demo.as_ref(),
        plan.first_start,
        &plan.data,
    );

    // The proxy stops by itself only when it cannot start; otherwise it runs until the switch.
    let proxy_outcome = tokio::select! {
        outcome = &mut proxy_done => Some(outcome),
        _ = shutdown.requested() => None,
    };
    if let Some(outcome) = proxy_outcome {
        shutdown.request(Stop::Now);
        let _ = hooks_task.await;
        let _ = api_task.await;
        let _ = recorder_task.await;
        signals_done.cancel();
        let _ = signals.await;
        return match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(UpError::Proxy(message)),
            Err(_) => Err(UpError::Proxy("the proxy thread ended".to_owned())),
        };
    }
    // Draining: the hooks service drains within its own grace; the proxy says when its last
    // response has ended (or its grace period runs out).
    let proxy_grace = Duration::from_secs(proxy_config.server.grace_period_s + 1);
    let hooks_outcome = hooks_task.await;
    let api_outcome = api_task.await;
    let recorder_outcome = recorder_task.await;
    tokio::select! {
        _ = drained => tracing::info!("proxy drained"),
        _ = proxy_done => tracing::info!("proxy stopped"),
        () = tokio::time::sleep(proxy_grace) => tracing::info!("proxy grace period over"),
    }
    signals_done.cancel();
    let _ = signals.await;
    // Pingora's runtimes end with the process; its thread is not waited for.
    drop(proxy_thread);
    for outcome in [hooks_outcome, api_outcome, recorder_outcome] {
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err.into()),
            Err(err) => return Err(UpError::Io(std::io::Error::other(err))),
        }
    }
    Ok(())
}

fn print_welcome(
    options: &UpOptions,
    key: &Secret,
    demo: Option<&DemoRoom>,
    first_start: bool,
    data: &DataDir,
) {
    let host = &options.public_host;
    let proxy = port(options, ports::PROXY);
    let mut text = String::new();
    text.push_str("\nlivegate is up (Ctrl-C stops it cleanly; a second Ctrl-C at once).\n\n");
    let api = port(options, ports::API);
    text.push_str(&format!(
        "  console  http://127.0.0.1:{api}/console   (log in with the admin account)\n\n"
    ));
    if let Some(room) = demo {
        let expires = unix_now() + 3600;
        let token = TokenKeys::new([key])
            .map(|keys| keys.mint(room.id.unsigned_abs(), expires))
            .unwrap_or_default();
        text.push_str(&format!(
            "  demo room {id}{made}\n\
             \x20   publish (OBS or ffmpeg):  rtmp://{host}/live/{id}?key={stream_key}\n\
             \x20   play FLV (1 hour token):  http://{host}:{proxy}/live/{id}.flv?token={token}\n\
             \x20   play HLS:                 http://{host}:{proxy}/live/{id}.m3u8?token={token}\n\
             \x20   watch page:               http://127.0.0.1:{api}/watch/{id}\n\n",
            id = room.id,
            made = if first_start { " (made now)" } else { "" },
            stream_key = room.stream_key,
        ));
        for (username, password) in &room.accounts {
            text.push_str(&format!(
                "  account {username:<6} password {password}   (shown once: note it)\n"
            ));
        }
        if !room.accounts.is_empty() {
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "  origin expected: SRS with infra/srs/livegate.conf (RTMP 1935, HTTP {origin}); or\n\
         \x20   nginx with Debian's RTMP module and infra/nginx-rtmp/nginx.conf\n\
         \x20 proxy  http://127.0.0.1:{proxy}    metrics http://127.0.0.1:{proxy_admin}/metrics\n\
         \x20 hooks  http://127.0.0.1:{hooks}    metrics http://127.0.0.1:{hooks_admin}/metrics\n\
         \x20 api    http://127.0.0.1:{api}/api/v1    metrics http://127.0.0.1:{api_admin}/metrics\n\
         \x20 recorder: files in {recordings}{also} (found there or named by the origin's callbacks) become MP4s in {stored}; metrics http://127.0.0.1:{recorder_admin}/metrics\n\
         \x20 payment callbacks: POST http://127.0.0.1:{api}/api/v1/payments/callback, signed with payment_secret in {secrets}\n\
         \x20 data   {data}\n",
        origin = options.origin,
        proxy_admin = port(options, ports::PROXY_ADMIN),
        hooks = port(options, ports::HOOKS),
        hooks_admin = port(options, ports::HOOKS_ADMIN),
        api_admin = port(options, ports::API_ADMIN),
        recordings = data.recordings().display(),
        also = options
            .recordings_from
            .iter()
            .map(|dir| format!(", {}", absolute_dir(dir).display()))
            .collect::<String>(),
        stored = data.root().join("stored").display(),
        recorder_admin = port(options, ports::RECORDER_ADMIN),
        data = data.root().display(),
        secrets = data.secrets_file().display(),
    ));
    // The one place a stream key and a token are shown: the operator's own terminal.
    eprintln!("{text}");
}

/// The listen addresses `livegate up` uses with these options (for tests and `doctor`).
pub fn addresses(options: &UpOptions) -> [(&'static str, SocketAddr); 7] {
    let at = |base| SocketAddr::from(([127, 0, 0, 1], port(options, base)));
    [
        ("proxy", at(ports::PROXY)),
        ("proxy admin", at(ports::PROXY_ADMIN)),
        ("hooks", at(ports::HOOKS)),
        ("hooks admin", at(ports::HOOKS_ADMIN)),
        ("api", at(ports::API)),
        ("api admin", at(ports::API_ADMIN)),
        ("recorder admin", at(ports::RECORDER_ADMIN)),
    ]
}
