//! Play tokens: minted for the edge with the proxy's keys, refused where the room says so,
//! limited per client address.

use std::time::Duration;

use livegate_core::db::Backend;
use livegate_core::token::TokenKeys;
use livegate_core::Secret;
use reqwest::Method;
use serde_json::json;

use crate::support::{setups, test_config, Options, TestApp, PLAY_KEY};

#[tokio::test]
async fn anyone_gets_a_token_the_edge_accepts() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        let before = livegate_api::unix_now();
        let reply = app
            .get(&format!("/api/v1/rooms/{room}/play-token"), None)
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let token = reply.body["token"].as_str().unwrap();
        let expires_at = reply.body["expires_at"].as_u64().unwrap();
        assert!(expires_at >= before + 3600 && expires_at <= livegate_api::unix_now() + 3600);
        assert_eq!(reply.body["expires_in"], 3600);
        assert_eq!(
            reply.body["hls_url"],
            format!("https://edge.example/live/{room}.m3u8?token={token}")
        );
        assert_eq!(
            reply.body["flv_url"],
            format!("https://edge.example/live/{room}.flv?token={token}")
        );
        // What the proxy checks: v1, signed with the shared key, for this room.
        let keys = TokenKeys::new(&[Secret::new(PLAY_KEY)]).unwrap();
        let grant = keys
            .verify(token, livegate_api::unix_now(), Duration::ZERO)
            .unwrap();
        assert_eq!(
            (grant.room_id, grant.expires_at),
            (u64::try_from(room).unwrap(), expires_at)
        );
        assert!(app
            .metrics()
            .await
            .contains("livegate_api_play_tokens_issued_total 1"));
        assert_eq!(
            app.get("/api/v1/rooms/999999/play-token", None)
                .await
                .status,
            404
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn login_required_rooms_and_disabled_rooms() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&owner).await;
        let path = format!("/api/v1/rooms/{room}/play-token");
        app.call(
            Method::PATCH,
            &format!("/api/v1/rooms/{room}"),
            Some(&owner.access),
            Some(json!({"login_required": true})),
        )
        .await;
        let anonymous = app.get(&path, None).await;
        assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
        assert!(anonymous.headers.get("www-authenticate").is_some());
        assert_eq!(app.get(&path, Some(&viewer.access)).await.status, 200);
        // A bad token is refused even where none is needed.
        let (open_room, _) = app.room(&owner).await;
        let reply = app
            .get(
                &format!("/api/v1/rooms/{open_room}/play-token"),
                Some("garbage"),
            )
            .await;
        assert_eq!(reply.status, 401);

        app.call(
            Method::DELETE,
            &format!("/api/v1/rooms/{room}"),
            Some(&owner.access),
            None,
        )
        .await;
        assert_eq!(app.get(&path, Some(&viewer.access)).await.status, 404);
        let own = app.get(&path, Some(&owner.access)).await;
        assert_eq!((own.status, own.code()), (403, "forbidden"));
        app.stop().await;
    }
}

#[tokio::test]
async fn tokens_are_limited_per_client_address() {
    for (backend, bus) in setups() {
        let mut config = test_config();
        config.play_token.per_address_per_minute = 2;
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend, bus)
        })
        .await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        let path = format!("/api/v1/rooms/{room}/play-token");
        assert_eq!(app.get(&path, None).await.status, 200);
        assert_eq!(app.get(&path, None).await.status, 200);
        let third = app.get(&path, None).await;
        assert_eq!((third.status, third.code()), (429, "rate_limited"));
        app.stop().await;
    }
}

#[tokio::test]
async fn nginx_rtmp_rooms_get_no_flv_url() {
    let mut config = test_config();
    config.rooms.flv_path = String::new();
    let app = TestApp::start(Options {
        config,
        ..Options::new(Backend::Sqlite, None)
    })
    .await;
    let owner = app.user("streamer").await;
    let (room, _) = app.room(&owner).await;
    let reply = app
        .get(&format!("/api/v1/rooms/{room}/play-token"), None)
        .await;
    assert_eq!(reply.body["flv_url"], serde_json::Value::Null);
    assert!(reply.body["hls_url"].as_str().unwrap().contains("?token="));
    app.stop().await;
}
