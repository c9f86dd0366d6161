//! Chat presence: per user across tabs and instances, coalesced joins and leaves.

use serde_json::json;

use crate::chat_support::{join, next_of};
use crate::support::{setups, Options, TestApp};

#[tokio::test]
async fn presence_counts_tabs_once_and_coalesces_joins_and_leaves() {
    for (backend, bus) in setups() {
        let mut options = Options::new(backend, bus);
        options.config.chat.presence_refresh_ms = 100;
        options.config.chat.presence_ttl_ms = 400;
        let app = TestApp::start(options).await;
        let owner = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&owner).await;
        let (mut watcher, _) = join(&app, room, &owner.access, None).await;
        let first = next_of(&mut watcher, "presence").await;
        assert_eq!(first["joined"][0]["id"], owner.user_id, "{first}");
        let (tab1, _) = join(&app, room, &viewer.access, None).await;
        let (tab2, _) = join(&app, room, &viewer.access, None).await;
        let joined = next_of(&mut watcher, "presence").await;
        assert_eq!(joined["joined"][0]["id"], viewer.user_id, "{joined}");
        assert_eq!(joined["count"], 2);
        let presence = app
            .get(&format!("/api/v1/rooms/{room}/presence"), None)
            .await;
        assert_eq!(
            presence.body["count"], 2,
            "two tabs count once: {:?}",
            presence.body
        );
        let details = app.get(&format!("/api/v1/rooms/{room}"), None).await;
        assert_eq!(details.body["chat_online"], 2, "{:?}", details.body);
        // A reconnect within the expiry is no leave and no join.
        drop(tab1);
        let (tab3, _) = join(&app, room, &viewer.access, None).await;
        drop(tab2);
        drop(tab3);
        let left = next_of(&mut watcher, "presence").await;
        assert_eq!(left["joined"], json!([]), "no second join: {left}");
        assert_eq!(left["left"][0]["id"], viewer.user_id, "{left}");
        assert_eq!(left["count"], 1);
        let presence = app
            .get(&format!("/api/v1/rooms/{room}/presence"), None)
            .await;
        assert_eq!(
            presence.body["users"],
            json!([{"id": owner.user_id, "name": first["joined"][0]["name"]}])
        );
        app.stop().await;
    }
}
