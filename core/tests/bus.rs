//! The bus's room state and recording queue against both backends: in-process always, Redis
//! from `LIVEGATE_TEST_REDIS_URL` (required under CI). Every Redis test uses its own key
//! prefix.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use std::time::Duration;

use livegate_core::bus::{
    Bus, BusConfig, BusError, LiveState, Received, RecordingJob, RoomEvent, RoomEventKind,
    Subscriber,
};
use livegate_core::Secret;
use livegate_tests::wait_until;

fn configs(jobs_capacity: usize) -> Vec<(&'static str, BusConfig)> {
    support::configs_with(|config| config.jobs_capacity = jobs_capacity)
}

fn job(room_id: i64) -> RecordingJob {
    RecordingJob {
        room_id,
        stream_id: Some(7),
        path: format!("/rec/{room_id}.flv"),
        origin_kind: "srs".into(),
        origin_server_id: "srv".into(),
        size_bytes: None,
        duration_ms: Some(1500),
        enqueued_at_ms: 1,
    }
}

/// The next message of `sub` (within the patience), past any notice.
async fn next_message(sub: &mut Subscriber<RoomEvent>) -> RoomEvent {
    loop {
        let received = tokio::time::timeout(livegate_tests::patience(), sub.recv())
            .await
            .expect("a message within the patience")
            .expect("the bus is open");
        if let Received::Message(event) = received {
            return event;
        }
    }
}

#[tokio::test]
async fn clear_removes_everything_under_the_prefix() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        bus.set_live(
            1,
            &LiveState {
                stream_id: 1,
                started_at_ms: 1,
                origin_server_id: "s".into(),
            },
        )
        .await
        .unwrap();
        bus.viewer_join(1, "a").await.unwrap();
        bus.recordings().push(&job(1)).await.unwrap();
        bus.clear().await.unwrap();
        assert_eq!(bus.live(1).await.unwrap(), None, "{name}");
        assert_eq!(bus.viewers(1).await.unwrap(), 0, "{name}");
        assert_eq!(bus.recordings().outstanding().await.unwrap(), 0, "{name}");
        // The queue works again afterwards (the consumer group is recreated).
        bus.recordings().push(&job(2)).await.unwrap();
        assert_eq!(
            bus.recordings()
                .consumer("w")
                .next(1, Duration::ZERO)
                .await
                .unwrap()
                .len(),
            1,
            "{name}"
        );
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn live_state_is_cleared_only_by_its_own_stream() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        assert_eq!(bus.live(1).await.unwrap(), None, "{name}");
        let state = LiveState {
            stream_id: 5,
            started_at_ms: 1000,
            origin_server_id: "srv".into(),
        };
        bus.set_live(1, &state).await.unwrap();
        assert_eq!(bus.live(1).await.unwrap(), Some(state.clone()), "{name}");
        assert!(
            !bus.clear_live(1, 4).await.unwrap(),
            "{name}: stale stop cleared"
        );
        assert_eq!(bus.live(1).await.unwrap(), Some(state), "{name}");
        assert!(bus.clear_live(1, 5).await.unwrap(), "{name}");
        assert!(!bus.clear_live(1, 5).await.unwrap(), "{name}: double clear");
        assert_eq!(bus.live(1).await.unwrap(), None, "{name}");
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn events_reach_subscribers_in_order() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        let mut sub = bus.events().subscribe().await.unwrap();
        for (i, kind) in [RoomEventKind::Live, RoomEventKind::Offline]
            .into_iter()
            .enumerate()
        {
            bus.events()
                .publish(&RoomEvent {
                    kind,
                    room_id: 3,
                    stream_id: 9,
                    at_ms: i as i64,
                })
                .await
                .unwrap();
        }
        let first = next_message(&mut sub).await;
        let second = next_message(&mut sub).await;
        assert_eq!(
            (first.kind, second.kind),
            (RoomEventKind::Live, RoomEventKind::Offline),
            "{name}"
        );
        assert_eq!(first.room_id, 3, "{name}");
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn viewer_counts_are_idempotent() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        assert_eq!(bus.viewer_join(1, "a").await.unwrap(), 1, "{name}");
        assert_eq!(bus.viewer_join(1, "a").await.unwrap(), 1, "{name}");
        assert_eq!(bus.viewer_join(1, "b").await.unwrap(), 2, "{name}");
        assert_eq!(bus.viewer_join(2, "a").await.unwrap(), 1, "{name}");
        assert_eq!(bus.viewer_leave(1, "a").await.unwrap(), 1, "{name}");
        assert_eq!(bus.viewer_leave(1, "a").await.unwrap(), 1, "{name}");
        assert_eq!(bus.viewer_leave(1, "never").await.unwrap(), 1, "{name}");
        assert_eq!(bus.viewers(1).await.unwrap(), 1, "{name}");
        assert_eq!(bus.viewers(9).await.unwrap(), 0, "{name}");
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn rate_limit_counts_within_a_window() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        // Long enough that the first four hits surely fall into one window, even on a busy machine.
        let window = Duration::from_secs(2);
        for _ in 0..3 {
            assert!(bus.rate_limit("ip:1", 3, window).await.unwrap(), "{name}");
        }
        assert!(!bus.rate_limit("ip:1", 3, window).await.unwrap(), "{name}");
        assert!(bus.rate_limit("ip:2", 3, window).await.unwrap(), "{name}");
        // Reading the count does not count.
        assert_eq!(bus.rate_hits("ip:1", window).await.unwrap(), 4, "{name}");
        assert_eq!(bus.rate_hits("ip:1", window).await.unwrap(), 4, "{name}");
        assert_eq!(bus.rate_hits("ip:3", window).await.unwrap(), 0, "{name}");
        // The window expires by itself.
        wait_until("the rate-limit window to expire", || async {
            bus.rate_limit("ip:1", 3, window)
                .await
                .unwrap()
                .then_some(())
        })
        .await;
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn a_token_bucket_allows_a_burst_then_refills() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        // Slow enough that the burst surely does not refill while it is taken.
        let per_token = Duration::from_secs(2);
        for _ in 0..3 {
            assert!(
                bus.take_token("user:1", 3, per_token).await.unwrap(),
                "{name}"
            );
        }
        assert!(
            !bus.take_token("user:1", 3, per_token).await.unwrap(),
            "{name}"
        );
        assert!(
            bus.take_token("user:2", 3, per_token).await.unwrap(),
            "{name}"
        );
        wait_until("a token to come back", || async {
            bus.take_token("user:1", 3, per_token)
                .await
                .unwrap()
                .then_some(())
        })
        .await;
        // One token came back, not the burst.
        assert!(
            !bus.take_token("user:1", 3, per_token).await.unwrap(),
            "{name}"
        );
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn presence_expires_unless_refreshed() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        let long = Duration::from_secs(60);
        let members = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let fresh = bus
            .presence_touch("room:1", &members(&["a", "b"]), long)
            .await
            .unwrap();
        assert_eq!(fresh, members(&["a", "b"]), "{name}");
        let fresh = bus
            .presence_touch("room:1", &members(&["a"]), long)
            .await
            .unwrap();
        assert!(fresh.is_empty(), "a refresh is not a join: {name}");
        let short = Duration::from_millis(50);
        bus.presence_touch("room:1", &members(&["c"]), short)
            .await
            .unwrap();
        let gone = wait_until("c to expire", || async {
            let gone = bus.presence_expire("room:1").await.unwrap();
            (!gone.is_empty()).then_some(gone)
        })
        .await;
        assert_eq!(gone, members(&["c"]), "{name}");
        assert!(
            bus.presence_expire("room:1").await.unwrap().is_empty(),
            "once: {name}"
        );
        let (count, mut listed) = bus.presence("room:1", 10).await.unwrap();
        listed.sort();
        assert_eq!((count, listed), (2, members(&["a", "b"])), "{name}");
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn jobs_are_delivered_once_and_acked() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        let id = bus.recordings().push(&job(1)).await.unwrap();
        bus.recordings().push(&job(2)).await.unwrap();
        assert_eq!(bus.recordings().outstanding().await.unwrap(), 2, "{name}");
        let got = bus
            .recordings()
            .consumer("w1")
            .next(1, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(
            (got[0].id.as_str(), &got[0].payload),
            (id.as_str(), &job(1)),
            "{name}"
        );
        let got2 = bus
            .recordings()
            .consumer("w2")
            .next(10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got2.len(), 1, "{name}");
        assert_eq!(got2[0].payload.room_id, 2, "{name}");
        assert!(bus
            .recordings()
            .consumer("w3")
            .next(10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
        bus.recordings().ack(&got[0]).await.unwrap();
        bus.recordings().ack(&got[0]).await.unwrap();
        bus.recordings().ack(&got2[0]).await.unwrap();
        assert_eq!(bus.recordings().outstanding().await.unwrap(), 0, "{name}");
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn a_waiting_consumer_gets_a_job_enqueued_later() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        // Create the group first, as a running recorder would have.
        assert!(bus
            .recordings()
            .consumer("w")
            .next(1, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
        let consumer = {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.recordings()
                    .consumer("w")
                    .next(1, Duration::from_secs(10))
                    .await
            })
        };
        bus.recordings().push(&job(4)).await.unwrap();
        let got = consumer.await.unwrap().unwrap();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].payload.room_id, 4, "{name}");
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn a_job_survives_its_consumer_crashing() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        bus.recordings().push(&job(5)).await.unwrap();
        // Consumer A takes the job and dies without acknowledging it.
        let taken = bus
            .recordings()
            .consumer("a")
            .next(1, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1, "{name}");
        drop(taken);
        // Not stale yet for a long idle threshold.
        assert!(bus
            .recordings()
            .consumer("b")
            .reclaim_idle(Duration::from_secs(3600), 10)
            .await
            .unwrap()
            .is_empty());
        // Consumer B takes it over once it has been idle long enough.
        let rescued = wait_until("the job to be reclaimed", || async {
            let got = bus
                .recordings()
                .consumer("b")
                .reclaim_idle(Duration::from_millis(100), 10)
                .await
                .unwrap();
            (!got.is_empty()).then_some(got)
        })
        .await;
        assert_eq!(rescued[0].payload, job(5), "{name}");
        bus.recordings().ack(&rescued[0]).await.unwrap();
        assert_eq!(bus.recordings().outstanding().await.unwrap(), 0, "{name}");
        assert!(bus
            .recordings()
            .consumer("c")
            .reclaim_idle(Duration::ZERO, 10)
            .await
            .unwrap()
            .is_empty());
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn the_job_queue_is_bounded() {
    for (name, config) in configs(2) {
        let bus = Bus::connect(&config).unwrap();
        bus.recordings().push(&job(1)).await.unwrap();
        bus.recordings().push(&job(2)).await.unwrap();
        assert!(
            matches!(
                bus.recordings().push(&job(3)).await,
                Err(BusError::QueueFull)
            ),
            "{name}"
        );
        let got = bus
            .recordings()
            .consumer("w")
            .next(1, Duration::ZERO)
            .await
            .unwrap();
        // Delivered but unacknowledged still counts.
        assert!(matches!(
            bus.recordings().push(&job(3)).await,
            Err(BusError::QueueFull)
        ));
        bus.recordings().ack(&got[0]).await.unwrap();
        bus.recordings().push(&job(3)).await.unwrap();
        // Redis keeps nothing from this test.
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn unreachable_redis_fails_without_panicking() {
    let bus = Bus::connect(&BusConfig {
        url: Secret::new("redis://127.0.0.1:1"),
        timeout_ms: 200,
        ..BusConfig::default()
    })
    .unwrap();
    assert!(matches!(bus.ping().await, Err(BusError::Redis(_))));
    assert!(bus
        .set_live(
            1,
            &LiveState {
                stream_id: 1,
                started_at_ms: 1,
                origin_server_id: "s".into()
            }
        )
        .await
        .is_err());
}

#[tokio::test]
async fn stale_jobs_behind_fresh_ones_are_reclaimed() {
    for (name, config) in configs(100) {
        let bus = Bus::connect(&config).unwrap();
        for room in 0..15 {
            bus.recordings().push(&job(room)).await.unwrap();
        }
        assert_eq!(
            bus.recordings()
                .consumer("a")
                .next(15, Duration::ZERO)
                .await
                .unwrap()
                .len(),
            15
        );
        let delivered = std::time::Instant::now();
        let idle = Duration::from_millis(100);
        // The condition is time itself: every job idle past the threshold.
        wait_until("the jobs to be idle long enough", || async {
            (delivered.elapsed() >= idle + Duration::from_millis(50)).then_some(())
        })
        .await;
        // B takes over the first ten: they are fresh again, at the head of the pending list.
        assert_eq!(
            bus.recordings()
                .consumer("b")
                .reclaim_idle(idle, 10)
                .await
                .unwrap()
                .len(),
            10
        );
        // Redis scans ten pending entries per claimed one: C must follow the cursor past the
        // fresh ones to find the stale ones behind them.
        let rescued = bus
            .recordings()
            .consumer("c")
            .reclaim_idle(idle, 1)
            .await
            .unwrap();
        assert_eq!(rescued.len(), 1, "{name}");
        assert_eq!(rescued[0].payload, job(10), "{name}");
        assert_eq!(
            bus.recordings()
                .consumer("c")
                .reclaim_idle(idle, 10)
                .await
                .unwrap()
                .len(),
            4
        );
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn undecodable_jobs_are_discarded_and_a_lost_group_is_recreated() {
    let Some(url) = livegate_core::testing::redis_url() else {
        return;
    };
    let config = support::redis_config(&url, &|_| {});
    let bus = Bus::connect(&config).unwrap();
    let client = redis::Client::open(config.url.expose()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:jobs:recordings", config.key_prefix);

    // The group is created; then Redis loses the stream (FLUSHALL, failover to an empty
    // replica): taking over stale jobs recreates it instead of failing.
    assert!(bus
        .recordings()
        .consumer("a")
        .next(1, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(bus
        .recordings()
        .consumer("b")
        .reclaim_idle(Duration::ZERO, 10)
        .await
        .unwrap()
        .is_empty());

    // Entries that are not jobs are acknowledged and deleted, not redelivered forever.
    for (field, value) in [("job", "{not json"), ("other", "x")] {
        redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async::<String>(&mut conn)
            .await
            .unwrap();
    }
    bus.recordings().push(&job(3)).await.unwrap();
    let taken = bus
        .recordings()
        .consumer("a")
        .next(10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].payload, job(3));
    assert_eq!(bus.recordings().undecodable(), 2);
    // Not lost: dead-lettered, for someone to look at.
    assert_eq!(bus.recordings().dead_letter_count().await.unwrap(), 2);
    assert_eq!(bus.recordings().outstanding().await.unwrap(), 1);
    bus.recordings().ack(&taken[0]).await.unwrap();
    assert_eq!(bus.recordings().outstanding().await.unwrap(), 0);
    bus.clear().await.unwrap();
}
