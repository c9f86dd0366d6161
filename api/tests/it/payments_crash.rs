//! The payment flow survives its process being killed: the real `livegate-api` binary gets
//! duplicate callbacks, concurrently and out of order (some forged, some with the wrong
//! amount), and is SIGKILLed and restarted at random moments meanwhile. Afterwards every good
//! order is paid once, no other is, every gift is on its room's bus log once, and every
//! refusal is recorded with its reason.

use std::collections::{HashMap, HashSet, VecDeque};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livegate_api::payments::signature::sign;
use livegate_core::bus::gifts::room_key;
use livegate_core::bus::{Bus, BusConfig};
use livegate_core::db::orders::{self, NewOrder};
use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{gifts, payments, rooms, users, Backend, Database, NewRoom};
use livegate_tests::{free_port, wait_until, ChildGuard};
use serde_json::json;

use crate::orders::SECRETS;
use crate::support::{redis_config, JWT_KEY, PLAY_KEY};

/// Orders in the run; `LIVEGATE_TEST_PAYMENT_ORDERS` changes it.
fn order_count() -> usize {
    std::env::var("LIVEGATE_TEST_PAYMENT_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}
const ROOMS: usize = 10;
const KILLS: usize = 5;
const SENDERS: usize = 32;
const PRICE: i64 = 300;

/// A small xorshift: the run's randomness, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What an order gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Three copies of a good event (plus, for some, a forged copy of it or a wrong-amount
    /// event of its own): paid once.
    Good,
    /// Three forged deliveries: stays pending.
    Forged,
    /// Three copies of an authentic event with the wrong amount: stays pending.
    WrongAmount,
}

#[derive(Debug, Clone)]
struct Delivery {
    event: serde_json::Value,
    /// The secret it is signed with.
    secret: &'static str,
}

const FORGER: &str = "a-secret-we-never-configured";

struct Run {
    port: u16,
    admin_port: u16,
    config_path: std::path::PathBuf,
    log_path: std::path::PathBuf,
}

impl Run {
    fn spawn(&self) -> ChildGuard {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_livegate-api"))
            .arg("-c")
            .arg(&self.config_path)
            .env_remove("LIVEGATE_API_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        ChildGuard::new("livegate-api", child)
    }

    async fn ready(&self, client: &reqwest::Client) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        wait_until("livegate-api ready", || {
            let request = client.get(&url).send();
            async move {
                request
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(drop)
            }
        })
        .await;
    }
}

fn config_toml(db_url: &str, bus: &BusConfig, port: u16, admin_port: u16) -> String {
    let secrets: Vec<String> = SECRETS.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin_port}"
shutdown_grace_ms = 1000

[database]
url = "{db_url}"
acquire_timeout_ms = 5000
max_connections = 8

[bus]
url = "{bus_url}"
key_prefix = "{prefix}"

[auth]
jwt_keys = ["{JWT_KEY}"]
argon2_memory_kib = 1024
argon2_iterations = 1

[play_token]
keys = ["{PLAY_KEY}"]

[payments]
callback_secrets = [{secrets}]
relay_interval_ms = 100

[log]
filter = "warn"
"#,
        bus_url = bus.url.expose(),
        prefix = bus.key_prefix,
        secrets = secrets.join(", "),
    )
}

/// Creates the rooms, the gift and the orders; returns (order id, reference, room, fate).
async fn seed(db: &Database, count: usize) -> Vec<(i64, String, i64, Fate)> {
    let now = livegate_core::db::now_ms();
    let owner = users::create(db, "owner", "unused", "streamer", now)
        .await
        .unwrap();
    let buyer = users::create(db, "buyer", "unused", "viewer", now)
        .await
        .unwrap();
    let mut room_ids = Vec::new();
    for index in 0..ROOMS {
        let key = format!("chaos-key-{index}");
        let room = rooms::create(
            db,
            &NewRoom {
                owner_id: owner,
                title: "chaos",
                stream_key: &key,
                stream_key_expires_at: None,
                publish_allow_cidrs: None,
            },
            now,
        )
        .await
        .unwrap();
        room_ids.push(room);
    }
    let gift = gifts::create_gift(db, "star", PRICE, "EUR", true, now)
        .await
        .unwrap();
    let mut seeded = Vec::with_capacity(count);
    for index in 0..count {
        let reference = format!("pay_chaos_{index}");
        let room = room_ids[index % ROOMS];
        let order = orders::create(
            db,
            &NewOrder {
                user_id: buyer,
                room_id: room,
                gift_id: gift,
                amount: PRICE,
                currency: "EUR",
                status: "pending",
                payment_ref: Some(&reference),
            },
            now,
        )
        .await
        .unwrap();
        let fate = match index % 10 {
            0 => Fate::Forged,
            1 => Fate::WrongAmount,
            _ => Fate::Good,
        };
        seeded.push((order, reference, room, fate));
    }
    seeded
}

fn event(id: &str, reference: &str, amount: i64) -> serde_json::Value {
    json!({"id": id, "type": "payment.succeeded",
           "data": {"reference": reference, "amount": amount, "currency": "EUR"}})
}

/// Every delivery of the run, shuffled.
fn deliveries(seeded: &[(i64, String, i64, Fate)], rng: &mut Rng) -> Vec<Delivery> {
    let mut all = Vec::new();
    for (index, (_, reference, _, fate)) in seeded.iter().enumerate() {
        let id = format!("evt_{index}");
        match fate {
            Fate::Good => {
                for copy in 0..3 {
                    all.push(Delivery {
                        event: event(&id, reference, PRICE),
                        // Rotation: both configured secrets sign.
                        secret: SECRETS[copy % 2],
                    });
                }
                match index % 10 {
                    // A forged copy of the real event id must not shadow the real event.
                    2 => all.push(Delivery {
                        event: event(&id, reference, PRICE),
                        secret: FORGER,
                    }),
                    // An authentic event with the wrong amount, refused beside the good one.
                    3 => all.push(Delivery {
                        event: event(&format!("evt_{index}_cheap"), reference, 1),
                        secret: SECRETS[0],
                    }),
                    _ => {}
                }
            }
            Fate::Forged => {
                for _ in 0..3 {
                    all.push(Delivery {
                        event: event(&id, reference, PRICE),
                        secret: FORGER,
                    });
                }
            }
            Fate::WrongAmount => {
                for _ in 0..3 {
                    all.push(Delivery {
                        event: event(&id, reference, PRICE + 1),
                        secret: SECRETS[0],
                    });
                }
            }
        }
    }
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i + 1));
    }
    all
}

/// Delivers `delivery` until the service answers it (a provider redelivers on errors and 5xx).
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    delivery: &Delivery,
    retries: &AtomicUsize,
) -> (u16, String) {
    let body = delivery.event.to_string();
    loop {
        // Signed at each attempt, as a provider does: the timestamp is the attempt's.
        let t = livegate_api::unix_now();
        let signature = format!(
            "t={t},v1={}",
            sign(delivery.secret.as_bytes(), t, body.as_bytes())
        );
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("livegate-signature", signature)
            .body(body.clone())
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            if status < 500 {
                let answer: serde_json::Value = response.json().await.unwrap_or_default();
                let outcome = answer["status"]
                    .as_str()
                    .or(answer["error"]["code"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                return (status, outcome);
            }
        }
        // The process is down or restarting: try again shortly.
        retries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chaos(backend: Backend) {
    let Some(bus_config) = redis_config() else {
        return;
    };
    let test_db = TestDatabase::create(backend).await.unwrap();
    let db = test_db.db.clone();
    let seed_value = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!(
        "payment chaos on {backend:?}: seed {seed_value}, {} orders",
        order_count()
    );
    let mut rng = Rng(seed_value);
    let seeded = seed(&db, order_count()).await;
    let all = deliveries(&seeded, &mut rng);
    let total = all.len();

    let dir = tempfile::tempdir().unwrap();
    let run = Run {
        port: free_port(),
        admin_port: free_port(),
        config_path: dir.path().join("api.toml"),
        log_path: dir.path().join("api.log"),
    };
    std::fs::write(
        &run.config_path,
        config_toml(&test_db.url, &bus_config, run.port, run.admin_port),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut child = run.spawn();
    run.ready(&client).await;

    let queue = Arc::new(Mutex::new(all.into_iter().collect::<VecDeque<_>>()));
    let answered = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let retries = Arc::new(AtomicUsize::new(0));
    let url = format!("http://127.0.0.1:{}/api/v1/payments/callback", run.port);
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (queue, answered, answers) = (queue.clone(), answered.clone(), answers.clone());
        let retries = retries.clone();
        let (client, url) = (client.clone(), url.clone());
        senders.spawn(async move {
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some(delivery) = next else { return };
                let answer = deliver(&client, &url, &delivery, &retries).await;
                answers.lock().unwrap().push((delivery, answer));
                answered.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    // The killer: SIGKILL after a random number of answers, restart, again.
    let mut kills = 0;
    for _ in 0..KILLS {
        let at = answered.load(Ordering::SeqCst) + 1 + rng.below(total / (KILLS + 1));
        let reached = wait_until("callbacks answered before the next kill", || {
            let answered = answered.clone();
            async move {
                let now = answered.load(Ordering::SeqCst);
                (now >= at.min(total)).then_some(now)
            }
        })
        .await;
        if reached >= total {
            break;
        }
        child.signal("KILL");
        child.wait();
        kills += 1;
        child = run.spawn();
        run.ready(&client).await;
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    assert!(
        kills >= 3,
        "only {kills} kills happened before the run ended"
    );
    let retries = retries.load(Ordering::SeqCst);
    println!("{total} deliveries answered across {kills} SIGKILLs, {retries} attempts cut off");
    // The kills landed on requests in flight, not between them.
    assert!(retries > 0);

    // Every gift relayed.
    wait_until("the outbox relayed", || {
        let db = db.clone();
        async move { (payments::unrelayed_count(&db).await.unwrap() == 0).then_some(()) }
    })
    .await;

    // Exactly one paid per good order, none for the others.
    for (order_id, _, _, fate) in &seeded {
        let status = orders::get(&db, *order_id).await.unwrap().unwrap().status;
        let expected = if *fate == Fate::Good {
            "paid"
        } else {
            "pending"
        };
        assert_eq!(status, expected, "order {order_id} ({fate:?})");
    }
    let good: HashSet<i64> = seeded
        .iter()
        .filter(|s| s.3 == Fate::Good)
        .map(|s| s.0)
        .collect();

    // The inbox: one row per authentic event, with its outcome and reason.
    let mut inbox = Vec::new();
    let mut after = 0;
    loop {
        let page = payments::events(&db, after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        inbox.extend(page);
    }
    let paid: Vec<_> = inbox.iter().filter(|e| e.outcome == "paid").collect();
    assert_eq!(paid.len(), good.len());
    assert!(paid.iter().all(|e| good.contains(&e.order_id.unwrap())));
    let refused: HashSet<&str> = inbox
        .iter()
        .filter(|e| e.outcome == "refused")
        .map(|e| {
            assert_eq!(e.reason.as_deref(), Some("amount_mismatch"), "{e:?}");
            e.event_id.as_str()
        })
        .collect();
    let expected_refused: HashSet<String> = seeded
        .iter()
        .enumerate()
        .filter_map(|(index, (_, _, _, fate))| match (fate, index % 10) {
            (Fate::WrongAmount, _) => Some(format!("evt_{index}")),
            (Fate::Good, 3) => Some(format!("evt_{index}_cheap")),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        expected_refused.iter().map(String::as_str).collect()
    );
    assert_eq!(
        inbox.len(),
        paid.len() + refused.len(),
        "no other inbox outcomes"
    );

    // Forged deliveries: each one answered was refused and recorded as bad_signature.
    // Every sender has ended: the answers are complete.
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let forged: Vec<_> = answers.iter().filter(|(d, _)| d.secret == FORGER).collect();
    assert!(forged
        .iter()
        .all(|(_, answer)| answer == &(400, "invalid_signature".to_owned())));
    let mut refusals = Vec::new();
    let mut after = 0;
    loop {
        let page = payments::refusals(&db, after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        refusals.extend(page);
    }
    assert!(
        refusals.iter().all(|r| r.reason == "bad_signature"),
        "{refusals:?}"
    );
    // A refusal is written before its answer: at least one row per answered forgery.
    assert!(refusals.len() >= forged.len());
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for refusal in &refusals {
        *per_event
            .entry(refusal.event_id.as_deref().unwrap())
            .or_default() += 1;
    }
    for (delivery, _) in &forged {
        let id = delivery.event["id"].as_str().unwrap();
        assert!(per_event.contains_key(id), "forged {id} not recorded");
    }
    // Answers: authentic refusals are 422 the first time, then duplicates.
    let paid_answers = answers.iter().filter(|(_, a)| a.1 == "paid").count();
    assert!(paid_answers <= good.len());

    // Every gift on its room's log exactly once.
    let bus = Bus::connect(&bus_config).unwrap();
    let log = bus.gift_events();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for room in seeded.iter().map(|s| s.2).collect::<HashSet<_>>() {
        let history = log.read(&room_key(room), None, 1000).await.unwrap();
        assert!(history.complete);
        for entry in history.entries {
            assert_eq!(entry.value.room_id, room);
            *seen.entry(entry.value.order_id).or_default() += 1;
        }
    }
    assert_eq!(
        seen.len(),
        good.len(),
        "gift events for exactly the good orders"
    );
    assert!(
        seen.iter()
            .all(|(order, n)| *n == 1 && good.contains(order)),
        "a gift twice"
    );

    child.terminate();
    bus.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_survive_sigkill_on_sqlite() {
    chaos(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_survive_sigkill_on_mariadb() {
    if livegate_core::testing::mysql_url().is_none() {
        return;
    }
    chaos(Backend::Mysql).await;
}
