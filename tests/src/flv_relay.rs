//! The HTTP-FLV side nginx-rtmp lacks, for tests and benchmarks: every `GET /{app}/{stream}.flv`
//! is answered with the live stream pulled from nginx-rtmp over RTMP and remuxed, unchanged, by
//! `ffmpeg -c copy -f flv` — the way SRS serves `/{app}/{stream}.flv` — so a proxy in front of
//! nginx sees one origin that does both. The body ends with the connection.
//!
//! Every answered request is one pull from the origin (one ffmpeg, one RTMP play at
//! nginx-rtmp); [`PullCounts`] counts them, so a test or a bench can say how many pulls served
//! its viewers from the origin's side.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// Pulls from the origin: answered `.flv` requests.
#[derive(Debug, Default)]
pub struct PullCounts {
    open: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
}

impl PullCounts {
    /// Pulls running now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Most pulls that ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Pulls started since the relay started.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn started(&self) -> PullGuard<'_> {
        self.total.fetch_add(1, Ordering::SeqCst);
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(open, Ordering::SeqCst);
        PullGuard(self)
    }
}

struct PullGuard<'a>(&'a PullCounts);

impl Drop for PullGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running relay on a loopback port; stops (with every ffmpeg) when dropped.
#[derive(Debug)]
pub struct FlvRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its pulls.
    pub pulls: Arc<PullCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl FlvRelay {
    /// Listens on a free loopback port and relays from nginx-rtmp at `rtmp`.
    pub async fn start(rtmp: SocketAddr) -> std::io::Result<FlvRelay> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), rtmp).await
    }

    /// Listens on `listen` and relays from nginx-rtmp at `rtmp`.
    pub async fn start_on(listen: SocketAddr, rtmp: SocketAddr) -> std::io::Result<FlvRelay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let pulls = Arc::new(PullCounts::default());
        let counts = pulls.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(relay_one(stream, rtmp, counts.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(FlvRelay { addr, pulls, task })
    }
}

impl Drop for FlvRelay {
    fn drop(&mut self) {
        // The accept loop's JoinSet aborts every connection, whose ffmpeg is killed on drop.
        self.task.abort();
    }
}

async fn relay_one(mut stream: TcpStream, rtmp: SocketAddr, pulls: Arc<PullCounts>) {
    // Media goes out as ffmpeg writes it, not held back for a fuller segment.
    let _ = stream.set_nodelay(true);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let Some(stream_path) = path.strip_suffix(".flv") else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let spawned = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .arg("-i")
        .arg(format!("rtmp://{rtmp}{stream_path}"))
        .args(["-c", "copy", "-f", "flv", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut ffmpeg) = spawned else {
        let _ = stream
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let Some(mut out) = ffmpeg.stdout.take() else {
        return;
    };
    let _pull = pulls.started();
    if stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy(&mut out, &mut stream).await;
}
