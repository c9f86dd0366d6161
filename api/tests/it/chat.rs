//! Room chat over `/ws`: refusals at the upgrade, delivery in offset order (across two
//! instances on one Redis), recovery after a reconnect, slow clients, history, close codes.

use livegate_api::chat::frame::{Kind, Message};
use livegate_core::bus::{RoomEvent, RoomEventKind};
use livegate_core::db::Backend;
use reqwest::Method;
use serde_json::json;

use crate::chat_support::{close_code, join, next, next_of, open, play_token, say, since, text_of};
use crate::support::{redis_config, setups, test_config, wait_until, Options, TestApp};

#[tokio::test]
async fn refusals_happen_at_the_upgrade() {
    let mut config = test_config();
    config.chat.allowed_origins = vec!["https://site.example".to_owned()];
    let mut options = Options::new(Backend::Sqlite, None);
    options.config = config;
    let app = TestApp::start(options).await;
    let owner = app.user("streamer").await;
    let (room, _) = app.room(&owner).await;
    let (other, _) = app.room(&owner).await;
    let token = play_token(&app, room).await;

    let refused = open(&app, &format!("room={room}"), None).await.unwrap_err();
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let refused = open(&app, &format!("room={room}&token=a.b.c"), None)
        .await
        .unwrap_err();
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    let refused = open(&app, &format!("room={other}&token={token}"), None)
        .await
        .unwrap_err();
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("another room"));
    let refused = open(&app, "room=999999&token=x", None).await.unwrap_err();
    assert_eq!(refused.status, 404);
    let query = format!("room={room}&token={}", owner.access);
    let refused = open(&app, &query, Some("https://evil.example"))
        .await
        .unwrap_err();
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert!(open(&app, &query, Some("https://site.example"))
        .await
        .is_ok());

    let reply = app
        .call(
            Method::DELETE,
            &format!("/api/v1/rooms/{room}"),
            Some(&owner.access),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let refused = open(&app, &query, None).await.unwrap_err();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["error"]["message"], "the room is disabled");
    app.stop().await;
}

#[tokio::test]
async fn a_play_token_reads_and_a_user_sends_in_order() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&owner).await;
        let token = play_token(&app, room).await;
        let (mut reader, welcome) = join(&app, room, &token, None).await;
        assert_eq!(welcome["can_send"], false);
        let (mut writer, welcome) = join(&app, room, &viewer.access, None).await;
        assert_eq!(welcome["can_send"], true);
        assert_eq!(welcome["user"]["id"], viewer.user_id);

        say(&mut reader, "from a play token").await;
        assert_eq!(next_of(&mut reader, "error").await["code"], "read_only");
        for n in 0..4 {
            say(&mut writer, &format!("m{n}")).await;
        }
        let mut offsets = Vec::new();
        for n in 0..4 {
            let frame = next_of(&mut reader, "chat").await;
            assert_eq!(text_of(&frame), format!("m{n}"));
            assert!(!frame["user"]["name"].as_str().unwrap().is_empty());
            assert_eq!(frame["room"], room);
            offsets.push(frame["offset"].as_u64().unwrap());
        }
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");

        // A paid gift from the payment flow appears once, as a `gift` frame.
        let gift = livegate_api::chat::frame::Sender {
            id: viewer.user_id,
            name: "giver".to_owned(),
            role: "viewer".to_owned(),
        };
        let chat = app.app_state.chat();
        chat.gift(room, gift, "a rose".to_owned()).await.unwrap();
        let frame = next_of(&mut reader, "gift").await;
        assert_eq!(
            (text_of(&frame), &frame["user"]["name"]),
            ("a rose", &json!("giver"))
        );
        assert_eq!(frame["offset"].as_u64(), offsets.last().map(|o| o + 1));

        let long = "x".repeat(501);
        say(&mut writer, &long).await;
        assert_eq!(next_of(&mut writer, "error").await["code"], "too_long");
        app.stop().await;
    }
}

#[tokio::test]
async fn two_instances_on_one_redis_deliver_each_others_messages_in_order() {
    let Some(bus) = redis_config() else {
        return;
    };
    let first = TestApp::spawn(Backend::Sqlite, Some(bus.clone())).await;
    let mut options = Options::new(Backend::Sqlite, Some(bus));
    options.db = Some(first.db.clone());
    let second = TestApp::start(options).await;
    let owner = first.user("streamer").await;
    let (room, _) = first.room(&owner).await;
    let (mut a, _) = join(&first, room, &owner.access, None).await;
    let (mut b, _) = join(&second, room, &owner.access, None).await;
    for n in 0..10 {
        say(if n % 2 == 0 { &mut a } else { &mut b }, &format!("m{n}")).await;
    }
    for ws in [&mut a, &mut b] {
        let mut last = 0;
        let mut texts = Vec::new();
        while texts.len() < 10 {
            let frame = next_of(ws, "chat").await;
            let offset = frame["offset"].as_u64().unwrap();
            assert!(offset > last, "offsets increase: {last} then {offset}");
            last = offset;
            texts.push(text_of(&frame).to_owned());
        }
        // Each sender's own messages keep their order; all ten arrive once.
        let mut sorted = texts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "{texts:?}");
    }

    // A room event reaches both instances' sockets once.
    let event = RoomEvent {
        kind: RoomEventKind::Live,
        room_id: room,
        stream_id: 7,
        at_ms: livegate_core::db::now_ms(),
    };
    first.bus.events().publish(&event).await.unwrap();
    let live = next_of(&mut a, "live").await;
    let live_b = next_of(&mut b, "live").await;
    assert_eq!(live["offset"], live_b["offset"]);
    say(&mut a, "after").await;
    let after = next_of(&mut b, "chat").await;
    assert_eq!(
        after["offset"].as_u64(),
        live["offset"].as_u64().map(|o| o + 1),
        "one live frame"
    );
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_reconnect_recovers_exactly_the_missed_messages() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&owner).await;
        let (mut ws, _) = join(&app, room, &viewer.access, None).await;
        let (mut speaker, _) = join(&app, room, &owner.access, None).await;
        say(&mut speaker, "seen").await;
        let seen = next_of(&mut ws, "chat").await;
        drop(ws);
        for n in 0..5 {
            say(&mut speaker, &format!("missed {n}")).await;
            next_of(&mut speaker, "ack").await;
        }
        let (mut ws, welcome) = join(&app, room, &viewer.access, Some(&since(&seen))).await;
        assert_eq!(welcome["recovered"], true, "{welcome}");
        assert_eq!(welcome["replayed"], 5);
        for n in 0..5 {
            let frame = next(&mut ws).await;
            assert_eq!(text_of(&frame), format!("missed {n}"));
            assert_eq!(
                frame["offset"].as_u64().unwrap(),
                seen["offset"].as_u64().unwrap() + 1 + n
            );
        }
        say(&mut speaker, "live again").await;
        let frame = next_of(&mut ws, "chat").await;
        assert_eq!(
            text_of(&frame),
            "live again",
            "no duplicate of a replayed message"
        );

        // The history deleted: a new epoch, and the client is told it cannot recover.
        let last = since(&frame);
        app.app_state
            .chat()
            .rooms()
            .log()
            .delete(&room.to_string())
            .await
            .unwrap();
        say(&mut speaker, "new epoch").await;
        assert_eq!(
            close_code(&mut ws).await,
            Some(4010),
            "the epoch change resyncs"
        );
        let (_ws, welcome) = join(&app, room, &viewer.access, Some(&last)).await;
        assert_eq!(welcome["recovered"], false, "{welcome}");
        assert_ne!(welcome["position"]["epoch"], frame["epoch"]);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_and_the_others_are_not() {
    let mut config = test_config();
    config.chat.max_outbound_bytes = 20 * 1024;
    config.chat.send_timeout_ms = 200;
    let mut options = Options::new(Backend::Sqlite, None);
    options.config = config;
    let app = TestApp::start(options).await;
    let owner = app.user("streamer").await;
    let (room, _) = app.room(&owner).await;
    let (mut slow, _) = join(&app, room, &owner.access, None).await;
    let (mut fast, _) = join(&app, room, &owner.access, None).await;
    let text = "y".repeat(500);
    let rooms = app.app_state.chat().rooms().clone();
    let mut sent = 0u64;
    let mut received = 0u64;
    // The slow client reads nothing: its socket buffers fill, then its outbox.
    let cut = loop {
        // A few frames at a time: well inside the fast client's outbox.
        for _ in 0..10 {
            rooms
                .send(Message {
                    kind: Kind::Chat,
                    id: format!("m{sent}"),
                    room,
                    user: None,
                    text: Some(text.clone()),
                    target: None,
                    at: 0,
                })
                .await
                .unwrap();
            sent += 1;
        }
        while received < sent {
            let frame = next_of(&mut fast, "chat").await;
            received += 1;
            assert_eq!(
                frame["id"],
                format!("m{}", received - 1),
                "in order, none lost"
            );
        }
        let metrics = app.metrics().await;
        if metrics.contains("livegate_api_chat_closed_total{reason=\"too_slow\"} 1") {
            break true;
        }
        assert!(sent < 100_000, "the slow client is never cut");
    };
    assert!(cut);
    assert!(matches!(close_code(&mut slow).await, Some(4008) | None));
    app.stop().await;
}

#[tokio::test]
async fn messages_are_stored_and_paged() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        let (mut ws, _) = join(&app, room, &owner.access, None).await;
        for n in 0..3 {
            say(&mut ws, &format!("kept {n}")).await;
        }
        let path = format!("/api/v1/rooms/{room}/messages?limit=2");
        let page = wait_until("messages are stored", || async {
            let reply = app.get(&path, None).await;
            (reply.body["next_before"].is_i64()).then_some(reply)
        })
        .await;
        let texts: Vec<&str> = page.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["kept 2", "kept 1"]);
        let before = page.body["next_before"].as_i64().unwrap();
        let older = app
            .get(
                &format!("/api/v1/rooms/{room}/messages?before={before}&limit=2"),
                None,
            )
            .await;
        assert_eq!(older.body["messages"][0]["text"], "kept 0");
        assert!(older.body.get("next_before").is_none());
        assert_eq!(
            app.get(&format!("/api/v1/rooms/{room}/messages?limit=0"), None)
                .await
                .status,
            400
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn an_expiring_token_and_a_silent_client_are_closed_with_their_codes() {
    let mut config = test_config();
    config.chat.ping_interval_ms = 50;
    config.chat.idle_timeout_ms = 200;
    let mut options = Options::new(Backend::Sqlite, None);
    options.config = config;
    let app = TestApp::start(options).await;
    let owner = app.user("streamer").await;
    let (room, _) = app.room(&owner).await;
    let keys = app.app_state.play_keys();
    let short = keys.mint(u64::try_from(room).unwrap(), livegate_api::unix_now() + 1);
    let (mut expiring, _) = join(&app, room, &short, None).await;
    // This client reads (and so answers pings) until its token runs out.
    assert_eq!(close_code(&mut expiring).await, Some(4001));

    let (mut silent, _) = join(&app, room, &owner.access, None).await;
    // It reads nothing, so it answers no ping: the server gives up on it.
    wait_until("the silent client is closed", || async {
        app.metrics()
            .await
            .contains("livegate_api_chat_closed_total{reason=\"idle\"} 1")
            .then_some(())
    })
    .await;
    assert_eq!(close_code(&mut silent).await, Some(4002));
    app.stop().await;
}

#[tokio::test]
async fn a_chat_only_instance_serves_chat_and_nothing_else() {
    let mut config = test_config();
    config.chat.only = true;
    let first = TestApp::spawn(Backend::Sqlite, None).await;
    let owner = first.user("streamer").await;
    let (room, _) = first.room(&owner).await;
    let mut options = Options::new(Backend::Sqlite, None);
    options.config = config;
    options.db = Some(first.db.clone());
    let chat_only = TestApp::start(options).await;
    assert_eq!(
        chat_only
            .get(&format!("/api/v1/rooms/{room}"), None)
            .await
            .status,
        404
    );
    let history = chat_only
        .get(&format!("/api/v1/rooms/{room}/messages"), None)
        .await;
    assert_eq!(history.status, 200, "{:?}", history.body);
    let (_ws, welcome) = join(&chat_only, room, &owner.access, None).await;
    assert_eq!(welcome["can_send"], true);
    chat_only.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn clients_of_a_stopped_instance_recover_everything_from_the_other() {
    let Some(bus) = redis_config() else {
        return;
    };
    let test_db = livegate_core::db::testing::TestDatabase::create(Backend::Sqlite)
        .await
        .unwrap();
    let start = |bus| {
        let mut options = Options::new(Backend::Sqlite, Some(bus));
        options.db = Some(test_db.db.clone());
        TestApp::start(options)
    };
    let first = start(bus.clone()).await;
    let second = start(bus).await;
    let owner = second.user("streamer").await;
    let viewer = second.user("viewer").await;
    let (room, _) = second.room(&owner).await;
    let (mut speaker, _) = join(&second, room, &owner.access, None).await;
    let mut clients = Vec::new();
    for _ in 0..40 {
        let (ws, welcome) = join(&first, room, &viewer.access, None).await;
        clients.push((ws, since(&welcome["position"])));
    }
    say(&mut speaker, "before").await;
    for (ws, last) in &mut clients {
        let frame = next_of(ws, "chat").await;
        assert_eq!(text_of(&frame), "before");
        *last = since(&frame);
    }
    // The instance goes away; its clients miss what is said meanwhile.
    drop(first);
    for (ws, _) in &mut clients {
        assert!(matches!(close_code(ws).await, Some(1001) | None));
    }
    for n in 0..30 {
        say(&mut speaker, &format!("gap {n}")).await;
        next_of(&mut speaker, "ack").await;
    }
    for (_, last) in &clients {
        let (mut ws, welcome) = join(&second, room, &viewer.access, Some(last)).await;
        assert_eq!(
            (welcome["recovered"].as_bool(), welcome["replayed"].as_u64()),
            (Some(true), Some(30))
        );
        for n in 0..30 {
            assert_eq!(text_of(&next_of(&mut ws, "chat").await), format!("gap {n}"));
        }
    }
    second.stop().await;
}

/// A frame the server will not take ends the connection with the code that says why.
#[tokio::test]
async fn refused_frames_close_with_the_code_that_says_why() {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let owner = app.user("streamer").await;
    let (room, _) = app.room(&owner).await;
    let not_utf8 = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    let mut reserved_bit = Frame::message(&b"{}"[..], OpCode::Data(Data::Text), true);
    reserved_bit.header_mut().rsv1 = true;
    let cases: [(WsMessage, u16); 6] = [
        (WsMessage::text("x".repeat(11 * 1024)), 1009),
        // Past the WebSocket layer's own limit, refused before the chat sees it.
        (WsMessage::text("x".repeat(100 * 1024)), 1009),
        (WsMessage::binary(vec![1u8, 2, 3]), 1003),
        (WsMessage::text("not json"), 1003),
        (WsMessage::Frame(not_utf8), 1007),
        (WsMessage::Frame(reserved_bit), 1002),
    ];
    for (frame, code) in cases {
        let (mut ws, _) = join(&app, room, &owner.access, None).await;
        ws.send(frame).await.unwrap();
        assert_eq!(close_code(&mut ws).await, Some(code));
    }
    // A client that vanishes without a close frame (a killed tab) broke no rule: it left.
    let (ws, _) = join(&app, room, &owner.access, None).await;
    drop(ws);
    wait_until("the vanished client to be counted", || async {
        app.metrics()
            .await
            .contains("livegate_api_chat_closed_total{reason=\"client\"} 1")
            .then_some(())
    })
    .await;
    // The one protocol error is the frame with a reserved bit.
    assert!(app
        .metrics()
        .await
        .contains("livegate_api_chat_closed_total{reason=\"protocol_error\"} 1\n"));
    app.stop().await;
}
