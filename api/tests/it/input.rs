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
