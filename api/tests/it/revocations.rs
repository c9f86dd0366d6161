//! Disabling a room, rotating its key and killing it tell the edge to refuse the viewers'
//! current tokens (the proxy applies what arrives on the bus's revocation feed).

use livegate_core::bus::Received;
use livegate_core::unix_now;
use reqwest::Method;
use serde_json::json;

use crate::support::{setups, Options, TestApp};

#[tokio::test]
async fn room_changes_revoke_the_viewers_tokens() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let mut feed = app.bus.revocations().subscribe().await.unwrap();
        let owner = app.user("streamer").await;
        let admin = app.user("admin").await;
        let (room, _) = app.room(&owner).await;
        let ttl = app.app_state.config().play_token.ttl_s;

        let mut expect_revocation = async |what: &str| {
            let before = unix_now();
            let received = tokio::time::timeout(livegate_tests::patience(), feed.recv())
                .await
                .unwrap_or_else(|_| panic!("no revocation after {what}"));
            let Some(Received::Message(revocation)) = received else {
                panic!("{what}: {received:?}");
            };
            assert_eq!(revocation.room_id, room as u64, "{what}");
            // Every token issued so far expires by then; one issued a second later does not.
            let by = revocation.tokens_expiring_by;
            assert!(
                by + 1 >= before + ttl && by <= unix_now() + ttl,
                "{what}: {by}"
            );
        };

        let path = format!("/api/v1/rooms/{room}");
        let rotated = app
            .post(
                &format!("{path}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(rotated.status, 200, "{:?}", rotated.body);
        assert_eq!(rotated.body["viewers_revoked"], true);
        expect_revocation("a key rotation").await;

        // Killing is for admins only, and leaves the room enabled.
        let refused = app
            .post(&format!("{path}/kill"), Some(&owner.access), json!({}))
            .await;
        assert_eq!(refused.status, 403);
        let killed = app
            .post(&format!("{path}/kill"), Some(&admin.access), json!({}))
            .await;
        assert_eq!(killed.status, 200, "{:?}", killed.body);
        assert_eq!(killed.body["viewers_revoked"], true);
        assert_eq!(killed.body["room"]["disabled"], false);
        expect_revocation("a kill").await;

        let disabled = app
            .call(Method::DELETE, &path, Some(&owner.access), None)
            .await;
        assert_eq!(disabled.status, 200, "{:?}", disabled.body);
        assert_eq!(disabled.body["viewers_revoked"], true);
        expect_revocation("disabling").await;
        app.stop().await;
    }
}

/// An in-process bus forgets what it carried when the process ends: the revocations are kept
/// in the database and published again by the next API to start, so that a rotated room's
/// old tokens stay refused across a restart of `livegate up`.
#[tokio::test]
async fn revocations_in_force_are_published_again_by_the_next_api_to_start() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        let rotated = app
            .post(
                &format!("/api/v1/rooms/{room}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(rotated.status, 200, "{:?}", rotated.body);

        // Another API on the same database, with a bus of its own that has heard nothing.
        let restarted = TestApp::start(Options {
            db: Some(app.db.clone()),
            ..Options::new(backend, None)
        })
        .await;
        let kept = livegate_tests::wait_until("the revocation on the new bus", || {
            let feed = restarted.bus.revocations();
            async move {
                let now = unix_now();
                let in_force = feed.in_force(now, 0).await.ok()?;
                in_force
                    .into_iter()
                    .find(|revocation| revocation.room_id == room as u64)
            }
        })
        .await;
        let ttl = app.app_state.config().play_token.ttl_s;
        assert!(kept.tokens_expiring_by + 5 >= unix_now() + ttl, "{kept:?}");
        restarted.stop().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn room_details_count_the_viewers_the_edges_report() {
    use livegate_core::bus::{EdgeViewers, RoomViewers};
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        crate::rooms::go_live(&app, room, "srs", "client-1").await;
        let channel = app.bus.edge_viewers();
        let report = |edge: &str, flv, hls| EdgeViewers {
            edge: edge.to_owned(),
            at_ms: livegate_core::unix_now_ms(),
            valid_ms: 60_000,
            rooms: vec![RoomViewers {
                room_id: room as u64,
                flv,
                hls,
            }],
        };
        // The API subscribes as it starts: report until the sum of both edges shows.
        livegate_tests::wait_until("the edges' viewers in the room's details", || {
            let (app, channel) = (&app, channel.clone());
            let (first, second) = (report("edge-a", 3, 2), report("edge-b", 1, 0));
            async move {
                channel.publish(&first).await.ok()?;
                channel.publish(&second).await.ok()?;
                let details = app.get(&format!("/api/v1/rooms/{room}"), None).await;
                (details.body["viewer_count"] == 6).then_some(())
            }
        })
        .await;
        app.stop().await;
    }
}
