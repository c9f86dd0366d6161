//! Join-to-keyframe latency of an HTTP-FLV stream: with one viewer already pulling it,
//! `--joins` new viewers connect one after another, each after a random pause (so they land at
//! random points of the GOP), and each measures the time from sending its request to the first
//! byte of
//!
//! - the first video keyframe tag, the AVC sequence header included (what an edge with codec
//!   headers but no GOP cache sends at once), and
//! - the first coded video keyframe (frame type 1 and, for AVC, a NALU packet): when a player can
//!   show a picture.
//!
//! ```text
//! flv-join --url 'http://127.0.0.1:8080/live/42.flv?token=…' [--joins 20] [--max-pause-ms 2500]
//!          [--label livegate]
//! ```
//!
//! Prints one line per join and then `RESULT label=… joins=… first_byte_median_ms=… …` with
//! the median and p95 (nearest rank) of each measure.

use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Join-to-keyframe latency.
#[derive(Debug, Parser)]
struct Args {
    /// Stream URL (`http://host:port/path?query`).
    #[arg(long)]
    url: String,
    /// Viewers that join, one at a time.
    #[arg(long, default_value_t = 20)]
    joins: usize,
    /// Each join waits a random time up to this long first, in milliseconds (make it at least
    /// a GOP, so the joins sample the whole GOP).
    #[arg(long, default_value_t = 2500)]
    max_pause_ms: u64,
    /// How long the viewer already pulling runs before the first join, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    warmup_ms: u64,
    /// Name printed in the result line.
    #[arg(long, default_value = "target")]
    label: String,
    /// Longest wait for one join's keyframe, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

/// Times from sending the request, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Join {
    first_byte: f64,
    keyframe: f64,
    coded_keyframe: f64,
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug)]
enum Chunked {
    Size(Vec<u8>),
    Data(usize),
    DataEnd(u8),
}

impl Chunked {
    fn feed(&mut self, mut input: &[u8], body: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() {
            match self {
                Chunked::Size(line) => {
                    let Some(nl) = input.iter().position(|b| *b == b'\n') else {
                        line.extend_from_slice(input);
                        return Ok(());
                    };
                    line.extend_from_slice(&input[..nl]);
                    input = &input[nl + 1..];
                    let text = String::from_utf8_lossy(line);
                    let hex = text.trim_end_matches('\r').split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(hex.trim(), 16)
                        .map_err(|_| format!("bad chunk size line {text:?}"))?;
                    if size == 0 {
                        return Err("the stream ended".to_owned());
                    }
                    *self = Chunked::Data(size);
                }
                Chunked::Data(left) => {
                    let take = (*left).min(input.len());
                    body.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *left -= take;
                    if *left == 0 {
                        *self = Chunked::DataEnd(2);
                    }
                }
                Chunked::DataEnd(left) => {
                    input = &input[1..];
                    *left -= 1;
                    if *left == 0 {
                        *self = Chunked::Size(Vec::new());
                    }
                }
            }
        }
        Ok(())
    }
}

fn parse_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .expect("--url must start with http://");
    let slash = rest.find('/').unwrap_or(rest.len());
    let target = if slash == rest.len() {
        "/".to_owned()
    } else {
        rest[slash..].to_owned()
    };
    (rest[..slash].to_owned(), target)
}

fn request(authority: &str, target: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: flv-join\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}

/// The viewer that keeps the stream pulled while the others join: reads until the end.
async fn hold(authority: String, request: Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect(&authority).await else {
        eprintln!("flv-join: the holding viewer could not connect");
        return;
    };
    if stream.write_all(&request).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    eprintln!("flv-join: the holding viewer's stream ended");
}

/// One join: connects, sends the request and reads until the first coded keyframe begins.
async fn join(authority: &str, request: &[u8]) -> Result<Join, String> {
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let sent = Instant::now();
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let ms = |at: Instant| at.duration_since(sent).as_secs_f64() * 1000.0;

    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut chunked: Option<Chunked> = None;
    let mut in_head = true;
    // FLV body bytes not yet parsed, and the absolute offset of `body[0]` in the body.
    let mut body = Vec::new();
    let mut body_start = 0usize;
    // When each read ended, by the body offset it reached: a tag's first byte arrived in
    // the first read that reached past its offset.
    let mut arrivals: Vec<(usize, Instant)> = Vec::new();
    let mut received = 0usize;
    let mut at = 13usize; // the next tag's offset
    let mut result = Join {
        first_byte: f64::NAN,
        keyframe: f64::NAN,
        coded_keyframe: f64::NAN,
    };
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let now = Instant::now();
        if n == 0 {
            return Err("the stream ended before a keyframe".to_owned());
        }
        let mut data = &buf[..n];
        let rest;
        if in_head {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            if !text.starts_with("http/1.1 200") && !text.starts_with("http/1.0 200") {
                return Err(format!(
                    "answered {}",
                    text.lines().next().unwrap_or_default()
                ));
            }
            if text
                .lines()
                .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
            {
                chunked = Some(Chunked::Size(Vec::new()));
            }
            in_head = false;
            rest = head[end + 4..].to_vec();
            data = &rest;
        }
        let before = body.len();
        match &mut chunked {
            Some(decoder) => decoder.feed(data, &mut body)?,
            None => body.extend_from_slice(data),
        }
        received += body.len() - before;
        if received > 0 && result.first_byte.is_nan() {
            result.first_byte = ms(now);
        }
        arrivals.push((body_start + body.len(), now));
        // Walk the complete tag heads (and the first data byte) now in the buffer.
        while at + 12 <= body_start + body.len() {
            let tag = &body[at - body_start..];
            let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
            if tag[0] & 0x1f == 9 && size > 0 && tag[11] >> 4 == 1 {
                let arrived = arrivals
                    .iter()
                    .find(|(reached, _)| *reached > at)
                    .map_or(now, |(_, t)| *t);
                if result.keyframe.is_nan() {
                    result.keyframe = ms(arrived);
                }
                let avc = tag[11] & 0x0f == 7;
                let coded =
                    !avc || (size > 1 && at + 13 <= body_start + body.len() && tag[12] == 1);
                if avc && size > 1 && at + 13 > body_start + body.len() {
                    // The packet type has not arrived yet: look again after the next read.
                    break;
                }
                if coded {
                    result.coded_keyframe = ms(arrived);
                    return Ok(result);
                }
            }
            at += 11 + size + 4;
        }
        // Drop what has been walked past.
        let keep_from = at.min(body_start + body.len()) - body_start;
        body.drain(..keep_from);
        body_start += keep_from;
        arrivals.retain(|(reached, _)| *reached > body_start);
    }
}

/// Median and p95 (nearest rank) of `values`.
fn summary(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let n = values.len();
        values[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
    };
    (rank(0.5), rank(0.95))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (authority, target) = parse_url(&args.url);
    let request = request(&authority, &target);
    let holder = tokio::spawn(hold(authority.clone(), request.clone()));
    tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;

    // Pauses from a xorshift seeded by the clock: random enough to land anywhere in a GOP.
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
        | 1;
    let mut joins = Vec::new();
    let mut failures = 0usize;
    for i in 0..args.joins {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pause = state % args.max_pause_ms.max(1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let timeout = Duration::from_millis(args.timeout_ms);
        match tokio::time::timeout(timeout, join(&authority, &request)).await {
            Ok(Ok(j)) => {
                println!(
                    "join {:>3}: first byte {:8.2} ms, keyframe (sequence header included) {:8.2} ms, coded keyframe {:8.2} ms",
                    i + 1,
                    j.first_byte,
                    j.keyframe,
                    j.coded_keyframe
                );
                joins.push(j);
            }
            Ok(Err(e)) => {
                println!("join {:>3}: failed: {e}", i + 1);
                failures += 1;
            }
            Err(_) => {
                println!("join {:>3}: no keyframe within {timeout:?}", i + 1);
                failures += 1;
            }
        }
    }
    holder.abort();
    if joins.is_empty() {
        println!("RESULT label={} joins=0 failures={failures}", args.label);
        return;
    }
    let (fb_med, fb_p95) = summary(&mut joins.iter().map(|j| j.first_byte).collect::<Vec<_>>());
    let (kf_med, kf_p95) = summary(&mut joins.iter().map(|j| j.keyframe).collect::<Vec<_>>());
    let (ck_med, ck_p95) = summary(&mut joins.iter().map(|j| j.coded_keyframe).collect::<Vec<_>>());
    println!(
        "RESULT label={} joins={} failures={failures} first_byte_median_ms={fb_med:.2} first_byte_p95_ms={fb_p95:.2} keyframe_median_ms={kf_med:.2} keyframe_p95_ms={kf_p95:.2} coded_keyframe_median_ms={ck_med:.2} coded_keyframe_p95_ms={ck_p95:.2}",
        args.label,
        joins.len()
    );
}
