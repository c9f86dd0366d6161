//! What any route answers to hostile or broken requests: the one envelope, no internals.

use reqwest::Method;
use serde_json::json;

use livegate_core::db::Backend;

use crate::support::{Options, TestApp};

#[tokio::test]
async fn unknown_routes_methods_and_oversized_bodies() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let reply = app.get("/api/v1/nothing", None).await;
    assert_eq!((reply.status, reply.code()), (404, "not_found"));
    let reply = app
        .call(Method::PUT, "/api/v1/users", None, Some(json!({})))
        .await;
    assert_eq!((reply.status, reply.code()), (405, "method_not_allowed"));

    let huge = json!({"username": "a".repeat(20_000), "password": "b"});
    let reply = app.post("/api/v1/users", None, huge).await;
    assert_eq!((reply.status, reply.code()), (413, "body_too_large"));

    let form = app
        .client
        .post(format!("{}/api/v1/users", app.base))
        .header("content-type", "text/plain")
        .body("username=a")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let body: serde_json::Value = form.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    // Metrics name the route pattern, never the raw path.
    let metrics = app.metrics().await;
    assert!(metrics.contains("route=\"unmatched\""), "{metrics}");
    assert!(
        metrics.contains("route=\"POST /api/v1/users\""),
        "{metrics}"
    );
    assert!(!metrics.contains("nothing"));
    app.stop().await;
}

#[tokio::test]
async fn a_lost_database_is_a_503_without_internals() {
    let app = TestApp::start(Options::new(Backend::Sqlite, None)).await;
    let owner = app.user("streamer").await;
    app.db.close().await;
    let reply = app.get("/api/v1/rooms/1", None).await;
    assert!(reply.status >= 500, "{:?}", reply.body);
    let text = reply.body.to_string();
    assert!(!text.to_lowercase().contains("sql"), "{text}");
    assert!(!text.contains("pool"), "{text}");
    assert_eq!(
        app.post("/api/v1/rooms", Some(&owner.access), json!({"title": "t"}))
            .await
            .body["error"]["code"],
        reply.body["error"]["code"]
    );
    app.stop().await;
}

#[tokio::test]
async fn json_bodies_are_objects_and_integral_numbers_are_integers() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let owner = app.user("streamer").await;
    // An array is no object, whatever serde would make of it.
    let reply = app
        .post("/api/v1/rooms", Some(&owner.access), json!([]))
        .await;
    assert_eq!((reply.status, reply.code()), (400, "invalid_body"));
    // JSON Schema's integer includes 3600.0; 1.5 is no integer and names its field.
    let (room, _) = app.room(&owner).await;
    let slow_mode = format!("/api/v1/rooms/{room}/chat/slow-mode");
    for (seconds, status) in [(json!(60.0), 204), (json!(6e1), 204), (json!(1.5), 400)] {
        let reply = app
            .call(
                Method::PUT,
                &slow_mode,
                Some(&owner.access),
                Some(json!({ "seconds": seconds })),
            )
            .await;
        assert_eq!(reply.status, status, "{seconds}: {:?}", reply.body);
        if status == 400 {
            assert_eq!(reply.field(), "seconds");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn lengths_are_counted_in_characters() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    // 40 characters of 4 bytes each: within 64 characters, so a wrong login, not a bad field.
    let reply = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"username": "😀".repeat(40), "password": "whatever it is"}),
        )
        .await;
    assert_eq!((reply.status, reply.code()), (401, "unauthorized"));
    // 200 characters, 800 bytes: a password as long as that is fine.
    let reply = app
        .post(
            "/api/v1/users",
            None,
            json!({"username": "long.pass", "password": "🔑".repeat(200)}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let reply = app
        .post(
            "/api/v1/users",
            None,
            json!({"username": "too.long.pass", "password": "🔑".repeat(257)}),
        )
        .await;
    assert_eq!((reply.status, reply.field()), (400, "password"));
    app.stop().await;
}

#[tokio::test]
async fn oversized_raw_bodies_get_the_envelope() {
    let app = TestApp::spawn(Backend::Sqlite, None).await;
    let viewer = app.user("viewer").await;
    let huge = format!(r#"{{"gift_id": 1, "pad": "{}"}}"#, "x".repeat(20_000));
    for (path, token) in [
        ("/api/v1/rooms/1/gifts", Some(&viewer.access)),
        ("/api/v1/payments/callback", None),
    ] {
        let mut request = app
            .client
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .header("idempotency-key", "big-one")
            .body(huge.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 413, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "body_too_large", "{path}");
    }
    app.stop().await;
}
