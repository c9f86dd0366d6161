//! The operator console's admin side: recordings (listing, download links, retry), payment
//! callbacks and reconciliation, and chat deletes and clears over REST.

use livegate_api::console::config::RecordingsConfig;
use livegate_core::db::recording_jobs::{self, NewRecordingJob, Remuxed};
use livegate_core::db::{now_ms, JobState};
use reqwest::Method;
use serde_json::json;

use crate::chat_support::{join, next_of, say};
use crate::orders::{buy, callback, event, payments_options, shop, signed, SECRETS};
use crate::support::{setups, Options, TestApp};

/// A job for a file of `room`, left `failed`, or taken through to `cleaned` with its MP4
/// stored under `stored` at `key`.
async fn job(
    app: &TestApp,
    room: i64,
    name: &str,
    stored: Option<(&std::path::Path, &str)>,
) -> i64 {
    let path = format!("/rec/{room}/{name}.flv");
    let (row, _) = recording_jobs::discover(
        &app.db,
        &NewRecordingJob {
            source_path: &path,
            room_id: room,
            stream_id: None,
            origin_kind: "srs",
            started_at: now_ms(),
        },
        now_ms(),
    )
    .await
    .unwrap();
    let owner = "test-worker";
    let until = now_ms() + 60_000;
    recording_jobs::claim(&app.db, row.id, owner, until, now_ms())
        .await
        .unwrap()
        .unwrap();
    match stored {
        None => {
            recording_jobs::fail(&app.db, row.id, owner, "ffprobe: no video", now_ms())
                .await
                .unwrap();
        }
        Some((dir, key)) => {
            let file = dir.join(key);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, b"an mp4, as far as this test cares").unwrap();
            let remuxed = Remuxed {
                work_path: "/work/1.mp4",
                size_bytes: 33,
                checksum: "00",
                object_key: key,
                part_size: 16,
            };
            recording_jobs::set_remuxed(&app.db, row.id, owner, &remuxed, now_ms())
                .await
                .unwrap();
            recording_jobs::set_duration(&app.db, row.id, owner, 61_500)
                .await
                .unwrap();
            let url = file.display().to_string();
            recording_jobs::set_uploaded(&app.db, row.id, owner, &url, None, now_ms())
                .await
                .unwrap();
            recording_jobs::set_state(&app.db, row.id, owner, JobState::Cleaned, now_ms())
                .await
                .unwrap();
        }
    }
    row.id
}

#[tokio::test]
async fn recordings_are_listed_per_owner_with_links_and_failed_ones_retried() {
    for (backend, bus) in setups() {
        let stored = tempfile::tempdir().unwrap();
        let mut options = Options::new(backend, bus);
        options.config.recordings = Some(RecordingsConfig {
            local: livegate_recorder::config::LocalStorageConfig {
                dir: stored.path().to_path_buf(),
            },
            ..RecordingsConfig::default()
        });
        let app = TestApp::start(options).await;
        let owner = app.user("streamer").await;
        let other = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let admin = app.user("admin").await;
        let (room, _) = app.room(&owner).await;
        let (other_room, _) = app.room(&other).await;
        let failed = job(&app, room, "a", None).await;
        let key = format!("{room}/1-b.mp4");
        let done = job(&app, room, "b", Some((stored.path(), &key))).await;
        let theirs = job(&app, other_room, "c", None).await;

        let mine = app
            .get("/api/v1/admin/recordings", Some(&owner.access))
            .await;
        assert_eq!(mine.status, 200, "{:?}", mine.body);
        let items = mine.body["items"].as_array().unwrap();
        let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![done, failed], "newest first, own rooms only");
        assert_eq!(items[0]["state"], "cleaned");
        assert_eq!(items[0]["duration_ms"], 61_500);
        assert_eq!(items[0]["size_bytes"], 33);
        assert_eq!(items[0]["object_key"], key);
        assert_eq!(items[1]["state"], "failed");
        assert_eq!(items[1]["error"], "ffprobe: no video");
        assert!(items[1]["download_url"].is_null());

        // The link serves the file, and only with its signature.
        let link = items[0]["download_url"].as_str().unwrap().to_owned();
        let file = app
            .client
            .get(format!("{}{link}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(file.status(), 200);
        assert_eq!(file.headers()["content-type"], "video/mp4");
        assert_eq!(
            file.bytes().await.unwrap().as_ref(),
            b"an mp4, as far as this test cares"
        );
        // A player seeking asks for a range, and gets just that.
        let part = app
            .client
            .get(format!("{}{link}", app.base))
            .header("range", "bytes=3-5")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.headers()["content-range"], "bytes 3-5/33");
        assert_eq!(part.headers()["accept-ranges"], "bytes");
        assert_eq!(part.bytes().await.unwrap().as_ref(), b"mp4");
        let beyond = app
            .client
            .get(format!("{}{link}", app.base))
            .header("range", "bytes=100-")
            .send()
            .await
            .unwrap();
        assert_eq!(beyond.status(), 416);
        let forged = link.replace("sig=", "sig=00");
        let refused = app.get(&forged, None).await;
        assert_eq!(refused.status, 403, "{:?}", refused.body);
        let other_job = link.replace(
            &format!("/recordings/{done}/"),
            &format!("/recordings/{failed}/"),
        );
        assert_eq!(app.get(&other_job, None).await.status, 403);

        let all = app
            .get("/api/v1/admin/recordings", Some(&admin.access))
            .await;
        assert_eq!(all.body["items"].as_array().unwrap().len(), 3);
        let only_failed = app
            .get(
                "/api/v1/admin/recordings?state=failed&limit=1",
                Some(&admin.access),
            )
            .await;
        assert_eq!(only_failed.body["items"][0]["id"], theirs);
        let cursor = only_failed.body["next_cursor"].as_str().unwrap().to_owned();
        let next = app
            .get(
                &format!("/api/v1/admin/recordings?state=failed&limit=1&cursor={cursor}"),
                Some(&admin.access),
            )
            .await;
        assert_eq!(next.body["items"][0]["id"], failed);
        let bad = app
            .get("/api/v1/admin/recordings?state=lost", Some(&admin.access))
            .await;
        assert_eq!((bad.status, bad.field()), (400, "state"));
        let bad = app
            .get("/api/v1/admin/recordings?cursor=x", Some(&admin.access))
            .await;
        assert_eq!((bad.status, bad.field()), (400, "cursor"));
        let foreign = app
            .get(
                &format!("/api/v1/admin/recordings?room={other_room}"),
                Some(&owner.access),
            )
            .await;
        assert_eq!(foreign.status, 403);
        assert_eq!(
            app.get("/api/v1/admin/recordings", Some(&viewer.access))
                .await
                .status,
            403
        );
        let of_room = format!("/api/v1/rooms/{room}/recordings");
        assert_eq!(
            app.get(&of_room, Some(&owner.access)).await.body["items"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(app.get(&of_room, Some(&other.access)).await.status, 403);
        assert_eq!(
            app.get("/api/v1/rooms/999999/recordings", Some(&admin.access))
                .await
                .status,
            404
        );

        // A failed one goes round again; anything else is refused.
        let retry = |id: i64| format!("/api/v1/admin/recordings/{id}/retry");
        assert_eq!(
            app.post(&retry(failed), Some(&viewer.access), json!({}))
                .await
                .status,
            403
        );
        assert_eq!(
            app.post(&retry(failed), Some(&other.access), json!({}))
                .await
                .status,
            403
        );
        let again = app
            .post(&retry(failed), Some(&owner.access), json!({}))
            .await;
        assert_eq!(again.status, 202, "{:?}", again.body);
        assert_eq!(again.body["state"], "discovered");
        let row = recording_jobs::get(&app.db, failed).await.unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.attempts, row.error),
            ("discovered", 0, None)
        );
        assert!(row.next_attempt_at <= now_ms());
        assert_eq!(
            app.post(&retry(done), Some(&owner.access), json!({}))
                .await
                .status,
            409
        );
        assert_eq!(
            app.post(&retry(999_999), Some(&admin.access), json!({}))
                .await
                .status,
            404
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn callbacks_are_listed_and_an_order_is_reconciled_with_what_is_known() {
    for (backend, bus) in setups() {
        let mut options = Options::new(backend, bus);
        payments_options(&mut options);
        let app = TestApp::start(options).await;
        let admin = app.user("admin").await;
        let (viewer, room, gift) = shop(&app).await;
        let body = json!({"gift_id": gift});
        let paid = buy(&app, &viewer.access, room, Some("k-paid"), &body).await;
        let pending = buy(&app, &viewer.access, room, Some("k-pending"), &body).await;
        let refused = buy(&app, &viewer.access, room, Some("k-refused"), &body).await;
        let reference = |reply: &crate::support::Reply| {
            reply.body["payment_reference"].as_str().unwrap().to_owned()
        };
        let (text, signature) = signed(
            SECRETS[0],
            &event(
                "evt_paid",
                "payment.succeeded",
                &reference(&paid),
                500,
                "EUR",
            ),
        );
        assert_eq!(callback(&app, text, Some(&signature)).await.status, 200);
        let (text, signature) = signed(
            SECRETS[0],
            &event(
                "evt_wrong",
                "payment.succeeded",
                &reference(&refused),
                1,
                "EUR",
            ),
        );
        assert_eq!(callback(&app, text, Some(&signature)).await.status, 422);

        let listed = app
            .get("/api/v1/admin/payments/callbacks", Some(&admin.access))
            .await;
        assert_eq!(listed.status, 200, "{:?}", listed.body);
        let items = listed.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["event_id"], "evt_wrong", "newest first");
        assert_eq!(items[0]["outcome"], "refused");
        assert_eq!(items[0]["reason"], "amount_mismatch");
        assert_eq!(items[1]["outcome"], "paid");
        assert_eq!(items[1]["order_id"], paid.body["id"]);
        assert!(items[1]["received_at"].as_i64().unwrap() > 0);
        assert_eq!(
            app.get("/api/v1/admin/payments/callbacks", Some(&viewer.access))
                .await
                .status,
            403
        );
        let bad = app
            .get(
                "/api/v1/admin/payments/callbacks?limit=500",
                Some(&admin.access),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (400, "limit"));

        // The stuck ones, in the contract's spelling.
        let stuck = app
            .get(
                "/api/v1/admin/orders?state=pending&older_than_s=0",
                Some(&admin.access),
            )
            .await;
        assert_eq!(stuck.status, 200, "{:?}", stuck.body);
        let stuck_ids: Vec<&serde_json::Value> = stuck.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| &o["id"])
            .collect();
        assert!(
            stuck_ids.contains(&&pending.body["id"]) && stuck_ids.contains(&&refused.body["id"])
        );
        assert!(!stuck_ids.contains(&&paid.body["id"]));

        let reconcile = |id: &serde_json::Value| format!("/api/v1/admin/orders/{id}/reconcile");
        let answer = app
            .post(
                &reconcile(&pending.body["id"]),
                Some(&admin.access),
                json!({}),
            )
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["status"], "pending");
        assert_eq!(answer.body["finding"], "awaiting_provider");
        assert_eq!(answer.body["callbacks"], json!([]));
        let answer = app
            .post(
                &reconcile(&refused.body["id"]),
                Some(&admin.access),
                json!({}),
            )
            .await;
        assert_eq!(answer.body["finding"], "events_refused");
        assert_eq!(answer.body["callbacks"][0]["reason"], "amount_mismatch");
        let answer = app
            .post(&reconcile(&paid.body["id"]), Some(&admin.access), json!({}))
            .await;
        assert_eq!(answer.body["status"], "paid");
        assert!(
            ["paid", "paid_relay_pending"].contains(&answer.body["finding"].as_str().unwrap()),
            "{:?}",
            answer.body
        );
        assert_eq!(answer.body["callbacks"][0]["event_id"], "evt_paid");
        assert_eq!(
            app.post(
                &reconcile(&pending.body["id"]),
                Some(&viewer.access),
                json!({})
            )
            .await
            .status,
            403
        );
        assert_eq!(
            app.post(
                "/api/v1/admin/orders/999999/reconcile",
                Some(&admin.access),
                json!({})
            )
            .await
            .status,
            404
        );
        let bad = app
            .post(
                "/api/v1/admin/orders/0/reconcile",
                Some(&admin.access),
                json!({}),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (400, "id"));
        app.stop().await;
    }
}

#[tokio::test]
async fn moderators_delete_and_clear_chat_over_rest_as_over_the_socket() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let owner = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let admin = app.user("admin").await;
        let (room, _) = app.room(&owner).await;
        let (mut theirs, _) = join(&app, room, &viewer.access, None).await;
        say(&mut theirs, "rude").await;
        let rude = next_of(&mut theirs, "chat").await;
        let offset = rude["offset"].as_u64().unwrap();
        let delete = format!("/api/v1/rooms/{room}/chat/messages/{offset}/delete");

        let refused = app.post(&delete, Some(&viewer.access), json!({})).await;
        assert_eq!(refused.status, 403, "{:?}", refused.body);
        let bad = app
            .post(
                &format!("/api/v1/rooms/{room}/chat/messages/0/delete"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (400, "offset"));
        let bad = app
            .post(
                &format!("/api/v1/rooms/{room}/chat/messages/x/delete"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (400, "offset"));
        let deleted = app.post(&delete, Some(&owner.access), json!({})).await;
        assert_eq!(deleted.status, 200, "{:?}", deleted.body);
        assert!(deleted.body["offset"].as_u64().unwrap() > offset);
        let frame = next_of(&mut theirs, "delete").await;
        assert_eq!(frame["target"], offset);
        assert_eq!(frame["user"]["role"], "owner");

        let cleared = app
            .call(
                Method::POST,
                &format!("/api/v1/rooms/{room}/chat/clear"),
                Some(&admin.access),
                None,
            )
            .await;
        assert_eq!(cleared.status, 200, "{:?}", cleared.body);
        let frame = next_of(&mut theirs, "clear").await;
        assert_eq!(frame["user"]["role"], "admin");
        assert_eq!(
            app.post(
                "/api/v1/rooms/999999/chat/clear",
                Some(&admin.access),
                json!({})
            )
            .await
            .status,
            404
        );
        app.stop().await;
    }
}
