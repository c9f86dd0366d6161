//! Bus writes that must not be lost: recording jobs, and live keys kept in line with the
//! database.

use livegate_core::bus::{BusConfig, LiveState};
use livegate_core::db::testing::backends;
use livegate_core::db::Backend;

use crate::support::{fixture, test_config, wait_until, Options, TestApp, ACCEPT, FIXTURE_KEY};

#[tokio::test]
async fn recording_jobs_reach_the_bus_within_the_request_or_fail_loudly() {
    let mut config = test_config();
    config.outbox.capacity = 1;
    let app = TestApp::start(Options {
        config,
        // The queue takes one job; the next ones are refused by the bus.
        bus: Some(BusConfig {
            jobs_capacity: 1,
            ..BusConfig::default()
        }),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    app.room(42, FIXTURE_KEY).await;
    let dvr = || app.json("on_dvr", fixture("on_dvr.json"));
    // Queued on the bus before the answer.
    assert_eq!(dvr().await, (200, ACCEPT.to_owned()));
    assert_eq!(app.bus.recordings().outstanding().await.unwrap(), 1);
    // The bus is full: the job waits in the outbox, whose worker keeps retrying it.
    assert_eq!(dvr().await, (200, ACCEPT.to_owned()));
    app.wait_metric("livegate_hooks_bus_retries_total", 1.0)
        .await;
    // The next one fills the outbox; the one after has nowhere to go and the origin is told.
    assert_eq!(dvr().await, (200, ACCEPT.to_owned()));
    assert_eq!(
        dvr().await,
        (
            503,
            r#"{"code":503,"msg":"service unavailable, try again"}"#.to_owned()
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn live_keys_are_resynced_from_the_database() {
    for backend in backends() {
        let mut config = test_config();
        config.outbox.resync_interval_ms = 100;
        let app = TestApp::start(Options {
            config,
            bus: crate::support::redis_config(),
            ..Options::new(backend)
        })
        .await;
        app.room(42, FIXTURE_KEY).await;
        app.room(43, "key-43").await;
        // A live key whose offline write was lost: room 43 has no open stream.
        let stale = LiveState {
            stream_id: 999,
            started_at_ms: 1,
            origin_server_id: "gone".into(),
        };
        app.bus.set_live(43, &stale).await.unwrap();
        // A live room whose live write was lost.
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await.0,
            200
        );
        app.wait_bus_live(42, true).await;
        let stream_id = app.streams(42).await[0].id;
        assert!(app.bus.clear_live(42, stream_id).await.unwrap());

        app.wait_bus_live(43, false).await;
        app.wait_bus_live(42, true).await;
        let bus = app.bus.clone();
        wait_until("the repaired live key", || {
            let bus = bus.clone();
            async move {
                let live = bus.live(42).await.ok()??;
                (live.stream_id == stream_id).then_some(())
            }
        })
        .await;
        app.stop().await;
    }
}
