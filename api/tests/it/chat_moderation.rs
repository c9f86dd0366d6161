//! Chat moderation and limits: delete, mute, ban, slow mode, the rate limit, a disabled room.

use livegate_core::db::Backend;
use reqwest::Method;
use serde_json::json;

use crate::chat_support::{close_code, join, next, next_of, open, say, send, text_of};
use crate::support::{redis_config, setups, Options, TestApp};

#[tokio::test]
async fn only_moderators_delete_and_everyone_sees_it() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let owner = app.user("streamer").await;
    let viewer = app.user("viewer").await;
    let (room, _) = app.room(&owner).await;
    let (mut mine, _) = join(&app, room, &owner.access, None).await;
    let (mut theirs, _) = join(&app, room, &viewer.access, None).await;
    say(&mut theirs, "rude").await;
    let rude = next_of(&mut mine, "chat").await;
    let offset = rude["offset"].as_u64().unwrap();
    send(&mut theirs, json!({"type": "delete", "offset": offset})).await;
    assert_eq!(next_of(&mut theirs, "error").await["code"], "forbidden");
    send(&mut mine, json!({"type": "delete", "offset": offset})).await;
    let deleted = next_of(&mut theirs, "delete").await;
    assert_eq!(deleted["target"], offset);
    app.stop().await;
}

#[tokio::test]
async fn a_muted_user_is_refused_and_a_banned_users_socket_closes() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let moderator = app.user("viewer").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&owner).await;
        let base = format!("/api/v1/rooms/{room}");
        let grant = app
            .call(
                Method::PUT,
                &format!("{base}/moderators/{}", moderator.user_id),
                Some(&viewer.access),
                None,
            )
            .await;
        assert_eq!(grant.status, 403, "only the owner grants the role");
        let grant = app
            .call(
                Method::PUT,
                &format!("{base}/moderators/{}", moderator.user_id),
                Some(&owner.access),
                None,
            )
            .await;
        assert_eq!(grant.status, 204, "{:?}", grant.body);

        let (mut ws, _) = join(&app, room, &viewer.access, None).await;
        let (mut watcher, _) = join(&app, room, &owner.access, None).await;
        let reply = app
            .post(
                &format!("{base}/mutes"),
                Some(&viewer.access),
                json!({"user_id": owner.user_id}),
            )
            .await;
        assert_eq!(reply.status, 403, "a viewer does not moderate");
        let reply = app
            .post(
                &format!("{base}/mutes"),
                Some(&moderator.access),
                json!({"user_id": viewer.user_id, "duration_s": 600}),
            )
            .await;
        assert_eq!(reply.status, 204, "{:?}", reply.body);
        // The mute reaches the open connection through the room's channel.
        let deadline = std::time::Instant::now() + livegate_tests::patience();
        let refused = loop {
            say(&mut ws, "still here?").await;
            let answer = loop {
                let frame = next(&mut ws).await;
                if frame["type"] == "error" || frame["type"] == "ack" {
                    break frame;
                }
            };
            if answer["code"] == "muted" {
                break answer;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the mute never arrives"
            );
        };
        assert_eq!(refused["type"], "error");
        // A new connection is muted from the start.
        let (mut again, welcome) = join(&app, room, &viewer.access, None).await;
        assert_eq!(welcome["can_send"], true);
        say(&mut again, "and now?").await;
        assert_eq!(next_of(&mut again, "error").await["code"], "muted");
        let lifted = app
            .call(
                Method::DELETE,
                &format!("{base}/mutes/{}", viewer.user_id),
                Some(&owner.access),
                None,
            )
            .await;
        assert_eq!(lifted.status, 204);

        let reply = app
            .post(
                &format!("{base}/bans"),
                Some(&owner.access),
                json!({"user_id": viewer.user_id}),
            )
            .await;
        assert_eq!(reply.status, 204, "{:?}", reply.body);
        assert_eq!(close_code(&mut ws).await, Some(4003));
        assert_eq!(close_code(&mut again).await, Some(4003));
        let refused = open(&app, &format!("room={room}&token={}", viewer.access), None)
            .await
            .unwrap_err();
        assert_eq!(refused.status, 403, "{:?}", refused.body);
        // Others stay connected.
        say(&mut watcher, "still on").await;
        assert_eq!(text_of(&next_of(&mut watcher, "chat").await), "still on");
        let reply = app
            .post(
                &format!("{base}/bans"),
                Some(&moderator.access),
                json!({"user_id": owner.user_id}),
            )
            .await;
        assert_eq!(reply.status, 409, "the owner cannot be banned");
        let admin = app.user("admin").await;
        for what in ["bans", "mutes"] {
            let reply = app
                .post(
                    &format!("{base}/{what}"),
                    Some(&moderator.access),
                    json!({"user_id": admin.user_id}),
                )
                .await;
            assert_eq!(reply.status, 409, "an admin cannot be sanctioned: {what}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn slow_mode_spaces_a_users_messages_and_a_disabled_room_closes() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let owner = app.user("streamer").await;
    let viewer = app.user("viewer").await;
    let (room, _) = app.room(&owner).await;
    let reply = app
        .call(
            Method::PUT,
            &format!("/api/v1/rooms/{room}/chat/slow-mode"),
            Some(&owner.access),
            Some(json!({"seconds": 60})),
        )
        .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let (mut ws, _) = join(&app, room, &viewer.access, None).await;
    say(&mut ws, "one").await;
    assert_eq!(next_of(&mut ws, "ack").await["ref"], "one");
    say(&mut ws, "two").await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "slow_mode");
    let (mut mine, _) = join(&app, room, &owner.access, None).await;
    say(&mut mine, "owner one").await;
    say(&mut mine, "owner two").await;
    assert_eq!(next_of(&mut mine, "ack").await["ref"], "owner one");
    assert_eq!(
        next_of(&mut mine, "ack").await["ref"],
        "owner two",
        "the owner is exempt"
    );

    let reply = app
        .call(
            Method::DELETE,
            &format!("/api/v1/rooms/{room}"),
            Some(&owner.access),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(close_code(&mut ws).await, Some(4004));
    app.stop().await;
}

#[tokio::test]
async fn the_rate_limit_warns_then_disconnects_and_spares_the_owner() {
    for (backend, bus) in setups() {
        let mut options = Options::new(backend, bus);
        options.config.chat.rate_messages = 2;
        options.config.chat.rate_window_ms = 60_000;
        options.config.chat.abuse_strikes = 3;
        let app = TestApp::start(options).await;
        let owner = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&owner).await;
        let (mut ws, _) = join(&app, room, &viewer.access, None).await;
        for n in 0..2 {
            say(&mut ws, &format!("ok {n}")).await;
            assert_eq!(next_of(&mut ws, "ack").await["ref"], format!("ok {n}"));
        }
        for n in 0..2 {
            say(&mut ws, &format!("too many {n}")).await;
            let warning = next_of(&mut ws, "error").await;
            assert_eq!(warning["code"], "rate_limited", "{warning}");
        }
        say(&mut ws, "one more").await;
        assert_eq!(close_code(&mut ws).await, Some(4029));
        let (mut mine, _) = join(&app, room, &owner.access, None).await;
        for n in 0..4 {
            say(&mut mine, &format!("owner {n}")).await;
            assert_eq!(next_of(&mut mine, "ack").await["ref"], format!("owner {n}"));
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_moderator_role_change_reaches_open_connections_on_every_instance() {
    let Some(bus) = redis_config() else {
        return;
    };
    let first = TestApp::spawn(Backend::Sqlite, Some(bus.clone())).await;
    let mut options = Options::new(Backend::Sqlite, Some(bus));
    options.db = Some(first.db.clone());
    let second = TestApp::start(options).await;
    let owner = first.user("streamer").await;
    let helper = first.user("viewer").await;
    let (room, _) = first.room(&owner).await;
    let (mut on_first, welcome) = join(&first, room, &helper.access, None).await;
    assert_eq!(welcome["user"]["role"], "viewer");
    let (mut on_second, _) = join(&second, room, &helper.access, None).await;
    let (mut mine, _) = join(&second, room, &owner.access, None).await;
    say(&mut mine, "rude").await;
    let offset = next_of(&mut on_first, "chat").await["offset"].clone();
    send(&mut on_first, json!({"type": "delete", "offset": offset})).await;
    assert_eq!(next_of(&mut on_first, "error").await["code"], "forbidden");

    let path = format!("/api/v1/rooms/{room}/moderators/{}", helper.user_id);
    let grant = first
        .call(Method::PUT, &path, Some(&owner.access), None)
        .await;
    assert_eq!(grant.status, 204, "{:?}", grant.body);
    // Both open connections hold the role at once, whichever instance they are on.
    for ws in [&mut on_first, &mut on_second] {
        let role = next_of(ws, "role").await;
        assert_eq!(role["user"]["role"], "moderator", "{role}");
        assert_eq!(role["user"]["id"], helper.user_id);
    }
    send(&mut on_second, json!({"type": "delete", "offset": offset})).await;
    assert_eq!(next_of(&mut mine, "delete").await["target"], offset);
    say(&mut on_first, "as a moderator").await;
    let sent = next_of(&mut mine, "chat").await;
    assert_eq!(sent["user"]["role"], "moderator", "{sent}");
    let (_again, welcome) = join(&second, room, &helper.access, None).await;
    assert_eq!(welcome["user"]["role"], "moderator");

    let revoke = second
        .call(Method::DELETE, &path, Some(&owner.access), None)
        .await;
    assert_eq!(revoke.status, 204, "{:?}", revoke.body);
    for ws in [&mut on_first, &mut on_second] {
        assert_eq!(next_of(ws, "role").await["user"]["role"], "viewer");
    }
    send(&mut on_first, json!({"type": "delete", "offset": offset})).await;
    assert_eq!(next_of(&mut on_first, "error").await["code"], "forbidden");
    let again = second
        .call(Method::DELETE, &path, Some(&owner.access), None)
        .await;
    assert_eq!(again.status, 404, "not a moderator any more");
    second.stop().await;
    first.stop().await;
}
