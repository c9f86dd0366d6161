//! Harness for livegate's integration tests and benchmarks.
//!
//! Tests talk to real components: an nginx origin, ffmpeg-made media, a paced HTTP-FLV origin.
//! Everything binds to loopback on free ports, lives in its own temporary directory and is
//! stopped when its guard is dropped, so parallel runs never collide.

pub mod flv;
pub mod flv_relay;
pub mod media;
pub mod nginx;
pub mod nginx_conf;
pub mod rtmp;
pub mod scripted;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long a test waits for a condition before failing. `LIVEGATE_TEST_PATIENCE_S` raises it
/// on slow machines.
pub fn patience() -> Duration {
    let seconds = std::env::var("LIVEGATE_TEST_PATIENCE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(seconds)
}

/// Returns a loopback port that was free a moment ago, for servers that take an address string
/// rather than a bound listener.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on loopback");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A free loopback address (see [`free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// An offset at which every one of `ports` is free on loopback, for a program that listens on
/// fixed ports plus an offset (`livegate up --port-offset`). The search starts at `from`,
/// spread by the process id so that test binaries running side by side look in different
/// places, and moves by `step`.
pub fn free_port_offset(ports: &[u16], from: u16, step: u16) -> u16 {
    let spread = (std::process::id() % 100) as u16 * step.saturating_mul(5);
    'search: for attempt in 0..200u16 {
        let offset = from
            .wrapping_add(spread)
            .wrapping_add(attempt.wrapping_mul(step));
        for port in ports {
            let Some(port) = port.checked_add(offset) else {
                continue 'search;
            };
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue 'search;
            }
        }
        return offset;
    }
    panic!("no offset at which all of {ports:?} are free");
}

/// Polls `check` until it yields `Some`, failing the test with `what` after [`patience`].
pub async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_within(what, patience(), check).await
}

/// [`wait_until`] with a patience of its own, for one-off waits known to take a multiple of an
/// ordinary one (a whole toolkit starting on a busy machine, say).
pub async fn wait_until_within<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_listener(what: &str, addr: SocketAddr) {
    wait_until(what, || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
}

/// A child process that is killed when the guard is dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: &'static str,
}

impl ChildGuard {
    /// Takes ownership of a spawned process.
    pub fn new(name: &'static str, child: Child) -> Self {
        Self { child, name }
    }

    /// The process id, for signals.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and with what status).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.wait().ok()
    }

    /// Sends `signal` (e.g. `"TERM"`, `"QUIT"`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an executable is on `PATH`; tests of real components fail with a clear message if not.
pub fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is required by this test; install it (see .ci/run)"
    );
}
