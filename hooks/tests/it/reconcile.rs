//! Reconciliation against the SRS API (faked at the trait seam) and kicking.

use std::sync::Arc;

use livegate_core::db::testing::backends;
use livegate_core::origin::srs::{SrsPublish, SrsStream, SrsStreams};
use livegate_hooks::reconcile::{kick, reconcile_once, KickOutcome};
use serde_json::json;

use crate::support::{fixture, fixture_with, test_config, FakeSrs, Options, TestApp, FIXTURE_KEY};

fn listing(service: &str, publishers: &[&str]) -> SrsStreams {
    SrsStreams {
        code: 0,
        server: "srs-livegate-test".into(),
        service: service.into(),
        streams: publishers
            .iter()
            .map(|cid| SrsStream {
                id: "vid-1".into(),
                name: "42".into(),
                app: "live".into(),
                publish: SrsPublish {
                    active: true,
                    cid: Some((*cid).to_owned()),
                },
                ..SrsStream::default()
            })
            .collect(),
    }
}

#[tokio::test]
async fn reconcile_closes_what_srs_dropped_and_keeps_what_it_has() {
    for backend in backends() {
        let srs = Arc::new(FakeSrs::default());
        let mut config = test_config();
        config.reconcile.grace_ms = 0;
        let app = TestApp::start(Options {
            config,
            srs: Some(srs.clone()),
            ..Options::new(backend)
        })
        .await;
        app.room(42, FIXTURE_KEY).await;
        app.room(43, "k43").await;
        assert_eq!(
            app.json("on_publish", fixture("on_publish.json")).await.0,
            200
        );
        let other = fixture_with(
            "on_publish.json",
            &[
                ("stream", json!("43")),
                ("param", json!("?key=k43")),
                ("client_id", json!("c43")),
            ],
        );
        assert_eq!(app.json("on_publish", other).await.0, 200);

        // SRS still has both publishers: nothing changes.
        *srs.streams.lock().unwrap() = listing("y36bo341", &["70763180", "c43"]);
        assert_eq!(reconcile_once(&app.state).await.unwrap(), 0);
        assert!(app.is_live(42).await && app.is_live(43).await);

        // SRS lost room 43's publisher without telling (no on_unpublish): it is closed.
        *srs.streams.lock().unwrap() = listing("y36bo341", &["70763180"]);
        assert_eq!(reconcile_once(&app.state).await.unwrap(), 1);
        assert!(app.is_live(42).await);
        assert!(!app.is_live(43).await);
        app.wait_bus_live(43, false).await;

        // SRS restarted (new service id): everything of the old run is over, even a client id
        // that happens to be listed again.
        *srs.streams.lock().unwrap() = listing("restart2", &["70763180"]);
        assert_eq!(reconcile_once(&app.state).await.unwrap(), 1);
        assert!(!app.is_live(42).await);
        assert_eq!(reconcile_once(&app.state).await.unwrap(), 0);
        app.stop().await;
    }
}

#[tokio::test]
async fn young_streams_are_left_alone() {
    let srs = Arc::new(FakeSrs::default());
    let mut config = test_config();
    config.reconcile.grace_ms = 3_600_000;
    let app = TestApp::start(Options {
        config,
        srs: Some(srs.clone()),
        ..Options::new(livegate_core::db::Backend::Sqlite)
    })
    .await;
    app.room(42, FIXTURE_KEY).await;
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        200
    );
    // SRS lists a stream only after on_publish was answered.
    *srs.streams.lock().unwrap() = listing("y36bo341", &[]);
    assert_eq!(reconcile_once(&app.state).await.unwrap(), 0);
    assert!(app.is_live(42).await);
    app.stop().await;
}

#[tokio::test]
async fn kick_drops_the_rooms_publisher() {
    let srs = Arc::new(FakeSrs::default());
    let app = TestApp::start(Options {
        srs: Some(srs.clone()),
        ..Options::new(livegate_core::db::Backend::Sqlite)
    })
    .await;
    app.room(42, FIXTURE_KEY).await;
    assert_eq!(kick(&app.state, 42).await.unwrap(), KickOutcome::NotLive);
    assert_eq!(
        app.json("on_publish", fixture("on_publish.json")).await.0,
        200
    );
    assert_eq!(
        kick(&app.state, 42).await.unwrap(),
        KickOutcome::Kicked("70763180".into())
    );
    assert_eq!(*srs.kicked.lock().unwrap(), vec!["70763180".to_owned()]);
    app.stop().await;
}
