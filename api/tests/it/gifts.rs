//! The gift catalogue: admins add and change gifts, everyone lists the active ones.

use reqwest::Method;
use serde_json::json;

use crate::support::{setups, unique, TestApp};

#[tokio::test]
async fn admins_keep_the_catalogue_and_everyone_lists_the_active_gifts() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let admin = app.user("admin").await;
        let viewer = app.user("viewer").await;
        let name = unique("rose");
        let body = json!({"name": name, "price": 199, "currency": "EUR"});

        let refused = app
            .post("/api/v1/gifts", Some(&viewer.access), body.clone())
            .await;
        assert_eq!(refused.status, 403, "{:?}", refused.body);
        let refused = app.post("/api/v1/gifts", None, body.clone()).await;
        assert_eq!(refused.status, 401);

        let created = app
            .post("/api/v1/gifts", Some(&admin.access), body.clone())
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        assert_eq!(created.body["price"], 199);
        assert_eq!(created.body["currency"], "EUR");
        assert_eq!(created.body["active"], true);
        let id = created.body["id"].as_i64().unwrap();
        let twice = app.post("/api/v1/gifts", Some(&admin.access), body).await;
        assert_eq!((twice.status, twice.field()), (409, "name"));

        for (bad, field) in [
            (
                json!({"name": "x", "price": 1.5, "currency": "EUR"}),
                "price",
            ),
            (json!({"name": "x", "price": 0, "currency": "EUR"}), "price"),
            (
                json!({"name": "x", "price": 100, "currency": "eur"}),
                "currency",
            ),
            (json!({"name": "", "price": 100, "currency": "EUR"}), "name"),
        ] {
            let reply = app.post("/api/v1/gifts", Some(&admin.access), bad).await;
            assert_eq!(
                (reply.status, reply.field()),
                (400, field),
                "{:?}",
                reply.body
            );
        }

        let listed = app.get("/api/v1/gifts", None).await;
        assert_eq!(listed.status, 200);
        assert!(listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == id));

        let path = format!("/api/v1/gifts/{id}");
        let patched = app
            .call(
                Method::PATCH,
                &path,
                Some(&admin.access),
                Some(json!({"active": false, "price": 250})),
            )
            .await;
        assert_eq!(patched.status, 200, "{:?}", patched.body);
        assert_eq!(
            (
                patched.body["active"].clone(),
                patched.body["price"].clone()
            ),
            (json!(false), json!(250))
        );
        let listed = app.get("/api/v1/gifts", None).await;
        assert!(!listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == id));
        let all = app.get("/api/v1/gifts?all=true", Some(&admin.access)).await;
        assert!(all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == id));
        let all = app
            .get("/api/v1/gifts?all=true", Some(&viewer.access))
            .await;
        assert_eq!(all.status, 403);

        let by_viewer = app
            .call(
                Method::PATCH,
                &path,
                Some(&viewer.access),
                Some(json!({"active": true})),
            )
            .await;
        assert_eq!(by_viewer.status, 403);
        let missing = app
            .call(
                Method::PATCH,
                "/api/v1/gifts/999999",
                Some(&admin.access),
                Some(json!({"active": true})),
            )
            .await;
        assert_eq!(missing.status, 404);
        app.stop().await;
    }
}
