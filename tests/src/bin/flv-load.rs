//! HTTP-FLV viewer load: `--clients` concurrent HTTP/1.1 clients pull one stream for
//! `--seconds` each, counting body bytes and checking the FLV framing as it arrives.
//!
//! ```text
//! flv-load --url 'http://127.0.0.1:8080/live/42.flv?token=…' --file stream.flv \
//!          [--clients 1000] [--seconds 60] [--ramp-ms 1000]
//! ```
//!
//! `--file` is the FLV the paced origin loops (see `flv-origin`). From it the tool computes what
//! the origin sends one connection in the first `t` seconds: the FLV header plus every tag
//! whose (looped) timestamp is due by then. A client is *complete* when, within its own
//! `--seconds` window, it received a well-formed FLV stream (valid header, every tag's
//! `PreviousTagSize` consistent) of at least the paced total for the window shortened by the
//! longest keyframe interval (one GOP): that slack covers connection setup and the last GOP
//! still in flight, nothing more. The last stdout line is `RESULT …` for scripts.
//!
//! Every client is a task of this one process, which shares the machine with what it measures:
//! when it cannot run, its clients fall behind whatever the proxy does. It clocks its own
//! lateness — a task that asks to wake every 10 ms and notes how late it woke — and reports
//! the latest wake and the time spent more than 50 ms late in all (`late_*` in `RESULT`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Concurrent HTTP-FLV viewers.
#[derive(Debug, Parser)]
struct Args {
    /// Stream URL (`http://host:port/path?query`).
    #[arg(long)]
    url: String,
    /// The FLV file the origin paces, for the expected byte counts.
    #[arg(long)]
    file: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// How long each client pulls, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Clients start evenly spread over this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    ramp_ms: u64,
}

/// What the origin sends: tag sizes on the looped timeline.
struct Schedule {
    header_len: u64,
    /// (timestamp ms, tag bytes including PreviousTagSize), in file order.
    tags: Vec<(u64, u64)>,
    loop_ms: u64,
    /// Longest interval between video keyframes, in ms.
    gop_ms: u64,
}

impl Schedule {
    fn read(path: &std::path::Path) -> Schedule {
        let data = std::fs::read(path).expect("read the FLV file");
        assert!(data.starts_with(b"FLV"), "{} is not FLV", path.display());
        let header_len = 13u64;
        let mut tags = Vec::new();
        let mut keyframes = Vec::new();
        let mut at = 13usize;
        while at + 11 <= data.len() {
            let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
            let ts = u32::from_be_bytes([data[at + 7], data[at + 4], data[at + 5], data[at + 6]]);
            let end = at + 11 + size + 4;
            if end > data.len() {
                break;
            }
            if data[at] == 9 && size > 0 && data[at + 11] >> 4 == 1 {
                keyframes.push(u64::from(ts));
            }
            tags.push((u64::from(ts), (11 + size + 4) as u64));
            at = end;
        }
        // Same loop length as the origin: last timestamp plus one frame.
        let loop_ms = tags.iter().map(|t| t.0).max().unwrap_or(0) + 40;
        keyframes.push(loop_ms);
        let gop_ms = keyframes
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(loop_ms);
        Schedule {
            header_len,
            tags,
            loop_ms,
            gop_ms,
        }
    }

    /// Bytes the origin has sent one connection `ms` milliseconds after it began.
    fn paced_bytes(&self, ms: u64) -> u64 {
        let per_loop: u64 = self.tags.iter().map(|t| t.1).sum();
        let full = ms / self.loop_ms;
        let rest = ms % self.loop_ms;
        let partial: u64 = self.tags.iter().filter(|t| t.0 <= rest).map(|t| t.1).sum();
        self.header_len + full * per_loop + partial
    }

    fn bitrate_bps(&self) -> u64 {
        self.paced_bytes(self.loop_ms * 10) * 8 * 1000 / (self.loop_ms * 10)
    }
}

/// How one client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Pulled for the whole window.
    Ran,
    /// Could not connect or send the request.
    Connect,
    /// Answered with something other than 200, or not HTTP.
    Status,
    /// The body is not a well-formed FLV stream.
    BadFlv,
    /// The connection ended (or failed) before the window did.
    EarlyEnd,
}

#[derive(Debug)]
struct ClientReport {
    outcome: Outcome,
    body_bytes: u64,
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug)]
enum Chunked {
    Size(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Done,
}

impl Chunked {
    /// Feeds raw bytes, handing decoded body bytes to `body`. Errors on malformed framing.
    fn feed(&mut self, mut input: &[u8], body: &mut impl FnMut(&[u8])) -> Result<(), ()> {
        while !input.is_empty() {
            match self {
                Chunked::Size(line) => {
                    let Some(nl) = input.iter().position(|b| *b == b'\n') else {
                        line.extend_from_slice(input);
                        if line.len() > 1024 {
                            return Err(());
                        }
                        return Ok(());
                    };
                    line.extend_from_slice(&input[..nl]);
                    input = &input[nl + 1..];
                    let text = std::str::from_utf8(line).map_err(|_| ())?;
                    let hex = text.trim_end_matches('\r');
                    let hex = hex.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16).map_err(|_| ())?;
                    *self = if size == 0 {
                        Chunked::Done
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    let take = (*left).min(input.len() as u64) as usize;
                    body(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        *self = Chunked::DataEnd(2);
                    }
                }
                Chunked::DataEnd(left) => {
                    let expected = if *left == 2 { b'\r' } else { b'\n' };
                    if input[0] != expected {
                        return Err(());
                    }
                    input = &input[1..];
                    *left -= 1;
                    if *left == 0 {
                        *self = Chunked::Size(Vec::new());
                    }
                }
                Chunked::Done => return Ok(()),
            }
        }
        Ok(())
    }
}

/// Incremental FLV framing check: the 9-byte header with a zero first `PreviousTagSize`, then
/// tags whose trailing `PreviousTagSize` equals 11 plus their data size.
#[derive(Debug, Default)]
struct FlvCheck {
    pending: Vec<u8>,
    header_done: bool,
    skip: u64,
    expect_prev: Option<u32>,
    tags: u64,
    bad: bool,
}

impl FlvCheck {
    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() && !self.bad {
            if self.skip > 0 {
                let take = self.skip.min(input.len() as u64) as usize;
                input = &input[take..];
                self.skip -= take as u64;
                continue;
            }
            let need = if !self.header_done {
                13
            } else if self.expect_prev.is_some() {
                4
            } else {
                11
            };
            let take = (need - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < need {
                return;
            }
            // Copied out rather than taken, so that the buffer (at most 13 bytes) is allocated
            // once per client, not once per tag.
            let mut block = [0u8; 13];
            block[..need].copy_from_slice(&self.pending);
            self.pending.clear();
            if !self.header_done {
                let offset = u32::from_be_bytes([block[5], block[6], block[7], block[8]]);
                let prev0 = u32::from_be_bytes([block[9], block[10], block[11], block[12]]);
                self.bad = &block[..3] != b"FLV" || block[3] != 1 || offset != 9 || prev0 != 0;
                self.header_done = true;
            } else if let Some(expected) = self.expect_prev.take() {
                let prev = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                self.bad = prev != expected;
                self.tags += 1;
            } else {
                let size = u32::from_be_bytes([0, block[1], block[2], block[3]]);
                self.bad = !matches!(block[0] & 0x1f, 8 | 9 | 18);
                self.skip = u64::from(size);
                self.expect_prev = Some(11 + size);
            }
        }
    }
}

fn parse_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .expect("--url must start with http://");
    let slash = rest.find('/').unwrap_or(rest.len());
    let authority = rest[..slash].to_owned();
    let target = if slash == rest.len() {
        "/".to_owned()
    } else {
        rest[slash..].to_owned()
    };
    (authority, target)
}

async fn client(authority: Arc<str>, request: Arc<[u8]>, window: Duration) -> ClientReport {
    let deadline = Instant::now() + window;
    let mut report = ClientReport {
        outcome: Outcome::Connect,
        body_bytes: 0,
    };
    let Ok(Ok(mut stream)) =
        tokio::time::timeout_at(deadline, TcpStream::connect(&*authority)).await
    else {
        return report;
    };
    if stream.write_all(&request).await.is_err() {
        return report;
    }
    report.outcome = Outcome::Status;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut flv = FlvCheck::default();
    let mut chunked: Option<Chunked> = None;
    let mut body_bytes = 0u64;
    loop {
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => {
                // The window is over.
                if report.outcome == Outcome::Status {
                    return report;
                }
                report.outcome = if flv.bad || flv.tags == 0 {
                    Outcome::BadFlv
                } else {
                    Outcome::Ran
                };
                break;
            }
            Ok(Ok(0) | Err(_)) => {
                if report.outcome != Outcome::Status {
                    report.outcome = Outcome::EarlyEnd;
                }
                break;
            }
            Ok(Ok(n)) => n,
        };
        let head_rest: Vec<u8>;
        let data: &[u8] = if report.outcome == Outcome::Status {
            head.extend_from_slice(&buf[..read]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > 16 * 1024 {
                    return report;
                }
                continue;
            };
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let mut lines = text.split("\r\n");
            let status_ok = lines
                .next()
                .is_some_and(|l| l.starts_with("http/1.1 200") || l.starts_with("http/1.0 200"));
            if !status_ok {
                return report;
            }
            if lines.any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
                chunked = Some(Chunked::Size(Vec::new()));
            }
            report.outcome = Outcome::Ran;
            head_rest = head[end + 4..].to_vec();
            &head_rest
        } else {
            &buf[..read]
        };
        let mut sink = |b: &[u8]| {
            body_bytes += b.len() as u64;
            flv.feed(b);
        };
        let framing_ok = match &mut chunked {
            Some(decoder) => decoder.feed(data, &mut sink).is_ok(),
            None => {
                sink(data);
                true
            }
        };
        if !framing_ok || flv.bad {
            report.outcome = Outcome::BadFlv;
            break;
        }
    }
    report.body_bytes = body_bytes;
    report
}

/// How late this process's runtime ran a task that asked to wake every [`CLOCK_PERIOD`].
#[derive(Debug, Default)]
struct Lateness {
    wakes: u64,
    latest: Duration,
    /// Time spent more than [`LATE`] late, summed over the wakes.
    late_total: Duration,
    /// The latest wake in each second of the run, in ms.
    per_second: Vec<u64>,
}

const CLOCK_PERIOD: Duration = Duration::from_millis(10);
const LATE: Duration = Duration::from_millis(50);

async fn clock(done: Arc<AtomicBool>) -> Lateness {
    let mut lateness = Lateness::default();
    let start = Instant::now();
    let mut due = start + CLOCK_PERIOD;
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep_until(due).await;
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        lateness.wakes += 1;
        lateness.latest = lateness.latest.max(late);
        if late > LATE {
            lateness.late_total += late;
        }
        let second = due.duration_since(start).as_secs() as usize;
        if lateness.per_second.len() <= second {
            lateness.per_second.resize(second + 1, 0);
        }
        let ms = late.as_millis() as u64;
        lateness.per_second[second] = lateness.per_second[second].max(ms);
        due = now + CLOCK_PERIOD;
    }
    lateness
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let schedule = Schedule::read(&args.file);
    let (authority, target) = parse_url(&args.url);
    let request: Arc<[u8]> = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: flv-load\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
    .into();
    let authority: Arc<str> = authority.into();
    let window = Duration::from_secs(args.seconds);
    let window_ms = args.seconds * 1000;
    let expected = schedule.paced_bytes(window_ms);
    let threshold = schedule.paced_bytes(window_ms.saturating_sub(schedule.gop_ms));

    println!(
        "flv-load: {} clients x {} s on {} (stream {:.2} Mbit/s, GOP {} ms)",
        args.clients,
        args.seconds,
        target.split('?').next().unwrap_or(""),
        schedule.bitrate_bps() as f64 / 1e6,
        schedule.gop_ms
    );
    let done = Arc::new(AtomicBool::new(false));
    let lateness = tokio::spawn(clock(done.clone()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let delay = Duration::from_millis(args.ramp_ms * i as u64 / args.clients.max(1) as u64);
        let (authority, request) = (authority.clone(), request.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(started + delay).await;
            (i, client(authority, request, window).await)
        });
    }
    let mut reports = Vec::with_capacity(args.clients);
    while let Some(joined) = tasks.join_next().await {
        reports.push(joined.expect("client task"));
    }
    // In start order, to tell clients that joined during the ramp from later ones.
    reports.sort_unstable_by_key(|(i, _)| *i);
    let reports: Vec<ClientReport> = reports.into_iter().map(|(_, r)| r).collect();
    done.store(true, Ordering::Relaxed);
    let lateness = lateness.await.expect("clock task");

    let mut bytes: Vec<u64> = reports.iter().map(|r| r.body_bytes).collect();
    bytes.sort_unstable();
    let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
    let complete = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Ran && r.body_bytes >= threshold)
        .count();
    let n = reports.len().max(1);
    let share = complete as f64 * 100.0 / n as f64;
    let median = bytes.get(bytes.len() / 2).copied().unwrap_or(0);
    println!(
        "expected per client: {expected} bytes paced in {} s; complete means >= {threshold} (one GOP less)",
        args.seconds
    );
    println!(
        "bytes per client: min {} ({:.1}%), median {median} ({:.1}%), max {}",
        bytes.first().copied().unwrap_or(0),
        bytes.first().copied().unwrap_or(0) as f64 * 100.0 / expected as f64,
        median as f64 * 100.0 / expected as f64,
        bytes.last().copied().unwrap_or(0),
    );
    println!(
        "errors: connect {}, status {}, bad FLV {}, ended early {}",
        count(Outcome::Connect),
        count(Outcome::Status),
        count(Outcome::BadFlv),
        count(Outcome::EarlyEnd)
    );
    println!(
        "complete clients: {complete}/{} ({share:.1}%)",
        reports.len()
    );
    let tenth = reports.len().div_ceil(10).max(1);
    let by_start: Vec<String> = reports
        .chunks(tenth)
        .map(|chunk| {
            let done = chunk
                .iter()
                .filter(|r| r.outcome == Outcome::Ran && r.body_bytes >= threshold)
                .count();
            format!("{:.0}%", done as f64 * 100.0 / chunk.len() as f64)
        })
        .collect();
    println!(
        "complete by start order, each tenth of the clients: {}",
        by_start.join(" ")
    );
    println!(
        "flv-load itself: latest wake {} ms late, {:.1} s more than {} ms late in all ({} wakes of a {} ms clock)",
        lateness.latest.as_millis(),
        lateness.late_total.as_secs_f64(),
        LATE.as_millis(),
        lateness.wakes,
        CLOCK_PERIOD.as_millis()
    );
    let late_seconds: Vec<String> = lateness
        .per_second
        .iter()
        .enumerate()
        .filter(|(_, ms)| **ms > 2 * LATE.as_millis() as u64)
        .map(|(second, ms)| format!("{second}s:{ms}"))
        .collect();
    println!(
        "flv-load itself, seconds into the run with a wake more than {} ms late (second:ms): {}",
        2 * LATE.as_millis(),
        if late_seconds.is_empty() {
            "none".to_owned()
        } else {
            late_seconds.join(" ")
        }
    );
    println!(
        "RESULT clients={} complete={complete} share_pct={share:.1} min_bytes={} median_bytes={median} expected_bytes={expected} threshold_bytes={threshold} errors={} late_max_ms={} late_total_ms={}",
        reports.len(),
        bytes.first().copied().unwrap_or(0),
        reports.len() - count(Outcome::Ran),
        lateness.latest.as_millis(),
        lateness.late_total.as_millis()
    );
}
