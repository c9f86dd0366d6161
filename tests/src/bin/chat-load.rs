//! Chat load on one room: `--clients` WebSocket readers spread over the instances' `--url`s,
//! and publishers sending `--rate` messages per second in total for `--seconds`, then
//! optionally a `--burst` of messages back to back.
//!
//! ```text
//! chat-load --url ws://127.0.0.1:8080/ws --url ws://127.0.0.1:8081/ws --room 1 \
//!           --reader-token PLAY --publisher-token JWT [--clients 10000] [--rate 5] \
//!           [--seconds 30] [--burst 200] [--api-pid 123 --api-pid 456]
//! ```
//!
//! Each message's text is its sequence number and the moment it was due to be sent (not
//! when it was sent: a sender that falls behind does not hide the delay), so each reader
//! measures end-to-end delivery latency on one clock and checks that it gets every message
//! exactly once. Reported:
//!
//! - latency p50/p99/max over the paced messages;
//! - deliveries per second: during the paced phase what arrived over the phase's length
//!   (it cannot exceed the offered rate × clients), and for the burst what arrived from the
//!   first send to the last arrival (the fan-out's capacity);
//! - lost and duplicated deliveries, readers the server closed;
//! - with `--api-pid` (in the order of the URLs): each instance's resident memory before the
//!   readers connect, once they are connected and idle, and at the end, the memory per idle
//!   connection, and the instances' CPU time per delivered message in the paced phase.
//!
//! The last stdout line is `RESULT key=value …` for scripts.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Chat readers and publishers on one room.
#[derive(Debug, Parser)]
struct Args {
    /// The instances' `/ws` URLs; readers and publishers take them in turn.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// The room.
    #[arg(long)]
    room: i64,
    /// The readers' token (a play token for the room).
    #[arg(long)]
    reader_token: String,
    /// The publishers' token (the room owner's access token: owners are not rate limited).
    #[arg(long)]
    publisher_token: String,
    /// Readers.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Messages per second, all publishers together.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Length of the paced phase, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Messages sent back to back after the paced phase (0: none).
    #[arg(long, default_value_t = 0)]
    burst: usize,
    /// Readers opening their connection at once.
    #[arg(long, default_value_t = 64)]
    connecting: usize,
    /// How long to wait for the last deliveries of a phase, in seconds.
    #[arg(long, default_value_t = 15)]
    drain_s: u64,
    /// The instances' process ids, in the order of the URLs.
    #[arg(long = "api-pid")]
    api_pids: Vec<u32>,
}

/// Counters every reader updates.
#[derive(Debug, Default)]
struct Shared {
    /// Messages received for the first time, all readers together.
    unique: AtomicU64,
    /// Every chat message received, duplicates included.
    received: AtomicU64,
    /// When (µs since the start) the last burst message arrived anywhere.
    last_burst_us: AtomicU64,
}

/// What one reader saw.
#[derive(Debug, Default)]
struct Report {
    /// Delivery latencies of paced messages, µs.
    paced_us: Vec<u32>,
    /// Delivery latencies of burst messages, µs.
    burst_us: Vec<u32>,
    seen: Vec<bool>,
    duplicates: u64,
    /// Offsets that did not follow the previous one.
    out_of_order: u64,
    last_offset: Option<u64>,
    /// The server's close code when it closed the reader (0: the connection just ended).
    closed: Option<u16>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Report {
    fn frame(&mut self, text: &str, start: Instant, paced: usize, shared: &Shared) {
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
            return;
        };
        if frame.kind != "chat" {
            return;
        }
        let now = micros(start);
        let Some((seq, due)) = frame
            .text
            .as_deref()
            .and_then(|text| text.split_once(' '))
            .and_then(|(seq, due)| Some((seq.parse::<usize>().ok()?, due.parse::<u64>().ok()?)))
        else {
            return;
        };
        shared.received.fetch_add(1, Ordering::Relaxed);
        if let Some(offset) = frame.offset {
            if self.last_offset.is_some_and(|last| offset != last + 1) {
                self.out_of_order += 1;
            }
            self.last_offset = Some(offset);
        }
        if self.seen.len() <= seq {
            self.seen.resize(seq + 1, false);
        }
        if self.seen[seq] {
            self.duplicates += 1;
            return;
        }
        self.seen[seq] = true;
        shared.unique.fetch_add(1, Ordering::Relaxed);
        let latency = u32::try_from(now.saturating_sub(due)).unwrap_or(u32::MAX);
        if seq < paced {
            self.paced_us.push(latency);
        } else {
            self.burst_us.push(latency);
            shared.last_burst_us.fetch_max(now, Ordering::Relaxed);
        }
    }
}

fn config() -> WebSocketConfig {
    // Small buffers: ten thousand readers share the machine with the servers.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn connect(url: &str) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config()), false)
        .await
        .map_err(|err| err.to_string())?;
    // The first frame is the welcome.
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.contains("\"welcome\"") => Ok(ws),
        other => Err(format!("no welcome: {other:?}")),
    }
}

async fn read(
    mut ws: Ws,
    start: Instant,
    paced: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Report {
    let mut report = Report::default();
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => report.frame(&text, start, paced, &shared),
            Some(Ok(Message::Close(close))) => {
                report.closed = Some(close.map_or(0, |close| u16::from(close.code)));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                report.closed = Some(0);
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    report
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of a process (`self` for this one), in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    field(11) + field(12)
}

/// The machine's CPU time from `/proc/stat`, in clock ticks: (busy, softirq, all).
fn machine_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let field = |n: usize| fields.get(n).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal …
    let all: u64 = fields.iter().take(8).sum();
    (all - field(3) - field(4), field(6), all)
}

fn ticks_per_second() -> f64 {
    // Linux reports CPU time in USER_HZ, 100 on every architecture it runs on.
    100.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// Waits until `shared.unique` reaches `target` or `limit` passes; returns whether it did.
async fn drained(shared: &Shared, target: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while shared.unique.load(Ordering::Relaxed) < target {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn url(base: &str, room: i64, token: &str) -> String {
    format!("{base}?room={room}&token={token}")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let wanted = u64::try_from(args.clients + args.publishers + 256).unwrap_or(u64::MAX);
    let limit = rlimit::increase_nofile_limit(wanted).unwrap_or(0);
    assert!(
        limit >= wanted,
        "the open file limit is {limit}, {wanted} needed"
    );
    let start = Instant::now();
    let paced = (args.rate * args.seconds as f64).round() as usize;
    let total = paced + args.burst;
    let instances = args.urls.len();
    let rss_idle_before: Vec<u64> = args.api_pids.iter().map(|pid| rss_kib(*pid)).collect();

    // Readers.
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connecting.max(1)));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut connecting = tokio::task::JoinSet::new();
    let connect_start = Instant::now();
    for index in 0..args.clients {
        let target = url(&args.urls[index % instances], args.room, &args.reader_token);
        let (gate, failed) = (gate.clone(), failed.clone());
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            match connect(&target).await {
                Ok(ws) => Some(ws),
                Err(err) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("chat-load: a reader did not connect: {err}");
                    }
                    None
                }
            }
        });
    }
    let mut readers = tokio::task::JoinSet::new();
    while let Some(connected) = connecting.join_next().await {
        if let Ok(Some(ws)) = connected {
            readers.spawn(read(ws, start, paced, shared.clone(), stop_rx.clone()));
        }
    }
    let connected = readers.len();
    let connect_s = connect_start.elapsed().as_secs_f64();
    println!(
        "connected {connected}/{} readers over {instances} instance(s) in {connect_s:.1} s ({} failed)",
        args.clients,
        failed.load(Ordering::Relaxed)
    );
    let rss_connected: Vec<u64> = args.api_pids.iter().map(|pid| rss_kib(*pid)).collect();

    // Publishers, each with a task reading what the room sends it (its acks among them).
    let mut sinks = Vec::new();
    let mut publisher_tasks = tokio::task::JoinSet::new();
    // Messages the server refused (their `ref` is their sequence number): never published.
    let refused = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    for index in 0..args.publishers.max(1) {
        let target = url(
            &args.urls[index % instances],
            args.room,
            &args.publisher_token,
        );
        let ws = connect(&target)
            .await
            .unwrap_or_else(|err| panic!("a publisher cannot connect: {err}"));
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let (refused, mut stop) = (refused.clone(), stop_rx.clone());
        publisher_tasks.spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = stop.changed() => return,
                    frame = stream.next() => frame,
                };
                match frame {
                    Some(Ok(Message::Text(text))) if text.contains("\"type\":\"error\"") => {
                        let seq = serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|error| error["ref"].as_str()?.parse::<usize>().ok());
                        let mut refused = refused.lock().unwrap_or_else(|e| e.into_inner());
                        if refused.len() < 5 {
                            eprintln!("chat-load: a message was refused: {text}");
                        }
                        refused.extend(seq);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
    }

    // The paced phase: message `seq` is due at `seq / rate` seconds.
    let load_before = load_average();
    let api_cpu_before: Vec<u64> = args
        .api_pids
        .iter()
        .map(|pid| cpu_ticks(&pid.to_string()))
        .collect();
    let own_cpu_before = cpu_ticks("self");
    let machine_before = machine_ticks();
    let phase_start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    for seq in 0..paced {
        let due = phase_start + interval.mul_f64(seq as f64);
        tokio::time::sleep_until(due).await;
        let due_us = u64::try_from((due - start).as_micros()).unwrap_or(u64::MAX);
        let frame = serde_json::json!({"type": "chat", "text": format!("{seq} {due_us}"), "ref": seq.to_string()});
        let publisher = seq % sinks.len();
        let sink = &mut sinks[publisher];
        if let Err(err) = sink.send(Message::text(frame.to_string())).await {
            panic!("a publisher's connection failed: {err}");
        }
    }
    let refused_below = |end: usize| {
        let refused = refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.iter().filter(|seq| **seq < end).count()
    };
    // Refusals come back before the last deliveries of what was accepted.
    let paced_target =
        u64::try_from((paced - refused_below(paced)) * connected).unwrap_or(u64::MAX);
    let paced_complete = drained(&shared, paced_target, Duration::from_secs(args.drain_s)).await;
    let paced_s = phase_start.elapsed().as_secs_f64();
    let paced_received = shared.unique.load(Ordering::Relaxed);
    let api_cpu_after: Vec<u64> = args
        .api_pids
        .iter()
        .map(|pid| cpu_ticks(&pid.to_string()))
        .collect();
    let own_cpu_after = cpu_ticks("self");
    let machine_after = machine_ticks();
    let load_after = load_average();

    // The burst: back to back, as fast as the publishers' sockets take them.
    let mut burst_s = 0.0;
    let mut burst_complete = true;
    if args.burst > 0 {
        let burst_start = micros(start);
        for seq in paced..total {
            let due_us = micros(start);
            let frame = serde_json::json!({"type": "chat", "text": format!("{seq} {due_us}"), "ref": seq.to_string()});
            let publisher = seq % sinks.len();
            let sink = &mut sinks[publisher];
            if let Err(err) = sink.send(Message::text(frame.to_string())).await {
                panic!("a publisher's connection failed: {err}");
            }
        }
        let target = u64::try_from((total - refused_below(total)) * connected).unwrap_or(u64::MAX);
        burst_complete = drained(&shared, target, Duration::from_secs(args.drain_s)).await;
        let last = shared.last_burst_us.load(Ordering::Relaxed);
        burst_s = last.saturating_sub(burst_start) as f64 / 1e6;
    }
    let rss_end: Vec<u64> = args.api_pids.iter().map(|pid| rss_kib(*pid)).collect();

    stop_tx.send_replace(true);
    let refused = std::mem::take(&mut *refused.lock().unwrap_or_else(|e| e.into_inner()));
    let mut paced_us = Vec::with_capacity(paced * connected);
    let mut burst_us = Vec::with_capacity(args.burst * connected);
    let (mut lost, mut duplicates, mut out_of_order) = (0u64, 0u64, 0u64);
    let mut closed = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(report) = readers.join_next().await {
        let Ok(mut report) = report else { continue };
        paced_us.append(&mut report.paced_us);
        burst_us.append(&mut report.burst_us);
        // What the server accepted and the reader never got.
        let missing = (0..total)
            .filter(|seq| !report.seen.get(*seq).copied().unwrap_or(false))
            .filter(|seq| !refused.contains(seq))
            .count();
        lost += u64::try_from(missing).unwrap_or(u64::MAX);
        duplicates += report.duplicates;
        out_of_order += report.out_of_order;
        if let Some(code) = report.closed {
            *closed.entry(code).or_default() += 1;
        }
    }
    while publisher_tasks.join_next().await.is_some() {}
    paced_us.sort_unstable();
    burst_us.sort_unstable();

    let hz = ticks_per_second();
    let api_cpu_s: f64 = api_cpu_after
        .iter()
        .zip(&api_cpu_before)
        .map(|(after, before)| after.saturating_sub(*before) as f64 / hz)
        .sum();
    let own_cpu_s = own_cpu_after.saturating_sub(own_cpu_before) as f64 / hz;
    let paced_rate = paced_received as f64 / paced_s;
    let burst_deliveries = (args.burst * connected) as f64;
    let burst_rate = if burst_s > 0.0 {
        burst_deliveries / burst_s
    } else {
        0.0
    };
    let per_instance = connected.div_ceil(instances.max(1)).max(1);
    let per_connection_kib: Vec<f64> = rss_connected
        .iter()
        .zip(&rss_idle_before)
        .map(|(after, before)| after.saturating_sub(*before) as f64 / per_instance as f64)
        .collect();
    let worst_kib = per_connection_kib.iter().copied().fold(0.0, f64::max);
    let cpu_us_per_delivery = if paced_received > 0 {
        api_cpu_s * 1e6 / paced_received as f64
    } else {
        0.0
    };

    println!(
        "paced: {paced} messages at {} msg/s over {:.1} s to {connected} readers: {paced_received} deliveries ({}), {paced_rate:.0} deliveries/s (offered {:.0}/s)",
        args.rate,
        paced_s,
        if paced_complete { "all" } else { "INCOMPLETE" },
        args.rate * connected as f64,
    );
    println!(
        "latency (due to received) ms: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        percentile(&paced_us, 50.0),
        percentile(&paced_us, 99.0),
        percentile(&paced_us, 99.9),
        percentile(&paced_us, 100.0),
    );
    if args.burst > 0 {
        println!(
            "burst: {} messages back to back to {connected} readers: {burst_deliveries:.0} deliveries in {burst_s:.2} s = {burst_rate:.0} deliveries/s ({}), latency p50 {:.1} ms p99 {:.1} ms",
            args.burst,
            if burst_complete { "all" } else { "INCOMPLETE" },
            percentile(&burst_us, 50.0),
            percentile(&burst_us, 99.0),
        );
    }
    println!(
        "lost {lost} (deliveries of accepted messages that never arrived), duplicated {duplicates}, out of order {out_of_order}, sends refused by the server {} (never published), readers closed by the server {closed:?}",
        refused.len()
    );
    for (index, pid) in args.api_pids.iter().enumerate() {
        println!(
            "instance {index} (pid {pid}): RSS {} KiB before, {} KiB with {per_instance} idle readers, {} KiB at the end: {:.1} KiB per idle connection",
            rss_idle_before[index], rss_connected[index], rss_end[index], per_connection_kib[index]
        );
    }
    let machine_all = machine_after.2.saturating_sub(machine_before.2).max(1) as f64;
    println!(
        "machine CPU in the paced phase: {:.0}% busy, {:.0}% in softirq (the loopback's packet processing, charged to no process)",
        100.0 * machine_after.0.saturating_sub(machine_before.0) as f64 / machine_all,
        100.0 * machine_after.1.saturating_sub(machine_before.1) as f64 / machine_all,
    );
    println!(
        "CPU in the paced phase: instances {api_cpu_s:.2} s ({cpu_us_per_delivery:.2} us per delivery), chat-load {own_cpu_s:.2} s; load average {load_before} before, {load_after} after"
    );
    println!(
        "RESULT readers={connected} paced={paced} paced_deliveries={paced_received} paced_rate={paced_rate:.0} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} burst_rate={burst_rate:.0} refused={} lost={lost} duplicated={duplicates} out_of_order={out_of_order} closed={} kib_per_connection={worst_kib:.1} cpu_us_per_delivery={cpu_us_per_delivery:.2} api_cpu_s={api_cpu_s:.2} load_cpu_s={own_cpu_s:.2} connect_s={connect_s:.1}",
        percentile(&paced_us, 50.0),
        percentile(&paced_us, 99.0),
        percentile(&paced_us, 100.0),
        refused.len(),
        closed.values().sum::<usize>(),
    );
}
