//! Buying gifts: idempotent orders, the signed payment callback applied once, refusals
//! recorded, the gift relayed to the room's log once, the leaderboard, reconciliation.

use livegate_api::payments::signature::sign;
use livegate_core::bus::gifts::room_key;
use livegate_core::db::{orders, payments};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{send, setups, unique, wait_until, Options, Reply, TestApp};

/// The callback secrets of the test apps: the current one and one being retired.
pub(crate) const SECRETS: [&str; 2] = [
    "callback-secret-current-0123",
    "callback-secret-retired-0123",
];

pub(crate) fn payments_options(options: &mut Options) {
    options.config.payments.callback_secrets = SECRETS
        .iter()
        .map(|s| livegate_core::Secret::new(*s))
        .collect();
}

/// A signed callback body and its signature header.
pub(crate) fn signed(secret: &str, event: &Value) -> (String, String) {
    let body = event.to_string();
    let t = livegate_api::unix_now();
    (
        body.clone(),
        format!("t={t},v1={}", sign(secret.as_bytes(), t, body.as_bytes())),
    )
}

pub(crate) fn event(id: &str, kind: &str, reference: &str, amount: i64, currency: &str) -> Value {
    json!({"id": id, "type": kind, "data": {"reference": reference, "amount": amount, "currency": currency}})
}

pub(crate) async fn callback(app: &TestApp, body: String, signature: Option<&str>) -> Reply {
    let mut request = app
        .client
        .post(format!("{}/api/v1/payments/callback", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("livegate-signature", signature);
    }
    send(request).await
}

pub(crate) async fn buy(
    app: &TestApp,
    token: &str,
    room: i64,
    key: Option<&str>,
    body: &Value,
) -> Reply {
    let mut request = app
        .client
        .post(format!("{}/api/v1/rooms/{room}/gifts", app.base))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    send(request).await
}

#[tokio::test]
async fn an_order_is_created_once_per_key_and_paid_once_per_event() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    for (backend, bus) in setups() {
        let mut options = Options::new(backend, bus);
        payments_options(&mut options);
        let app = TestApp::start(options).await;
        let admin = app.user("admin").await;
        let streamer = app.user("streamer").await;
        let viewer = app.user("viewer").await;
        let (room, _) = app.room(&streamer).await;
        let gift = app
            .post(
                "/api/v1/gifts",
                Some(&admin.access),
                json!({"name": unique("heart"), "price": 500, "currency": "EUR"}),
            )
            .await;
        let gift_id = gift.body["id"].as_i64().unwrap();
        let body = json!({"gift_id": gift_id});

        // The key is required and bounded.
        let none = buy(&app, &viewer.access, room, None, &body).await;
        assert_eq!((none.status, none.field()), (400, "Idempotency-Key"));
        let long = "k".repeat(256);
        let too_long = buy(&app, &viewer.access, room, Some(&long), &body).await;
        assert_eq!(
            (too_long.status, too_long.field()),
            (400, "Idempotency-Key")
        );

        let first = buy(&app, &viewer.access, room, Some("key-1"), &body).await;
        assert_eq!(first.status, 201, "{:?}", first.body);
        assert_eq!(first.body["status"], "pending");
        assert_eq!(first.body["amount"], 500);
        let reference = first.body["payment_reference"].as_str().unwrap().to_owned();
        let again = buy(&app, &viewer.access, room, Some("key-1"), &body).await;
        assert_eq!((again.status, &again.body), (201, &first.body));
        assert_eq!(again.headers["idempotency-replayed"], "true");
        let other = buy(
            &app,
            &viewer.access,
            room,
            Some("key-1"),
            &json!({"gift_id": gift_id + 1}),
        )
        .await;
        assert_eq!(
            (other.status, other.code()),
            (422, "idempotency_key_reused")
        );
        // Keys are per user: the same key by someone else is another order.
        let by_admin = buy(&app, &admin.access, room, Some("key-1"), &body).await;
        assert_eq!(by_admin.status, 201);
        assert_ne!(by_admin.body["id"], first.body["id"]);
        // A refusal is stored and replayed too.
        let missing = buy(
            &app,
            &viewer.access,
            room,
            Some("key-2"),
            &json!({"gift_id": 999_999}),
        )
        .await;
        assert_eq!((missing.status, missing.field()), (404, "gift_id"));
        let missing_again = buy(
            &app,
            &viewer.access,
            room,
            Some("key-2"),
            &json!({"gift_id": 999_999}),
        )
        .await;
        assert_eq!(
            (missing_again.status, &missing_again.body),
            (404, &missing.body)
        );

        let mine = app
            .get("/api/v1/users/me/orders", Some(&viewer.access))
            .await;
        assert_eq!(
            mine.body["items"].as_array().unwrap().len(),
            1,
            "{:?}",
            mine.body
        );

        // Refused callbacks: recorded with their reasons, the order untouched.
        let good = event(&unique("evt"), "payment.succeeded", &reference, 500, "EUR");
        let (body_text, _) = signed(SECRETS[0], &good);
        let forged = callback(&app, body_text.clone(), Some("t=1,v1=00")).await;
        assert_eq!((forged.status, forged.code()), (400, "invalid_signature"));
        let (_, wrong_secret) = signed("not-our-secret-0123456789", &good);
        let forged = callback(&app, body_text.clone(), Some(&wrong_secret)).await;
        assert_eq!(forged.status, 400);
        let unsigned = callback(&app, body_text.clone(), None).await;
        assert_eq!(unsigned.status, 400);
        let cheap = event(&unique("evt"), "payment.succeeded", &reference, 1, "EUR");
        let (cheap_body, cheap_sig) = signed(SECRETS[0], &cheap);
        let refused = callback(&app, cheap_body.clone(), Some(&cheap_sig)).await;
        assert_eq!(
            (refused.status, refused.code(), refused.field()),
            (422, "amount_mismatch", "data.amount")
        );
        let replayed = callback(&app, cheap_body, Some(&cheap_sig)).await;
        assert_eq!(
            (replayed.status, &replayed.body["status"]),
            (200, &json!("duplicate"))
        );
        let order_id = first.body["id"].as_i64().unwrap();
        assert_eq!(
            orders::get(&app.db, order_id)
                .await
                .unwrap()
                .unwrap()
                .status,
            "pending"
        );
        let reasons: Vec<String> = payments::refusals(&app.db, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.reason)
            .collect();
        assert_eq!(
            reasons,
            ["stale_signature", "bad_signature", "missing_signature"]
        );

        // The good event, signed with the retiring secret, three times.
        let (good_body, good_sig) = signed(SECRETS[1], &good);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let reply = callback(&app, good_body.clone(), Some(&good_sig)).await;
            statuses.push((
                reply.status,
                reply.body["status"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        assert_eq!(
            statuses,
            [
                (200, "paid".into()),
                (200, "duplicate".into()),
                (200, "duplicate".into())
            ]
        );
        assert_eq!(
            orders::get(&app.db, order_id)
                .await
                .unwrap()
                .unwrap()
                .status,
            "paid"
        );
        // A later event for a paid order is ignored, and recorded.
        let late = event(&unique("evt"), "payment.failed", &reference, 500, "EUR");
        let (late_body, late_sig) = signed(SECRETS[0], &late);
        let ignored = callback(&app, late_body, Some(&late_sig)).await;
        assert_eq!(
            (ignored.status, &ignored.body["reason"]),
            (200, &json!("order_paid"))
        );

        // The gift reaches the room's log once.
        let log = app.bus.gift_events();
        let history = wait_until("the gift on the room's log", || {
            let log = log.clone();
            async move {
                let history = log.read(&room_key(room), None, 100).await.unwrap();
                (!history.entries.is_empty()).then_some(history)
            }
        })
        .await;
        assert_eq!(history.entries.len(), 1);
        assert_eq!(history.entries[0].value.order_id, order_id);
        assert_eq!(history.entries[0].value.amount, 500);

        // The leaderboard, built from the database on first read, then kept by the relay.
        let board = app
            .get(&format!("/api/v1/rooms/{room}/leaderboard"), None)
            .await;
        assert_eq!(board.status, 200, "{:?}", board.body);
        assert_eq!(board.body["items"][0]["user_id"], viewer.user_id);
        assert_eq!(board.body["items"][0]["total"], 500);

        // Reconciliation: the admin's order is still pending; it expires once.
        let stuck = app
            .get(
                "/api/v1/admin/orders?status=pending&older_than=0",
                Some(&admin.access),
            )
            .await;
        assert_eq!(stuck.status, 200, "{:?}", stuck.body);
        let ids: Vec<&Value> = stuck.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| &o["id"])
            .collect();
        assert_eq!(ids, [&by_admin.body["id"]]);
        let not_yet = app
            .get(
                "/api/v1/admin/orders?status=pending&older_than=3600",
                Some(&admin.access),
            )
            .await;
        assert!(not_yet.body["items"].as_array().unwrap().is_empty());
        let by_viewer = app.get("/api/v1/admin/orders", Some(&viewer.access)).await;
        assert_eq!(by_viewer.status, 403);
        let expire = format!("/api/v1/admin/orders/{}/expire", by_admin.body["id"]);
        let expired = app
            .call(Method::POST, &expire, Some(&admin.access), None)
            .await;
        assert_eq!(
            (expired.status, &expired.body["status"]),
            (200, &json!("expired")),
            "{:?}",
            expired.body
        );
        let twice = app
            .call(Method::POST, &expire, Some(&admin.access), None)
            .await;
        assert_eq!(twice.status, 409);
        app.stop().await;
    }
}

/// A room with a 500-cent gift on sale: (viewer, room, gift id).
pub(crate) async fn shop(app: &TestApp) -> (crate::support::Session, i64, i64) {
    let admin = app.user("admin").await;
    let streamer = app.user("streamer").await;
    let viewer = app.user("viewer").await;
    let (room, _) = app.room(&streamer).await;
    let gift = app
        .post(
            "/api/v1/gifts",
            Some(&admin.access),
            json!({"name": unique("lily"), "price": 500, "currency": "EUR"}),
        )
        .await;
    (viewer, room, gift.body["id"].as_i64().unwrap())
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let (viewer, room, gift) = shop(&app).await;
        let body = json!({"gift_id": gift});
        let buy = || buy(&app, &viewer.access, room, Some("one-purchase"), &body);
        let replies = tokio::join!(buy(), buy(), buy(), buy(), buy(), buy());
        let replies = [
            replies.0, replies.1, replies.2, replies.3, replies.4, replies.5,
        ];
        for reply in &replies {
            assert_eq!(reply.status, 201, "{:?}", reply.body);
            assert_eq!(reply.body, replies[0].body);
        }
        let mine = app
            .get("/api/v1/users/me/orders", Some(&viewer.access))
            .await;
        assert_eq!(
            mine.body["items"].as_array().unwrap().len(),
            1,
            "{:?}",
            mine.body
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_relay_that_died_after_appending_does_not_append_again() {
    for (backend, bus) in setups() {
        let mut options = Options::new(backend, bus);
        payments_options(&mut options);
        let app = TestApp::start(options).await;
        let (viewer, room, gift) = shop(&app).await;
        let order = buy(
            &app,
            &viewer.access,
            room,
            Some("k"),
            &json!({"gift_id": gift}),
        )
        .await;
        let order_id = order.body["id"].as_i64().unwrap();
        let reference = order.body["payment_reference"].as_str().unwrap();
        // What an earlier relay appended before it died, without marking its outbox row.
        let earlier = livegate_core::bus::GiftEvent {
            order_id,
            room_id: room,
            user_id: viewer.user_id,
            username: String::new(),
            gift_id: gift,
            gift_name: String::new(),
            amount: 500,
            currency: "EUR".to_owned(),
            paid_at_ms: 0,
        };
        let log = app.bus.gift_events();
        log.append_once(&room_key(room), &order_id.to_string(), &earlier)
            .await
            .unwrap();
        let (body, signature) = signed(
            SECRETS[0],
            &event(&unique("evt"), "payment.succeeded", reference, 500, "EUR"),
        );
        assert_eq!(callback(&app, body, Some(&signature)).await.status, 200);
        wait_until("the outbox relayed", || async {
            (payments::unrelayed_count(&app.db).await.unwrap() == 0).then_some(())
        })
        .await;
        let history = log.read(&room_key(room), None, 100).await.unwrap();
        assert_eq!(history.entries.len(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_gift_is_counted_once_when_a_reader_rebuilds_the_board_before_the_relay() {
    for (backend, bus) in setups() {
        let mut options = Options::new(backend, bus);
        payments_options(&mut options);
        // The relay runs only when this test calls it.
        options.config.payments.relay_interval_ms = 3_600_000;
        let app = TestApp::start(options).await;
        let (viewer, room, gift) = shop(&app).await;
        let order = buy(
            &app,
            &viewer.access,
            room,
            Some("k"),
            &json!({"gift_id": gift}),
        )
        .await;
        let reference = order.body["payment_reference"].as_str().unwrap();
        // Paid as the callback pays it, without waking the relay.
        let paid: livegate_api::payments::callback::Event = serde_json::from_value(event(
            &unique("evt"),
            "payment.succeeded",
            reference,
            500,
            "EUR",
        ))
        .unwrap();
        livegate_api::payments::callback::apply(&app.db, "default", &paid, 1)
            .await
            .unwrap();
        let leaderboard = format!("/api/v1/rooms/{room}/leaderboard");
        let totals = |reply: Reply| reply.body["items"].clone();
        // A reader finds no board and rebuilds it from the paid order...
        let first = app.get(&leaderboard, None).await;
        assert_eq!(totals(first)[0]["total"], 500);
        // ...then the relay gives the same gift to the room: still counted once.
        let relayed = livegate_api::payments::relay::relay_batch(&app.app_state, 100)
            .await
            .unwrap();
        assert_eq!(relayed, 1);
        let after = totals(app.get(&leaderboard, None).await);
        assert_eq!(after.as_array().unwrap().len(), 1);
        assert_eq!(after[0]["total"], 500);
        assert_eq!(payments::unrelayed_count(&app.db).await.unwrap(), 0);
        app.stop().await;
    }
}
