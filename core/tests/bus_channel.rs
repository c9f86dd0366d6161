//! `Channel<T>` on both backends: fan-out to local subscribers through one Redis
//! subscription per process, lag reporting, and resubscription after Redis restarts.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use std::time::Duration;

use livegate_core::bus::{Bus, Channel, Received, Subscriber};
use livegate_tests::{wait_for_listener, wait_until, ChildGuard};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Chat {
    n: u32,
}

async fn next(sub: &mut Subscriber<Chat>) -> Received<Chat> {
    tokio::time::timeout(livegate_tests::patience(), sub.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("the bus closed")
}

/// The `CLIENT LIST` lines of connections named `name`.
async fn clients_named(url: &str, name: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let wanted = format!(" name={name} ");
    list.lines()
        .filter(|line| format!(" {line} ").contains(&wanted))
        .map(str::to_owned)
        .collect()
}

/// The `sub=` count of a `CLIENT LIST` line.
fn subscriptions(line: &str) -> u32 {
    line.split(' ')
        .find_map(|field| field.strip_prefix("sub="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn one_redis_subscription_feeds_every_local_subscriber() {
    for (name, config) in support::configs_with(|_| {}) {
        let bus = Bus::connect(&config).unwrap();
        let rooms: Channel<Chat> = bus.channel("room:1");
        let other: Channel<Chat> = bus.channel("room:2");
        let mut in_room = Vec::new();
        for _ in 0..3 {
            in_room.push(rooms.subscribe().await.unwrap());
        }
        let mut elsewhere = Vec::new();
        for _ in 0..2 {
            elsewhere.push(other.subscribe().await.unwrap());
        }
        rooms.publish(&Chat { n: 1 }).await.unwrap();
        other.publish(&Chat { n: 2 }).await.unwrap();
        for sub in &mut in_room {
            assert_eq!(next(sub).await, Received::Message(Chat { n: 1 }), "{name}");
        }
        for sub in &mut elsewhere {
            assert_eq!(next(sub).await, Received::Message(Chat { n: 2 }), "{name}");
        }

        if name == "redis" {
            // Five subscribers on two channels: one connection, subscribed to both.
            let url = config.url.expose();
            let hub = format!("{}:subscriber", config.key_prefix);
            let clients = clients_named(url, &hub).await;
            assert_eq!(clients.len(), 1, "{clients:?}");
            assert_eq!(subscriptions(&clients[0]), 2, "{clients:?}");
            // The last subscriber of a channel leaving unsubscribes it.
            drop(in_room);
            wait_until("room:1 to be unsubscribed", || async {
                let clients = clients_named(url, &hub).await;
                (clients.len() == 1 && subscriptions(&clients[0]) == 1).then_some(())
            })
            .await;
        }
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_how_many_it_missed() {
    for (name, config) in support::configs_with(|config| config.events_capacity = 4) {
        let bus = Bus::connect(&config).unwrap();
        let channel: Channel<Chat> = bus.channel("room:lag");
        let mut fast = channel.subscribe().await.unwrap();
        let mut slow = channel.subscribe().await.unwrap();
        for n in 1..=10 {
            channel.publish(&Chat { n }).await.unwrap();
            // The fast one keeps up: the slow one does not hold it back.
            assert_eq!(
                next(&mut fast).await,
                Received::Message(Chat { n }),
                "{name}"
            );
        }
        assert_eq!(next(&mut slow).await, Received::Lagged(6), "{name}");
        for n in 7..=10 {
            assert_eq!(
                next(&mut slow).await,
                Received::Message(Chat { n }),
                "{name}"
            );
        }
        bus.clear().await.unwrap();
    }
}

/// A redis-server of this test's own, on `port`.
fn redis_server(port: u16) -> ChildGuard {
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard::new("redis-server", child)
}

#[tokio::test]
async fn a_subscriber_receives_again_after_redis_restarts() {
    if livegate_core::testing::tool("redis-server").is_none() {
        return;
    }
    let port = livegate_tests::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = redis_server(port);
    wait_for_listener("redis-server", addr).await;
    let config = support::redis_config(&format!("redis://127.0.0.1:{port}"), &|_| {});
    let bus = Bus::connect(&config).unwrap();
    let channel: Channel<Chat> = bus.channel("room:restart");
    let mut sub = channel.subscribe().await.unwrap();
    channel.publish(&Chat { n: 1 }).await.unwrap();
    assert_eq!(next(&mut sub).await, Received::Message(Chat { n: 1 }));

    server.signal("KILL");
    server.wait();
    let _server = redis_server(port);
    wait_for_listener("the restarted redis-server", addr).await;

    // Publishing during the resubscription is lost (pub/sub keeps nothing): publish until
    // the subscriber has one, having been told of the gap first.
    let deadline = std::time::Instant::now() + livegate_tests::patience();
    let mut told = false;
    let got = 'published: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for a message after the restart"
        );
        let _ = channel.publish(&Chat { n: 2 }).await;
        while let Ok(received) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await
        {
            match received.expect("the bus closed") {
                Received::Reconnected => told = true,
                other => break 'published other,
            }
        }
    };
    assert_eq!(got, Received::Message(Chat { n: 2 }));
    assert!(told, "the subscriber was not told of the reconnection");
}
