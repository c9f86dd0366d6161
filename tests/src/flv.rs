//! A small HTTP-FLV origin that paces an ffmpeg-made FLV file in real time, looping it forever,
//! the way a live origin serves `/{app}/{stream}.flv`. It counts open connections and records
//! each request target, so tests can see when the proxy releases the upstream side and what
//! query reached the origin.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

const FLV_HEADER_LEN: usize = 9 + 4;
const TAG_HEADER_LEN: usize = 11;

/// One FLV tag: its timestamp in ms and its bytes (header, data and trailing size).
#[derive(Debug, Clone)]
pub struct Tag {
    /// The tag's timestamp.
    pub timestamp_ms: u32,
    /// The whole tag: header, data and the trailing PreviousTagSize.
    pub bytes: Vec<u8>,
}

/// A parsed FLV file, ready to be replayed.
#[derive(Debug)]
pub struct FlvFile {
    /// The 13-byte file header (with the first PreviousTagSize).
    pub header: Vec<u8>,
    /// The tags in file order.
    pub tags: Vec<Tag>,
    /// One loop: the last timestamp plus one frame.
    pub duration_ms: u32,
}

impl FlvFile {
    /// Parses an FLV file into its header and tags.
    pub fn read(path: &Path) -> FlvFile {
        let data = std::fs::read(path).expect("read FLV file");
        assert!(
            data.starts_with(b"FLV"),
            "not an FLV file: {}",
            path.display()
        );
        let mut tags = Vec::new();
        let mut at = FLV_HEADER_LEN;
        while at + TAG_HEADER_LEN <= data.len() {
            let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
            let timestamp_ms =
                u32::from_be_bytes([data[at + 7], data[at + 4], data[at + 5], data[at + 6]]);
            let end = at + TAG_HEADER_LEN + size + 4;
            if end > data.len() {
                break;
            }
            tags.push(Tag {
                timestamp_ms,
                bytes: data[at..end].to_vec(),
            });
            at = end;
        }
        let duration_ms = tags.iter().map(|t| t.timestamp_ms).max().unwrap_or(0) + 40;
        FlvFile {
            header: data[..FLV_HEADER_LEN].to_vec(),
            tags,
            duration_ms,
        }
    }

    /// Average bits per second of the file's tags.
    pub fn bitrate_bps(&self) -> u64 {
        let bytes: usize = self.tags.iter().map(|t| t.bytes.len()).sum();
        bytes as u64 * 8 * 1000 / u64::from(self.duration_ms.max(1))
    }
}

/// Counters shared between the origin and the test.
#[derive(Debug, Default)]
pub struct OriginStats {
    /// Connections currently open.
    pub open: AtomicUsize,
    /// Connections accepted so far.
    pub accepted: AtomicUsize,
    /// Request targets (path and query) in arrival order.
    pub targets: Mutex<Vec<String>>,
}

/// How the origin frames its endless response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No length: the body ends when the connection closes (nginx-style).
    UntilClose,
    /// `Transfer-Encoding: chunked`, one chunk per tag (SRS-style).
    Chunked,
}

/// A running paced FLV origin; stops when dropped.
#[derive(Debug)]
pub struct FlvOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Live counters.
    pub stats: Arc<OriginStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FlvOrigin {
    /// Starts serving `file` on a free loopback port, close-delimited.
    pub async fn start(file: FlvFile) -> FlvOrigin {
        FlvOrigin::start_with(file, Framing::UntilClose).await
    }

    /// Starts serving `file` on a free loopback port with the given framing.
    pub async fn start_with(file: FlvFile, framing: Framing) -> FlvOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind FLV origin");
        let addr = listener.local_addr().expect("bound address");
        let stats = Arc::new(OriginStats::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            Arc::new(file),
            framing,
            stats.clone(),
            stopped,
        ));
        FlvOrigin {
            addr,
            stats,
            stop,
            task,
        }
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    /// Request targets seen so far.
    pub fn targets(&self) -> Vec<String> {
        self.stats.targets.lock().expect("stats lock").clone()
    }
}

impl Drop for FlvOrigin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    file: Arc<FlvFile>,
    framing: Framing,
    stats: Arc<OriginStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                stats.accepted.fetch_add(1, Ordering::SeqCst);
                stats.open.fetch_add(1, Ordering::SeqCst);
                let (file, stats, stopped) = (file.clone(), stats.clone(), stopped.clone());
                connections.spawn(async move {
                    let _ = serve_one(stream, &file, framing, &stats, stopped).await;
                    stats.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_one(
    mut stream: TcpStream,
    file: &FlvFile,
    framing: Framing,
    stats: &OriginStats,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || request.len() > 16 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
    stats
        .targets
        .lock()
        .expect("stats lock")
        .push(target.clone());
    if !target.split('?').next().unwrap_or("").ends_with(".flv") {
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    }
    // Like SRS: no Content-Length, the body lasts as long as the stream.
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nServer: SRS/6.0.184(Hang)\r\nContent-Type: video/x-flv\r\nConnection: close\r\nCache-Control: no-cache\r\n")
        .await?;
    let chunked = framing == Framing::Chunked;
    if chunked {
        stream.write_all(b"Transfer-Encoding: chunked\r\n").await?;
    }
    stream.write_all(b"\r\n").await?;
    write_body(&mut stream, chunked, &file.header).await?;

    let started = Instant::now();
    let (mut read_half, mut write_half) = stream.split();
    let mut probe = [0u8; 64];
    for round in 0u32.. {
        let offset_ms = round * file.duration_ms;
        for tag in &file.tags {
            let due = started + Duration::from_millis(u64::from(offset_ms + tag.timestamp_ms));
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stopped.changed() => return Ok(()),
                // A client that closes its side ends the response at once.
                read = read_half.read(&mut probe) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        return Ok(());
                    }
                }
            }
            let mut bytes = tag.bytes.clone();
            let ts = tag.timestamp_ms + offset_ms;
            bytes[4..7].copy_from_slice(&ts.to_be_bytes()[1..4]);
            bytes[7] = ts.to_be_bytes()[0];
            write_body(&mut write_half, chunked, &bytes).await?;
        }
    }
    Ok(())
}

async fn write_body<W: AsyncWriteExt + Unpin>(
    out: &mut W,
    chunked: bool,
    data: &[u8],
) -> std::io::Result<()> {
    if chunked {
        out.write_all(format!("{:x}\r\n", data.len()).as_bytes())
            .await?;
        out.write_all(data).await?;
        out.write_all(b"\r\n").await
    } else {
        out.write_all(data).await
    }
}
