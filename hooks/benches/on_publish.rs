//! `on_publish` throughput and latency against MariaDB and Redis with 64 concurrent callers.
//!
//! ```text
//! LIVEGATE_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//! LIVEGATE_TEST_REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo bench -p livegate-hooks --bench on_publish
//! ```
//!
//! Each request is a real SRS `on_publish` body for a distinct room, so every one takes the
//! full path: rate limit on Redis, room lookup, key check, one transaction (conditional room
//! update + stream insert), then the live key and event through the outbox. The service runs
//! in this process on 127.0.0.1:0, as do the callers. Without the variables it falls back to
//! SQLite and the in-process bus and says so.
#![allow(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livegate_core::bus::{Bus, BusConfig};
use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{users, Backend, Database, DbConfig};
use livegate_core::service::{Shutdown, Stop};
use livegate_core::Secret;
use livegate_hooks::{App, Config, Deps};

/// Concurrent callers; `LIVEGATE_BENCH_CALLERS` changes it (to see latency without queueing).
const CALLERS: usize = 64;
const WARMUP: usize = 1_000;
const MEASURED: usize = 20_000;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn create_rooms(db: &Database, count: usize) {
    let owner = users::create(db, "bench", "x", "streamer", 1)
        .await
        .unwrap();
    for chunk in (1..=count).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| format!("({id}, {owner}, 'bench', 'key-{id}', 1)"))
            .collect();
        let sql = format!(
            "INSERT INTO rooms (id, owner_id, title, stream_key, created_at) VALUES {}",
            values.join(",")
        );
        match db {
            Database::Mysql(pool) => {
                sqlx::query(&sql).execute(pool).await.unwrap();
            }
            Database::Sqlite(pool) => {
                sqlx::query(&sql).execute(pool).await.unwrap();
            }
        }
    }
}

fn body(room: usize) -> String {
    format!(
        r#"{{"server_id":"bench-srs","service_id":"bench001","action":"on_publish","client_id":"c{room}","ip":"127.0.0.1","vhost":"__defaultVhost__","app":"live","tcUrl":"rtmp://127.0.0.1/live","stream":"{room}","param":"?key=key-{room}","stream_url":"/live/{room}","stream_id":"vid-{room}"}}"#
    )
}

fn callers() -> usize {
    env("LIVEGATE_BENCH_CALLERS")
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(CALLERS)
}

async fn run_phase(
    client: &reqwest::Client,
    url: &str,
    first_room: usize,
    count: usize,
) -> (Vec<Duration>, Duration, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers() {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let room = first_room + i;
                let sent = Instant::now();
                let ok = publish(&client, &url, room).await;
                latencies.push(sent.elapsed());
                if !ok {
                    failures += 1;
                }
            }
            (latencies, failures)
        });
    }
    let mut all = Vec::with_capacity(count);
    let mut failures = 0;
    while let Some(done) = tasks.join_next().await {
        let (latencies, failed) = done.unwrap();
        all.extend(latencies);
        failures += failed;
    }
    (all, started.elapsed(), failures)
}

/// Open loop: request `i` is due at `i / rate` seconds whatever the earlier ones do, and its
/// latency counts from when it was due (so a stall is not hidden by callers that wait).
async fn run_open_loop(
    client: &reqwest::Client,
    url: &str,
    first_room: usize,
    count: usize,
    rate: f64,
) -> (Vec<Duration>, Duration, usize) {
    // Requests in flight at once, at most: beyond it the next one waits (and is late).
    const MAX_IN_FLIGHT: usize = 4096;
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut all = Vec::with_capacity(count);
    let mut failures = 0;
    let mut collect = |done: Result<(Duration, bool), tokio::task::JoinError>| {
        let (latency, ok) = done.unwrap();
        all.push(latency);
        if !ok {
            failures += 1;
        }
    };
    for i in 0..count {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        while tasks.len() >= MAX_IN_FLIGHT {
            if let Some(done) = tasks.join_next().await {
                collect(done);
            }
        }
        let (client, url, room) = (client.clone(), url.to_owned(), first_room + i);
        tasks.spawn(async move {
            let ok = publish(&client, &url, room).await;
            (due.elapsed(), ok)
        });
    }
    while let Some(done) = tasks.join_next().await {
        collect(done);
    }
    (all, started.elapsed(), failures)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; with a filter that does not name this bench, skip.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args
        .iter()
        .any(|filter| !"on_publish".contains(filter.as_str()))
    {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let backend = if env("LIVEGATE_TEST_MYSQL_URL").is_some() {
        Backend::Mysql
    } else {
        eprintln!("LIVEGATE_TEST_MYSQL_URL unset: benchmarking SQLite instead of MariaDB");
        Backend::Sqlite
    };
    let bus_config = match env("LIVEGATE_TEST_REDIS_URL") {
        Some(url) => BusConfig {
            url: Secret::new(url),
            key_prefix: format!("lgbench:{}", std::process::id()),
            ..BusConfig::default()
        },
        None => {
            eprintln!(
                "LIVEGATE_TEST_REDIS_URL unset: benchmarking the in-process bus instead of Redis"
            );
            BusConfig::default()
        }
    };
    let test_db = TestDatabase::create(backend).await.unwrap();
    create_rooms(&test_db.db, WARMUP + MEASURED).await;
    // The production default pool size unless `LIVEGATE_BENCH_POOL` says otherwise: more
    // connections than cores only adds contention inside the database.
    let pool = env("LIVEGATE_BENCH_POOL")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DbConfig::default().max_connections);
    let db = Database::connect(&DbConfig {
        url: Secret::new(test_db.url.clone()),
        max_connections: pool,
        acquire_timeout_ms: 5000,
        migrate_on_start: false,
        statement_timeout_ms: Some(Config::default().server.deadline_ms),
    })
    .await
    .unwrap();
    // As App::build does: every pooled connection open before the first request.
    db.warm_up().await.unwrap();
    let bus = Bus::connect(&bus_config).unwrap();

    let mut config = Config::default();
    config.play.require_token = false;
    // The limiter stays on (one Redis round trip per publish) but never refuses.
    config.publish.attempts_per_ip_per_minute = u32::MAX;
    config.bus = bus_config;
    let app = App::build_with(
        config,
        Deps {
            db,
            bus: bus.clone(),
            origins: Default::default(),
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/v1/hook/on_publish",
        listener.local_addr().unwrap()
    );
    let shutdown = Shutdown::new();
    let server = tokio::spawn(app.run(listener, admin, shutdown.clone()));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(callers())
        .build()
        .unwrap();
    let (_, _, warm_failures) = run_phase(&client, &url, 1, WARMUP).await;
    assert_eq!(warm_failures, 0, "warm-up publishes were refused");
    // `LIVEGATE_BENCH_RATE` (requests per second) measures an open loop at that rate instead
    // of `callers()` closed-loop callers.
    let rate = env("LIVEGATE_BENCH_RATE")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| *r > 0.0);
    let (mut latencies, elapsed, failures) = match rate {
        Some(rate) => run_open_loop(&client, &url, 1 + WARMUP, MEASURED, rate).await,
        None => run_phase(&client, &url, 1 + WARMUP, MEASURED).await,
    };
    latencies.sort();

    println!(
        "on_publish: {} requests, {}, pool of {pool}, {backend:?} + {}",
        latencies.len(),
        match rate {
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => format!("{} concurrent callers", callers()),
        },
        if env("LIVEGATE_TEST_REDIS_URL").is_some() {
            "Redis"
        } else {
            "in-process bus"
        }
    );
    println!(
        "  throughput  {:.0} req/s",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    for (name, p) in [
        ("p50", 0.50),
        ("p90", 0.90),
        ("p99", 0.99),
        ("p99.9", 0.999),
    ] {
        println!(
            "  {name:<10}  {:.2} ms",
            percentile(&latencies, p).as_secs_f64() * 1000.0
        );
    }
    println!(
        "  max         {:.2} ms",
        latencies.last().unwrap().as_secs_f64() * 1000.0
    );
    println!("  refused     {failures}");

    shutdown.request(Stop::Drain);
    server.await.unwrap().unwrap();
    bus.clear().await.unwrap();
    assert_eq!(failures, 0, "publishes were refused during the measurement");
}

/// Sends one `on_publish` for `room` and reads the whole reply; `true` when accepted.
async fn publish(client: &reqwest::Client, url: &str, room: usize) -> bool {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body(room))
        .send()
        .await
        .unwrap();
    let ok = response.status() == 200;
    let _ = response.bytes().await.unwrap();
    ok
}
