//! Rooms and stream keys: creation, reading without secrets, listings, changes, disabling,
//! rotation, streams, and who may do what.

use livegate_core::db::{streams, OriginIds, StartOutcome};
use reqwest::Method;
use serde_json::json;

use crate::support::{setups, TestApp};

/// Opens a stream row for `room` as the hooks service does on publish.
pub(crate) async fn go_live(app: &TestApp, room: i64, kind: &str, client_id: &str) -> i64 {
    let origin = OriginIds {
        kind: kind.to_owned(),
        server_id: format!("{kind}-1"),
        client_id: Some(client_id.to_owned()),
        ..OriginIds::default()
    };
    let mut tx = app.db.begin().await.unwrap();
    let outcome = streams::start(
        &mut tx,
        &livegate_core::db::NewStream {
            room_id: room,
            origin: &origin,
            publisher_ip: Some("127.0.0.1"),
        },
        livegate_core::db::now_ms(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    match outcome {
        StartOutcome::Started(id) => id,
        StartOutcome::Refused => panic!("room {room} could not go live"),
    }
}

#[tokio::test]
async fn a_streamer_creates_a_room_and_gets_its_key_once() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let streamer = app.user("streamer").await;
        let reply = app
            .post(
                "/api/v1/rooms",
                Some(&streamer.access),
                json!({"title": "My show", "publish_allow_cidrs": ["10.0.0.0/8"]}),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let id = reply.body["room"]["id"].as_i64().unwrap();
        let key = reply.body["stream_key"].as_str().unwrap();
        // 256 random bits, URL-safe.
        assert_eq!(key.len(), 43);
        assert!(key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(
            reply.body["publish_url"],
            format!("rtmp://ingest.example:1935/live/{id}?key={key}")
        );
        assert_eq!(
            reply.body["room"]["owner_id"].as_i64(),
            Some(streamer.user_id)
        );
        assert_eq!(
            reply.body["room"]["settings"]["publish_allow_cidrs"],
            json!(["10.0.0.0/8"])
        );

        // Anyone reads it, without the key; the settings only for the owner.
        let public = app.get(&format!("/api/v1/rooms/{id}"), None).await;
        assert_eq!(public.status, 200);
        assert_eq!(public.body["title"], "My show");
        assert_eq!(public.body["is_live"], false);
        assert_eq!(public.body["viewer_count"], 0);
        assert_eq!(
            public.body["hls_url"],
            format!("https://edge.example/live/{id}.m3u8")
        );
        assert_eq!(
            public.body["flv_url"],
            format!("https://edge.example/live/{id}.flv")
        );
        assert!(!public.body.to_string().contains(key));
        assert!(public.body.get("settings").is_none());
        let own = app
            .get(&format!("/api/v1/rooms/{id}"), Some(&streamer.access))
            .await;
        assert!(!own.body.to_string().contains(key));
        assert!(own.body.get("settings").is_some());

        assert_eq!(app.get("/api/v1/rooms/999999", None).await.status, 404);
        let bad = app.get("/api/v1/rooms/abc", None).await;
        assert_eq!((bad.status, bad.field()), (400, "id"));
        let bad = app.get("/api/v1/rooms/0", None).await;
        assert_eq!((bad.status, bad.field()), (400, "id"));
        app.stop().await;
    }
}

#[tokio::test]
async fn who_may_create_and_change_rooms() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let viewer = app.user("viewer").await;
        let owner = app.user("streamer").await;
        let other = app.user("streamer").await;
        let admin = app.user("admin").await;

        let reply = app
            .post(
                "/api/v1/rooms",
                Some(&viewer.access),
                json!({"title": "nope"}),
            )
            .await;
        assert_eq!((reply.status, reply.code()), (403, "forbidden"));
        let reply = app
            .post("/api/v1/rooms", None, json!({"title": "nope"}))
            .await;
        assert_eq!(reply.status, 401);

        let (room, _) = app.room(&owner).await;
        let path = format!("/api/v1/rooms/{room}");
        let rotate = format!("{path}/stream-key/rotate");
        for who in [&viewer, &other] {
            let patch = app
                .call(
                    Method::PATCH,
                    &path,
                    Some(&who.access),
                    Some(json!({"title": "mine"})),
                )
                .await;
            assert_eq!(patch.status, 403, "{:?}", patch.body);
            assert_eq!(
                app.post(&rotate, Some(&who.access), json!({})).await.status,
                403
            );
            let delete = app
                .call(Method::DELETE, &path, Some(&who.access), None)
                .await;
            assert_eq!(delete.status, 403);
        }
        assert_eq!(app.get(&path, None).await.body["title"], "test room");
        // Another streamer reads the room like anyone: no settings.
        assert!(app
            .get(&path, Some(&other.access))
            .await
            .body
            .get("settings")
            .is_none());
        // Without a token: 401 on every change.
        let anonymous = app
            .call(Method::PATCH, &path, None, Some(json!({"title": "x"})))
            .await;
        assert_eq!(anonymous.status, 401);
        assert_eq!(
            app.call(Method::DELETE, &path, None, None).await.status,
            401
        );
        assert_eq!(app.post(&rotate, None, json!({})).await.status, 401);

        // The admin may change anyone's room.
        let patch = app
            .call(
                Method::PATCH,
                &path,
                Some(&admin.access),
                Some(json!({"title": "renamed by admin"})),
            )
            .await;
        assert_eq!(patch.status, 200, "{:?}", patch.body);
        assert_eq!(patch.body["title"], "renamed by admin");
        // An admin may own rooms too.
        app.room(&admin).await;
        // Unknown rooms: 404 before any ownership question.
        let reply = app
            .call(
                Method::PATCH,
                "/api/v1/rooms/999999",
                Some(&owner.access),
                Some(json!({"title": "x"})),
            )
            .await;
        assert_eq!(reply.status, 404);
        app.stop().await;
    }
}

#[tokio::test]
async fn patch_changes_only_what_it_names_and_checks_each_field() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        let path = format!("/api/v1/rooms/{room}");
        let in_an_hour = livegate_core::db::now_ms() + 3_600_000;
        let reply = app
            .call(
                Method::PATCH,
                &path,
                Some(&owner.access),
                Some(json!({
                    "login_required": true,
                    "publish_allow_cidrs": ["192.0.2.0/24", "2001:db8::/32"],
                    "stream_key_expires_at": in_an_hour,
                })),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["title"], "test room");
        assert_eq!(reply.body["login_required"], true);
        assert_eq!(reply.body["settings"]["stream_key_expires_at"], in_an_hour);
        // What the hooks service enforces is in the row.
        let row = livegate_core::db::rooms::get(&app.db, room)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.publish_allow_cidrs.as_deref(),
            Some("192.0.2.0/24,2001:db8::/32")
        );
        assert_eq!(row.stream_key_expires_at, Some(in_an_hour));

        // null clears; an empty list allows anywhere.
        let reply = app
            .call(
                Method::PATCH,
                &path,
                Some(&owner.access),
                Some(json!({"stream_key_expires_at": null, "publish_allow_cidrs": []})),
            )
            .await;
        assert_eq!(reply.status, 200);
        let row = livegate_core::db::rooms::get(&app.db, room)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.publish_allow_cidrs, row.stream_key_expires_at),
            (None, None)
        );
        assert!(row.login_required);

        for (body, field) in [
            (json!({"title": "x".repeat(256)}), "title"),
            (json!({"title": "line\nbreak"}), "title"),
            (
                json!({"publish_allow_cidrs": ["not a network"]}),
                "publish_allow_cidrs",
            ),
            (json!({"stream_key_expires_at": 1}), "stream_key_expires_at"),
            (json!({"login_required": "yes"}), "login_required"),
            (json!({"owner_id": 1}), "owner_id"),
        ] {
            let reply = app
                .call(
                    Method::PATCH,
                    &path,
                    Some(&owner.access),
                    Some(body.clone()),
                )
                .await;
            assert_eq!(
                (reply.status, reply.field()),
                (400, field),
                "{body}: {:?}",
                reply.body
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn listings_put_live_rooms_first_and_page_with_a_cursor() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let alice = app.user("streamer").await;
        let bob = app.user("streamer").await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(app.room(&alice).await.0);
        }
        let bobs = app.room(&bob).await.0;
        go_live(&app, ids[0], "srs", "c1").await;

        // Alice's rooms, two per page: the live one, then the others newest first.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/rooms?owner={}&limit=2&cursor={c}", alice.user_id),
                None => format!("/api/v1/rooms?owner={}&limit=2", alice.user_id),
            };
            let page = app.get(&path, None).await;
            assert_eq!(page.status, 200, "{:?}", page.body);
            for item in page.body["items"].as_array().unwrap() {
                seen.push(item["id"].as_i64().unwrap());
            }
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, vec![ids[0], ids[2], ids[1]]);
        livegate_core::db::rooms::set_viewers_count(&app.db, ids[0], 7)
            .await
            .unwrap();
        let live = app.get(&format!("/api/v1/rooms/{}", ids[0]), None).await;
        assert_eq!(live.body["is_live"], true);
        assert_eq!(live.body["viewer_count"], 7);

        // Everyone's: Bob's room is there too; disabled rooms are not.
        let all = app.get("/api/v1/rooms?limit=100", None).await;
        let all: Vec<i64> = all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(all[0], ids[0]);
        assert!(all.contains(&bobs));
        app.call(
            Method::DELETE,
            &format!("/api/v1/rooms/{bobs}"),
            Some(&bob.access),
            None,
        )
        .await;
        let all = app.get("/api/v1/rooms?limit=100", None).await;
        assert!(!all.body.to_string().contains(&format!("\"id\":{bobs},")));

        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("cursor=garbage", "cursor"),
            ("owner=-1", "owner"),
            ("limit=many", "limit"),
        ] {
            let reply = app.get(&format!("/api/v1/rooms?{query}"), None).await;
            assert_eq!(
                (reply.status, reply.field()),
                (400, field),
                "{query}: {:?}",
                reply.body
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn disabling_and_rotating_without_a_live_publisher() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let (room, old_key) = app.room(&owner).await;
        let path = format!("/api/v1/rooms/{room}");

        let rotated = app
            .post(
                &format!("{path}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(rotated.status, 200, "{:?}", rotated.body);
        let new_key = rotated.body["stream_key"].as_str().unwrap();
        assert_ne!(new_key, old_key);
        assert!(rotated.body.get("kicked").is_none());
        let row = livegate_core::db::rooms::get(&app.db, room)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.stream_key, new_key);

        let disabled = app
            .call(Method::DELETE, &path, Some(&owner.access), None)
            .await;
        assert_eq!(disabled.status, 200, "{:?}", disabled.body);
        assert_eq!(disabled.body["room"]["disabled"], true);
        assert!(
            livegate_core::db::rooms::get(&app.db, room)
                .await
                .unwrap()
                .unwrap()
                .disabled
        );
        // Gone for everyone but its owner and admins.
        assert_eq!(app.get(&path, None).await.status, 404);
        assert_eq!(app.get(&path, Some(&owner.access)).await.status, 200);
        // A disabled room's key is not rotated.
        let again = app
            .post(
                &format!("{path}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(again.status, 409);
        app.stop().await;
    }
}

#[tokio::test]
async fn streams_are_listed_newest_first_with_private_parts_for_the_owner() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let (room, _) = app.room(&owner).await;
        let mut ids = Vec::new();
        for n in 0..3 {
            let id = go_live(&app, room, "nginx-rtmp", &n.to_string()).await;
            streams::set_record_url(&app.db, id, &format!("/rec/{id}.flv"))
                .await
                .unwrap();
            if n < 2 {
                let mut tx = app.db.begin().await.unwrap();
                streams::close(&mut tx, id, livegate_core::db::now_ms())
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            ids.push(id);
        }
        let path = format!("/api/v1/rooms/{room}/streams");
        let first = app
            .get(&format!("{path}?limit=2"), Some(&owner.access))
            .await;
        assert_eq!(first.status, 200, "{:?}", first.body);
        let items = first.body["items"].as_array().unwrap();
        assert_eq!(items[0]["id"].as_i64(), Some(ids[2]));
        assert_eq!(items[0]["is_live"], true);
        assert_eq!(items[0]["stop_at"], serde_json::Value::Null);
        assert_eq!(items[1]["is_live"], false);
        assert!(items[1]["stop_at"].as_i64().is_some());
        assert_eq!(items[1]["record_url"], format!("/rec/{}.flv", ids[1]));
        let cursor = first.body["next_cursor"].as_str().unwrap();
        let rest = app
            .get(&format!("{path}?limit=2&cursor={cursor}"), None)
            .await;
        let rest = rest.body["items"].as_array().unwrap().clone();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0]["id"].as_i64(), Some(ids[0]));
        // Strangers see no recording locations.
        assert!(rest[0].get("record_url").is_none());
        assert_eq!(
            app.get("/api/v1/rooms/999999/streams", None).await.status,
            404
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_streamer_owns_a_bounded_number_of_rooms() {
    let mut config = crate::support::test_config();
    config.rooms.max_per_owner = 2;
    let app = TestApp::start(crate::support::Options {
        config,
        ..crate::support::Options::new(livegate_core::db::Backend::Sqlite, None)
    })
    .await;
    let owner = app.user("streamer").await;
    app.room(&owner).await;
    app.room(&owner).await;
    let third = app
        .post(
            "/api/v1/rooms",
            Some(&owner.access),
            json!({"title": "third"}),
        )
        .await;
    assert_eq!((third.status, third.code()), (409, "conflict"));
    app.stop().await;
}

#[tokio::test]
async fn room_details_show_the_recorders_snapshot_while_live_and_the_poster_after() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let streamer = app.user("streamer").await;
        let room = app.room(&streamer).await.0;
        let path = format!("/api/v1/rooms/{room}");
        let details = app.get(&path, None).await;
        assert_eq!(details.body["cover_url"], serde_json::Value::Null);
        assert!(details.body.get("cover_url").is_some(), "present, null");

        let now = livegate_core::db::now_ms();
        livegate_core::db::covers::set_poster(&app.db, room, "https://cdn.example/p.jpg", 1, now)
            .await
            .unwrap();
        livegate_core::db::covers::set_snapshot(
            &app.db,
            room,
            "https://cdn.example/s.jpg",
            now,
            now,
        )
        .await
        .unwrap();
        let offline = app.get(&path, None).await;
        assert_eq!(offline.body["cover_url"], "https://cdn.example/p.jpg");
        go_live(&app, room, "srs", "c-cover").await;
        let live = app.get(&path, None).await;
        assert_eq!(live.body["is_live"], true);
        assert_eq!(live.body["cover_url"], "https://cdn.example/s.jpg");

        // An older recording's poster does not replace the newer one's.
        let replaced = livegate_core::db::covers::set_poster(&app.db, room, "old.jpg", 0, now)
            .await
            .unwrap();
        assert!(!replaced);
        // Listings stay as they were.
        let list = app.get("/api/v1/rooms?limit=100", None).await;
        let item = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == room)
            .unwrap()
            .clone();
        assert!(item.get("cover_url").is_none());
        app.stop().await;
    }
}

/// The `cover_url` of `room`'s details, which must lead to the API's cover route.
async fn cover_link(app: &TestApp, room: i64) -> String {
    let details = app.get(&format!("/api/v1/rooms/{room}"), None).await;
    let link = details.body["cover_url"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("/api/v1/rooms/{room}/cover?v=")),
        "{link}"
    );
    link
}

/// A client that, unlike a browser, shows a redirect instead of following it.
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            client,
            base: app.base.clone(),
        }
    }

    fn get(&self, path: String) -> impl std::future::Future<Output = reqwest::Response> {
        let request = self.client.get(format!("{}{path}", self.base));
        async move { request.send().await.unwrap() }
    }

    async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        let request = self.client.get(format!("{}{path}", self.base));
        request.bearer_auth(token).send().await.unwrap()
    }
}

#[tokio::test]
async fn a_cover_kept_in_a_local_store_is_served_by_the_api() {
    use livegate_api::console::config::RecordingsConfig;
    use livegate_core::db::covers;
    use livegate_recorder::config::LocalStorageConfig;

    for (backend, bus) in setups() {
        let stored = tempfile::tempdir().unwrap();
        let mut options = crate::support::Options::new(backend, bus);
        options.config.recordings = Some(RecordingsConfig {
            local: LocalStorageConfig {
                dir: stored.path().to_path_buf(),
            },
            ..RecordingsConfig::default()
        });
        let app = TestApp::start(options).await;
        let streamer = app.user("streamer").await;
        let room = app.room(&streamer).await.0;
        let pictures = stored.path().join("pictures");
        std::fs::create_dir_all(&pictures).unwrap();
        let picture = pictures.join(format!("{room}.jpg"));
        std::fs::write(&picture, b"\xff\xd8 a jpeg, as far as this test cares").unwrap();
        let now = livegate_core::db::now_ms();
        covers::set_poster(&app.db, room, &picture.display().to_string(), 1, now)
            .await
            .unwrap();
        // The details link the API, not the server's path.
        let link = cover_link(&app, room).await;
        let browser = Browser::new(&app);
        let cover = |path: String| browser.get(path);
        let served = cover(link.clone()).await;
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["content-type"], "image/jpeg");
        assert_eq!(served.headers()["cache-control"], "public, max-age=10");
        assert_eq!(
            served.bytes().await.unwrap().as_ref(),
            b"\xff\xd8 a jpeg, as far as this test cares"
        );
        // Whatever version or cache-buster a player adds, it gets the current cover.
        let busted = cover(format!("/api/v1/rooms/{room}/cover?v=soon&_=1")).await;
        assert_eq!(busted.status(), 200);

        // Only pictures inside the store are served, whatever the row says.
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path().join("secret.jpg");
        std::fs::write(&outside, b"not the store's").unwrap();
        covers::set_poster(&app.db, room, &outside.display().to_string(), 2, now)
            .await
            .unwrap();
        let refused = cover(format!("/api/v1/rooms/{room}/cover")).await;
        assert_eq!(refused.status(), 404);
        let escaping = format!("{}/../{}", stored.path().display(), outside.display());
        covers::set_poster(&app.db, room, &escaping, 3, now)
            .await
            .unwrap();
        assert_eq!(
            cover(format!("/api/v1/rooms/{room}/cover")).await.status(),
            404
        );

        // A picture with a web URL is a redirect to it.
        covers::set_poster(&app.db, room, "https://cdn.example/p.jpg", 4, now)
            .await
            .unwrap();
        let redirected = cover(format!("/api/v1/rooms/{room}/cover")).await;
        assert_eq!(redirected.status(), 302);
        assert_eq!(
            redirected.headers()["location"],
            "https://cdn.example/p.jpg"
        );
        // No cover yet: 404 with the usual error.
        let bare = app.room(&streamer).await.0;
        let none = app.get(&format!("/api/v1/rooms/{bare}/cover"), None).await;
        assert_eq!(none.status, 404);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_cover_kept_in_s3_is_a_redirect_to_a_link_signed_when_asked() {
    use livegate_api::console::config::RecordingsConfig;
    use livegate_core::db::covers;
    use livegate_core::Secret;
    use livegate_recorder::config::{ChecksumWhen, PartChecksum, S3Config, StorageKind};

    // Presigning is the API's own work: no S3 server needs to answer.
    let recordings = RecordingsConfig {
        kind: StorageKind::S3,
        s3: Some(S3Config {
            endpoint: "http://127.0.0.1:9".to_owned(),
            region: "us-east-1".to_owned(),
            bucket: "media".to_owned(),
            access_key: Secret::new("AKIDCOVER"),
            secret_key: Secret::new("cover-secret"),
            path_style: true,
            checksum: ChecksumWhen::default(),
            part_checksum: PartChecksum::default(),
            part_size_bytes: 16 << 20,
            parts_in_flight: 2,
            orphan_upload_max_age_s: 86_400,
            key_prefix: "rec/".to_owned(),
            request_timeout_ms: 10_000,
        }),
        download_ttl_s: 600,
        ..RecordingsConfig::default()
    };
    let mut options = crate::support::Options::new(livegate_core::db::Backend::Sqlite, None);
    options.config.recordings = Some(recordings);
    let app = TestApp::start(options).await;
    let streamer = app.user("streamer").await;
    let room = app.room(&streamer).await.0;
    let now = livegate_core::db::now_ms();
    covers::set_poster(&app.db, room, "s3://media/rec/42/1.jpg", 1, now)
        .await
        .unwrap();
    let link = cover_link(&app, room).await;
    let browser = Browser::new(&app);
    let cover = |path: String| browser.get(path);
    let redirected = cover(link.clone()).await;
    assert_eq!(redirected.status(), 302);
    assert_eq!(redirected.headers()["cache-control"], "public, max-age=10");
    let location = redirected.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    // Signed for a window, not for the moment: the next view gets the same URL, which the
    // browser has cached.
    let again = cover(link).await;
    assert_eq!(again.headers()["location"], location.as_str());
    assert!(
        location.starts_with("http://127.0.0.1:9/media/rec/42/1.jpg?"),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(location.contains("X-Amz-Expires=600"), "{location}");
    // A disabled room's cover is its owner's business: no shared cache keeps it.
    let path = format!("/api/v1/rooms/{room}");
    let disabled = app
        .call(Method::DELETE, &path, Some(&streamer.access), None)
        .await;
    assert!(disabled.status < 300, "{:?}", disabled.body);
    assert_eq!(cover(format!("{path}/cover")).await.status(), 404);
    let owners = browser
        .get_as(&format!("{path}/cover"), &streamer.access)
        .await;
    assert_eq!(owners.status(), 302);
    assert_eq!(owners.headers()["cache-control"], "private, max-age=10");
    // A picture of another bucket is not signed with this one's keys.
    covers::set_poster(&app.db, room, "s3://other/rec/42/2.jpg", 2, now)
        .await
        .unwrap();
    assert_eq!(
        browser
            .get_as(&format!("{path}/cover"), &streamer.access)
            .await
            .status(),
        404
    );
    app.stop().await;
}
