//! Starting the proxy binary against an origin, and minting tokens for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use livegate_core::token::TokenKeys;
use livegate_core::{unix_now, Secret};
use livegate_tests::{free_addr, wait_for_listener, ChildGuard};
use tempfile::TempDir;

/// The key every test proxy accepts.
pub(crate) const KEY: &str = "livegate-integration-key";

/// A running `livegate-proxy` process.
pub(crate) struct TestProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) process: ChildGuard,
    pub(crate) dir: TempDir,
}

/// Builds a proxy configuration for one test.
pub(crate) struct ProxyBuilder {
    origins: Vec<String>,
    leeway_s: u64,
    forward_token: bool,
    grace_period_s: u64,
    origin_extra: String,
    extra: String,
}

impl ProxyBuilder {
    pub(crate) fn new(origin: SocketAddr) -> ProxyBuilder {
        ProxyBuilder {
            origins: vec![origin.to_string()],
            leeway_s: 0,
            // Most tests check what reaches the origin without the token.
            forward_token: false,
            grace_period_s: 3,
            origin_extra: String::new(),
            extra: String::new(),
        }
    }

    pub(crate) fn origins(mut self, origins: &[SocketAddr]) -> ProxyBuilder {
        self.origins = origins.iter().map(ToString::to_string).collect();
        self
    }

    pub(crate) fn leeway(mut self, seconds: u64) -> ProxyBuilder {
        self.leeway_s = seconds;
        self
    }

    /// Whether the token goes on to the origin (`token.forward_to_origin`).
    pub(crate) fn forward_token(mut self, forward: bool) -> ProxyBuilder {
        self.forward_token = forward;
        self
    }

    /// Sets `server.grace_period_s` (3 s by default in tests).
    pub(crate) fn grace(mut self, seconds: u64) -> ProxyBuilder {
        self.grace_period_s = seconds;
        self
    }

    /// Adds raw TOML lines to the `[origin]` section.
    pub(crate) fn origin(mut self, lines: &str) -> ProxyBuilder {
        self.origin_extra.push_str(lines);
        self.origin_extra.push('\n');
        self
    }

    /// Appends raw TOML (whole sections) to the configuration.
    pub(crate) fn with(mut self, toml: &str) -> ProxyBuilder {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub(crate) fn config_text(
        &self,
        dir: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> String {
        let origins = self
            .origins
            .iter()
            .map(|o| format!("\"{o}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "[server]\nlisten = [\"{addr}\"]\nthreads = 2\ngrace_period_s = {grace}\nshutdown_timeout_s = 1\n\
             pid_file = \"{dir}/proxy.pid\"\nupgrade_sock = \"{dir}/upgrade.sock\"\n\
             [admin]\nlisten = \"{admin}\"\n\
             [origin]\naddresses = [{origins}]\nhealth_check_interval_ms = 200\n{origin_extra}\
             [token]\nkeys = [\"{KEY}\"]\nleeway_s = {leeway}\nforward_to_origin = {forward}\n\
             [log]\nfilter = \"info\"\n",
            dir = dir.display(),
            leeway = self.leeway_s,
            forward = self.forward_token,
            origin_extra = self.origin_extra,
            grace = self.grace_period_s,
        );
        if !self.extra.contains("[timeouts]") {
            text.push_str("[timeouts]\nupstream_read_s = 5\ndownstream_write_s = 5\n");
        }
        text.push_str(&self.extra);
        text
    }

    pub(crate) async fn start(self) -> TestProxy {
        let dir = tempfile::Builder::new()
            .prefix("livegate-proxy-")
            .tempdir()
            .unwrap();
        let addr = free_addr();
        let admin = free_addr();
        let config = dir.path().join("proxy.toml");
        std::fs::write(&config, self.config_text(dir.path(), addr, admin)).unwrap();
        let process = spawn_proxy(&config, &[], dir.path().join("proxy.log"));
        wait_for_listener("the proxy to listen", addr).await;
        wait_for_listener("the admin port to listen", admin).await;
        TestProxy {
            addr,
            admin,
            process,
            dir,
        }
    }
}

/// Starts the proxy on `config` with environment overrides (`LIVEGATE_PROXY__…`).
pub(crate) fn spawn_proxy_with_env(
    config: &std::path::Path,
    env: &[(&str, String)],
    log: PathBuf,
) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_livegate-proxy"))
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    ChildGuard::new("livegate-proxy", child)
}

/// A token for `room` under the first key of the proxy configuration at `path`.
pub(crate) fn token_for_example(path: &std::path::Path, room: u64) -> String {
    let config =
        livegate_proxy::Config::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    TokenKeys::new(&config.token.keys)
        .unwrap()
        .mint(room, unix_now() + 3600)
}

pub(crate) fn spawn_proxy(config: &std::path::Path, args: &[&str], log: PathBuf) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_livegate-proxy"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    ChildGuard::new("livegate-proxy", child)
}

impl TestProxy {
    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Revokes `room`'s tokens expiring by `by` on the admin port.
    pub(crate) async fn revoke(&self, room: u64, by: u64) -> reqwest::Response {
        client()
            .post(format!(
                "http://{}/revocations?room={room}&tokens_expiring_by={by}",
                self.admin
            ))
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn metrics(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A token for `room` valid for another hour.
pub(crate) fn token(room: u64) -> String {
    token_expiring(room, unix_now() + 3600)
}

pub(crate) fn token_expiring(room: u64, exp: u64) -> String {
    TokenKeys::new(&[Secret::new(KEY)]).unwrap().mint(room, exp)
}

/// A client for endless responses: no overall deadline, only on connecting (reads are bounded
/// by the callers).
pub(crate) fn streaming_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Writes `request` as raw bytes on a new connection and reads the response head: its status
/// (0 when the connection closed without one) and its text.
pub(crate) async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response_head(&mut stream).await
}

/// Reads from `stream` until a response head is complete or the connection closes.
pub(crate) async fn read_response_head(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt as _;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(livegate_tests::patience(), read)
        .await
        .expect("the proxy neither answered nor closed the connection");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// One response read off a raw connection: its head and its `Content-Length` body.
pub(crate) async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> (String, Vec<u8>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).await.unwrap();
        assert!(read > 0, "the connection closed inside a head: {head}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.unwrap();
    (head, body)
}
