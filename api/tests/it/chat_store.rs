//! What a moderator's clear or delete takes out of the stored history: rows already written,
//! and rows still queued for the database on any instance.

use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{messages, Backend};
use serde_json::json;

use crate::chat_support::{join, next_of, say, send, Ws};
use crate::support::{redis_config, setups, wait_until, Options, TestApp};

/// Sends a chat message and returns the offset its ack gives.
async fn said(ws: &mut Ws, text: &str) -> u64 {
    say(ws, text).await;
    let ack = next_of(ws, "ack").await;
    assert_eq!(ack["ref"], text, "{ack}");
    ack["offset"].as_u64().unwrap()
}

async fn moderated(ws: &mut Ws, frame: serde_json::Value) {
    send(ws, frame).await;
    next_of(ws, "ack").await;
}

fn texts(page: &serde_json::Value) -> Vec<&str> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_delete_and_a_clear_leave_the_stored_history() {
    for (backend, bus) in setups() {
        let mut options = Options::new(backend, bus);
        options.config.chat.store_interval_ms = 20;
        let app = TestApp::start(options).await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        let (mut ws, _) = join(&app, room, &owner.access, None).await;
        said(&mut ws, "stays").await;
        let goes = said(&mut ws, "goes").await;
        let path = format!("/api/v1/rooms/{room}/messages");
        wait_until("both messages are stored", || async {
            let page = app.get(&path, None).await;
            (texts(&page.body).len() == 2).then_some(())
        })
        .await;
        // The ack comes once the row is gone.
        moderated(&mut ws, json!({"type": "delete", "offset": goes})).await;
        assert_eq!(texts(&app.get(&path, None).await.body), ["stays"]);
        moderated(&mut ws, json!({"type": "clear"})).await;
        assert!(texts(&app.get(&path, None).await.body).is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn a_clear_and_a_delete_reach_rows_still_queued_on_every_instance() {
    let Some(bus) = redis_config() else {
        return;
    };
    let test_db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let start = |bus| {
        let mut options = Options::new(Backend::Sqlite, Some(bus));
        // Nothing is written before the instances stop: every row is still queued when the
        // moderator acts.
        options.config.chat.store_interval_ms = 3_600_000;
        options.db = Some(test_db.db.clone());
        TestApp::start(options)
    };
    let first = start(bus.clone()).await;
    let second = start(bus).await;
    wait_until("both instances follow clears and deletes", || async {
        let follows = |app: &TestApp| app.app_state.chat().store().follows_cuts();
        (follows(&first) && follows(&second)).then_some(())
    })
    .await;
    let owner = first.user("streamer").await;
    let viewer = first.user("viewer").await;
    let (room, _) = first.room(&owner).await;
    let (mut mine, _) = join(&first, room, &owner.access, None).await;
    let (mut theirs, _) = join(&second, room, &viewer.access, None).await;
    said(&mut theirs, "queued on the second").await;
    said(&mut mine, "queued on the first").await;
    moderated(&mut mine, json!({"type": "clear"})).await;
    said(&mut theirs, "after the clear").await;
    let deleted = said(&mut theirs, "deleted while queued").await;
    moderated(&mut mine, json!({"type": "delete", "offset": deleted})).await;
    said(&mut mine, "kept").await;
    wait_until(
        "the second instance heard the clear and the delete",
        || async {
            second
                .metrics()
                .await
                .contains("livegate_api_chat_store_cuts_total 2")
                .then_some(())
        },
    )
    .await;
    // Stopping writes what each instance still has queued.
    second.stop().await;
    first.stop().await;
    let rows = messages::before(&test_db.db, room, None, 50).await.unwrap();
    let stored: Vec<&str> = rows.iter().map(|row| row.content.as_str()).collect();
    assert_eq!(stored, ["kept", "after the clear"]);
}
