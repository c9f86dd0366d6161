//! Accounts and login sessions: registration, login, access tokens, refresh rotation with
//! reuse detection, logout and failed-login limits.

use livegate_api::auth::jwt::Jwt;
use livegate_api::auth::Role;
use livegate_core::Secret;
use serde_json::json;

use crate::support::{session, setups, test_config, unique, Options, TestApp, JWT_KEY, PASSWORD};

#[tokio::test]
async fn register_log_in_and_read_me() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let name = unique("alice");
        let reply = app.register(&name, "streamer", None).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        assert_eq!(reply.body["username"], name.as_str());
        assert_eq!(reply.body["role"], "streamer");
        assert!(reply.body.get("password_hash").is_none());

        // The same name again: 409 naming the field.
        let again = app.register(&name, "viewer", None).await;
        assert_eq!(
            (again.status, again.code(), again.field()),
            (409, "conflict", "username")
        );

        let session = app.login(&name).await;
        let me = app.get("/api/v1/users/me", Some(&session.access)).await;
        assert_eq!(me.status, 200);
        assert_eq!(me.body["id"].as_i64(), Some(session.user_id));
        assert_eq!(me.body["role"], "streamer");
        assert_eq!(
            me.headers.get("cache-control").unwrap().to_str().unwrap(),
            "no-store"
        );
        // The scheme is case-insensitive (RFC 7235).
        for scheme in ["bearer", "BEARER"] {
            let reply = app
                .client
                .get(format!("{}/api/v1/users/me", app.base))
                .header("authorization", format!("{scheme} {}", session.access))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200, "{scheme}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn registration_refuses_bad_input_and_self_made_admins() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let cases = [
            (json!({"username": "x", "password": PASSWORD}), "username"),
            (
                json!({"username": "Upper", "password": PASSWORD}),
                "username",
            ),
            (
                json!({"username": unique("bob"), "password": "short"}),
                "password",
            ),
            (
                json!({"username": unique("bob"), "password": "p".repeat(300)}),
                "password",
            ),
            (json!({"password": PASSWORD}), "username"),
            (
                json!({"username": unique("bob"), "password": PASSWORD, "extra": 1}),
                "extra",
            ),
            (
                json!({"username": unique("bob"), "password": PASSWORD, "role": "king"}),
                "role",
            ),
        ];
        for (body, field) in cases {
            let reply = app.post("/api/v1/users", None, body.clone()).await;
            assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
            assert_eq!(reply.field(), field, "{body}: {:?}", reply.body);
        }
        // Not JSON at all.
        let raw = app
            .client
            .post(format!("{}/api/v1/users", app.base))
            .header("content-type", "application/json")
            .body("{nope")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), 400);

        // Only an admin makes admins.
        let reply = app.register(&unique("eve"), "admin", None).await;
        assert_eq!((reply.status, reply.field()), (403, "role"));
        let viewer = app.user("viewer").await;
        let reply = app
            .register(&unique("eve"), "admin", Some(&viewer.access))
            .await;
        assert_eq!(reply.status, 403);
        let admin = app.user("admin").await;
        let reply = app
            .register(&unique("root"), "admin", Some(&admin.access))
            .await;
        assert_eq!(
            (reply.status, reply.body["role"].as_str()),
            (201, Some("admin"))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn closed_registration_admits_only_what_admins_create() {
    let mut config = test_config();
    config.auth.open_registration = false;
    let app = TestApp::start(Options {
        config,
        ..Options::new(livegate_core::db::Backend::Sqlite, None)
    })
    .await;
    let reply = app.register(&unique("carol"), "viewer", None).await;
    assert_eq!((reply.status, reply.code()), (403, "forbidden"));
    let admin = app.user("admin").await;
    let reply = app
        .register(&unique("carol"), "streamer", Some(&admin.access))
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let name = unique("dave");
        app.register(&name, "viewer", None).await;
        let wrong = app
            .post(
                "/api/v1/sessions",
                None,
                json!({"username": name, "password": "wrong password"}),
            )
            .await;
        let unknown = app
            .post(
                "/api/v1/sessions",
                None,
                json!({"username": unique("nobody"), "password": "wrong password"}),
            )
            .await;
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.body, unknown.body);
        assert_eq!(unknown.status, 401);
        assert!(wrong.headers.get("www-authenticate").is_some());
        app.stop().await;
    }
}

#[tokio::test]
async fn access_tokens_are_checked_with_every_configured_key() {
    let old_key = Secret::new("old-jwt-key-0123456789abcdef0123456789ab");
    let mut config = test_config();
    config.auth.jwt_keys = vec![Secret::new(JWT_KEY), old_key.clone()];
    let app = TestApp::start(Options {
        config,
        ..Options::new(livegate_core::db::Backend::Sqlite, None)
    })
    .await;
    let user = app.user("viewer").await;
    let now = livegate_api::unix_now();

    // Signed by the older, still listed key: accepted.
    let old = Jwt::new(std::slice::from_ref(&old_key), 900).unwrap();
    let by_old = old.issue(user.user_id, Role::Viewer, now).unwrap();
    assert_eq!(app.get("/api/v1/users/me", Some(&by_old)).await.status, 200);

    // Signed by a key nobody listed, expired, garbled, missing, or not a bearer: 401 with a
    // challenge and the envelope.
    let stranger = Jwt::new(&[Secret::new("x".repeat(40))], 900).unwrap();
    let forged = stranger.issue(user.user_id, Role::Admin, now).unwrap();
    let ours = Jwt::new(&[Secret::new(JWT_KEY)], 900).unwrap();
    let expired = ours.issue(user.user_id, Role::Viewer, now - 3600).unwrap();
    for (token, message) in [
        (forged.as_str(), "signature"),
        (expired.as_str(), "expired"),
        ("not.a.jwt", "malformed"),
    ] {
        let reply = app.get("/api/v1/users/me", Some(token)).await;
        assert_eq!(reply.status, 401, "{token}");
        let challenge = reply
            .headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(challenge.contains("invalid_token"), "{challenge}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{:?}",
            reply.body
        );
    }
    let reply = app.get("/api/v1/users/me", None).await;
    assert_eq!((reply.status, reply.code()), (401, "unauthorized"));
    assert!(reply.headers.get("www-authenticate").is_some());
    let basic = app
        .client
        .get(format!("{}/api/v1/users/me", app.base))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_family() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let first = app.user("viewer").await;

        let reply = app
            .post(
                "/api/v1/sessions/refresh",
                None,
                json!({"refresh_token": first.refresh}),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let second = session(&reply);
        assert_ne!(second.refresh, first.refresh);
        assert_eq!(
            app.get("/api/v1/users/me", Some(&second.access))
                .await
                .status,
            200
        );

        // The first token again: refused, and the family is gone, the newest token too.
        let reuse = app
            .post(
                "/api/v1/sessions/refresh",
                None,
                json!({"refresh_token": first.refresh}),
            )
            .await;
        assert_eq!((reuse.status, reuse.field()), (401, "refresh_token"));
        let after = app
            .post(
                "/api/v1/sessions/refresh",
                None,
                json!({"refresh_token": second.refresh}),
            )
            .await;
        assert_eq!(after.status, 401, "{:?}", after.body);

        // Another login is its own family, untouched.
        let other = app
            .post(
                "/api/v1/sessions",
                None,
                json!({"username": app.get("/api/v1/users/me", Some(&second.access)).await.body["username"], "password": PASSWORD}),
            )
            .await;
        let other = session(&other);
        let reply = app
            .post(
                "/api/v1/sessions/refresh",
                None,
                json!({"refresh_token": other.refresh}),
            )
            .await;
        assert_eq!(reply.status, 200);

        // Unknown and malformed tokens.
        let reply = app
            .post(
                "/api/v1/sessions/refresh",
                None,
                json!({"refresh_token": "nope"}),
            )
            .await;
        assert_eq!(reply.status, 401);
        let reply = app.post("/api/v1/sessions/refresh", None, json!({})).await;
        assert_eq!((reply.status, reply.field()), (400, "refresh_token"));
        app.stop().await;
    }
}

#[tokio::test]
async fn logout_ends_the_session() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let user = app.user("viewer").await;
        let body = json!({"refresh_token": user.refresh});
        let reply = app
            .call(
                reqwest::Method::DELETE,
                "/api/v1/sessions",
                None,
                Some(body.clone()),
            )
            .await;
        assert_eq!(reply.status, 204);
        let reply = app
            .post("/api/v1/sessions/refresh", None, body.clone())
            .await;
        assert_eq!(reply.status, 401);
        // Twice is fine.
        let reply = app
            .call(
                reqwest::Method::DELETE,
                "/api/v1/sessions",
                None,
                Some(body),
            )
            .await;
        assert_eq!(reply.status, 204);
        app.stop().await;
    }
}

#[tokio::test]
async fn failed_logins_are_limited_per_username_and_per_address() {
    for (backend, bus) in setups() {
        let mut config = test_config();
        config.auth.failed_logins_per_username = 3;
        config.auth.failed_logins_per_address = 5;
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend, bus)
        })
        .await;
        let name = unique("frank");
        app.register(&name, "viewer", None).await;
        let attempt = |password: &'static str, name: String| {
            let app = &app;
            async move {
                app.post(
                    "/api/v1/sessions",
                    None,
                    json!({"username": name, "password": password}),
                )
                .await
            }
        };
        for _ in 0..3 {
            assert_eq!(attempt("wrong password", name.clone()).await.status, 401);
        }
        // The right password no longer helps: the name is locked for the window.
        let locked = attempt(PASSWORD, name.clone()).await;
        assert_eq!((locked.status, locked.code()), (429, "rate_limited"));

        // Other names from the same address: two more failures reach the address limit.
        let other = unique("grace");
        app.register(&other, "viewer", None).await;
        for _ in 0..2 {
            assert_eq!(attempt("wrong password", unique("ghost")).await.status, 401);
        }
        let reply = attempt(PASSWORD, other).await;
        assert_eq!(reply.status, 429, "{:?}", reply.body);
        assert!(app
            .metrics()
            .await
            .contains("livegate_api_logins_total{outcome=\"rate_limited\"}"));
        app.stop().await;
    }
}

#[tokio::test]
async fn two_refreshes_with_one_token_leave_no_session() {
    for (backend, bus) in setups() {
        let app = TestApp::spawn(backend, bus).await;
        let user = app.user("viewer").await;
        let body = json!({"refresh_token": user.refresh});
        let (a, b) = tokio::join!(
            app.post("/api/v1/sessions/refresh", None, body.clone()),
            app.post("/api/v1/sessions/refresh", None, body.clone()),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        // One wins; the loser is a reuse, which revokes the winner's new token too (or both
        // find the token spent, if the second saw the first's commit).
        assert!(
            statuses == [200, 401] || statuses == [401, 401],
            "{statuses:?}"
        );
        for reply in [a, b] {
            if reply.status == 200 {
                let next = session(&reply);
                let again = app
                    .post(
                        "/api/v1/sessions/refresh",
                        None,
                        json!({"refresh_token": next.refresh}),
                    )
                    .await;
                assert_eq!(again.status, 401, "{:?}", again.body);
            }
        }
        app.stop().await;
    }
}

/// Each registration costs a password hash: one address gets a few an hour, then 429, while
/// an admin creating users is not counted.
#[tokio::test]
async fn registrations_are_limited_per_address() {
    for (backend, bus) in setups() {
        let mut config = test_config();
        config.auth.registrations_per_address_per_hour = 2;
        let app = TestApp::start(Options {
            config,
            ..Options::new(backend, bus)
        })
        .await;
        for _ in 0..2 {
            let reply = app.register(&unique("viewer"), "viewer", None).await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
        }
        let refused = app.register(&unique("viewer"), "viewer", None).await;
        assert_eq!(refused.status, 429, "{:?}", refused.body);
        let admin = app.user("admin").await;
        let by_admin = app
            .register(&unique("streamer"), "streamer", Some(&admin.access))
            .await;
        assert_eq!(by_admin.status, 201, "{:?}", by_admin.body);
        app.stop().await;
    }
}
