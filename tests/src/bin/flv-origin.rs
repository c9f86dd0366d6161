//! A paced HTTP-FLV origin for load tests: serves an ffmpeg-made FLV file in real time (looped)
//! on a free loopback port, prints its address, and runs until killed or for `--seconds`.
//!
//! ```text
//! flv-origin --file /tmp/stream.flv [--video-kbps 1936] [--make-seconds 30] [--seconds 0] [--live]
//! ```
//!
//! When `--file` does not exist yet it is made first (H.264 test pattern plus 64 kbit/s AAC).
//! Stdout gets one `listening <addr>` line, then `bitrate_bps <n>`, once the port is open.
//!
//! By default every connection gets the file from its start. With `--live` the origin behaves
//! like a live origin without a GOP cache: the stream runs on one clock from the origin's start,
//! and a connection gets the FLV header, the metadata and codec sequence headers, and then the
//! stream from wherever it is now (usually mid-GOP: a player waits for the next keyframe).
//!
//! The origin counts what reaches it: on SIGUSR1, and once more when it stops (SIGINT,
//! SIGTERM or `--seconds`), stdout gets `connections open=<now> peak=<most at once>
//! accepted=<total> streams_open=<now> streams_peak=<most at once> streams=<total>`, where
//! streams are the FLV responses (pulls) and connections count every TCP connection (a proxy's
//! health checks connect without asking for anything).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use livegate_tests::flv::{FlvFile, Tag};
use livegate_tests::media::make_flv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::Instant;

const TAG_HEADER_LEN: usize = 11;

/// Paced HTTP-FLV origin.
#[derive(Debug, Parser)]
struct Args {
    /// FLV file to serve; made with ffmpeg if it does not exist.
    #[arg(long)]
    file: PathBuf,
    /// Video bitrate of a file made here, in kbit/s (audio adds 64).
    #[arg(long, default_value_t = 1936)]
    video_kbps: u32,
    /// Length of a file made here, in seconds (it is looped while serving).
    #[arg(long, default_value_t = 30)]
    make_seconds: u32,
    /// Stop after this many seconds; 0 runs until killed.
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Join each connection to one running stream instead of starting the file anew.
    #[arg(long)]
    live: bool,
}

/// The parsed file.
#[derive(Debug)]
struct Stream {
    header: Vec<u8>,
    tags: Vec<Tag>,
    /// Leading tags a late joiner needs before any frame: metadata and sequence headers.
    init: usize,
    /// One loop: the last timestamp plus one frame (what flv-load assumes too).
    duration_ms: u32,
}

impl Stream {
    fn read(path: &Path) -> Stream {
        let FlvFile {
            header,
            tags,
            duration_ms,
        } = FlvFile::read(path);
        let init = tags.iter().take_while(|t| is_init(&t.bytes)).count();
        Stream {
            header,
            tags,
            init,
            duration_ms,
        }
    }

    fn bitrate_bps(&self) -> u64 {
        let bytes: usize = self.tags.iter().map(|t| t.bytes.len()).sum();
        bytes as u64 * 8 * 1000 / u64::from(self.duration_ms.max(1))
    }
}

/// Script data (metadata), or an AVC / AAC sequence header.
fn is_init(tag: &[u8]) -> bool {
    let data = &tag[TAG_HEADER_LEN..tag.len() - 4];
    match (tag[0] & 0x1f, data) {
        (18, _) => true,
        (9, [first, 0, ..]) => first & 0x0f == 7,
        (8, [first, 0, ..]) => first >> 4 == 10,
        _ => false,
    }
}

#[derive(Debug, Default)]
struct Counts {
    open: AtomicUsize,
    peak: AtomicUsize,
    accepted: AtomicUsize,
    streams_open: AtomicUsize,
    streams_peak: AtomicUsize,
    streams: AtomicUsize,
}

impl Counts {
    fn print(&self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "connections open={} peak={} accepted={} streams_open={} streams_peak={} streams={}",
            self.open.load(Ordering::SeqCst),
            self.peak.load(Ordering::SeqCst),
            self.accepted.load(Ordering::SeqCst),
            self.streams_open.load(Ordering::SeqCst),
            self.streams_peak.load(Ordering::SeqCst),
            self.streams.load(Ordering::SeqCst)
        );
        let _ = out.flush();
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.file.exists() {
        eprintln!(
            "flv-origin: making {} ({} s at {} kbit/s video)",
            args.file.display(),
            args.make_seconds,
            args.video_kbps
        );
        make_flv(&args.file, args.make_seconds, args.video_kbps);
    }
    let stream = Arc::new(Stream::read(&args.file));
    // Handlers first: the address line tells scripts they may signal.
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind FLV origin");
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "listening {}",
        listener.local_addr().expect("bound address")
    )
    .expect("write to stdout");
    writeln!(out, "bitrate_bps {}", stream.bitrate_bps()).expect("write to stdout");
    out.flush().expect("flush stdout");
    drop(out);

    // The live clock, shared by every connection with --live.
    let epoch = Instant::now();
    let counts = Arc::new(Counts::default());
    let stop = async {
        if args.seconds == 0 {
            std::future::pending::<()>().await;
        } else {
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        }
    };
    tokio::pin!(stop);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = usr1.recv() => counts.print(),
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                counts.accepted.fetch_add(1, Ordering::SeqCst);
                let open = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
                counts.peak.fetch_max(open, Ordering::SeqCst);
                let (stream, counts) = (stream.clone(), counts.clone());
                let start = args.live.then_some(epoch);
                connections.spawn(async move {
                    let _ = serve(socket, &stream, start, &counts).await;
                    counts.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    counts.print();
    eprintln!(
        "flv-origin: stopping; {} FLV responses, at most {} at once",
        counts.streams.load(Ordering::SeqCst),
        counts.streams_peak.load(Ordering::SeqCst)
    );
}

/// An FLV response being sent, counted while it lasts.
struct Streaming<'a>(&'a Counts);

impl<'a> Streaming<'a> {
    fn start(counts: &'a Counts) -> Streaming<'a> {
        counts.streams.fetch_add(1, Ordering::SeqCst);
        let open = counts.streams_open.fetch_add(1, Ordering::SeqCst) + 1;
        counts.streams_peak.fetch_max(open, Ordering::SeqCst);
        Streaming(counts)
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        self.0.streams_open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one request: `live` is the shared clock's start, or `None` to play from the start.
async fn serve(
    mut socket: TcpStream,
    stream: &Stream,
    live: Option<Instant>,
    counts: &Counts,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 || request.len() > 16 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("");
    if !target.split('?').next().unwrap_or("").ends_with(".flv") {
        socket
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    }
    let _streaming = Streaming::start(counts);
    // Like nginx-rtmp and SRS: no Content-Length, the body lasts as long as the stream.
    socket
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n")
        .await?;
    socket.write_all(&stream.header).await?;

    let duration = u64::from(stream.duration_ms);
    let (epoch, mut round, mut next) = match live {
        None => (Instant::now(), 0u64, 0usize),
        Some(epoch) => {
            let now_ms = epoch.elapsed().as_millis() as u64;
            let (round, into) = (now_ms / duration, (now_ms % duration) as u32);
            let next = stream
                .tags
                .iter()
                .position(|t| t.timestamp_ms >= into)
                .unwrap_or(stream.tags.len());
            (epoch, round, next)
        }
    };
    let (mut reader, mut writer) = socket.split();
    if live.is_some() {
        // What a late joiner needs before frames make sense, stamped with the current time.
        let ts = round * duration + u64::from(stream.tags.get(next).map_or(0, |t| t.timestamp_ms));
        for tag in &stream.tags[..stream.init] {
            writer.write_all(&stamped(&tag.bytes, ts)).await?;
        }
    }
    let mut probe = [0u8; 64];
    loop {
        if next == stream.tags.len() {
            next = 0;
            round += 1;
        }
        let tag = &stream.tags[next];
        let ts = round * duration + u64::from(tag.timestamp_ms);
        tokio::select! {
            () = tokio::time::sleep_until(epoch + Duration::from_millis(ts)) => {}
            // A client that closes its side ends the response at once.
            read = reader.read(&mut probe) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
        }
        writer.write_all(&stamped(&tag.bytes, ts)).await?;
        next += 1;
    }
}

/// A tag's bytes with its timestamp set to `ts` (24 bits plus the extension byte).
fn stamped(tag: &[u8], ts: u64) -> Vec<u8> {
    let mut bytes = tag.to_vec();
    let ts = (ts as u32).to_be_bytes();
    bytes[4..7].copy_from_slice(&ts[1..4]);
    bytes[7] = ts[0];
    bytes
}
