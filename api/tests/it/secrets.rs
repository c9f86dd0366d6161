//! No password, key, token or stream key reaches a log line, whatever the service does with
//! them (the whole run is captured at TRACE).

use std::io::Write;
use std::sync::{Arc, Mutex};

use livegate_api::config::{OriginConfig, OriginKind};
use livegate_api::kick::Origins;
use livegate_core::db::Backend;
use livegate_core::Secret;
use reqwest::Method;
use serde_json::json;

use crate::rooms::go_live;
use crate::support::{session, test_config, unique, Options, TestApp, JWT_KEY, PASSWORD, PLAY_KEY};

const ZLM_SECRET: &str = "zlm-secret-Hq72-never-logged";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_is_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test's runtime runs on this thread only, so every event of the service lands here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut config = test_config();
    config.auth.failed_logins_per_username = 1;
    let zlm = OriginConfig {
        kind: OriginKind::Zlmediakit,
        server_id: None,
        // Nothing listens: the kick fails, and its error is logged.
        url: format!("http://{}", crate::support::dead_addr()),
        username: None,
        secret: Some(Secret::new(ZLM_SECRET)),
        timeout_ms: 500,
        stat_url: None,
    };
    let app = TestApp::start(Options {
        config,
        origins: Origins::from_config(&[zlm]).unwrap(),
        ..Options::new(Backend::Sqlite, None)
    })
    .await;
    let mut secrets = vec![
        PASSWORD.to_owned(),
        JWT_KEY.to_owned(),
        PLAY_KEY.to_owned(),
        ZLM_SECRET.to_owned(),
    ];
    let name = unique("sam");
    app.register(&name, "streamer", None).await;
    let wrong = "wrong-password-Zt81";
    secrets.push(wrong.to_owned());
    app.post(
        "/api/v1/sessions",
        None,
        json!({"username": name, "password": wrong}),
    )
    .await;
    // Locked by the failure: the right password is refused, and nothing says why in clear.
    app.post(
        "/api/v1/sessions",
        None,
        json!({"username": name, "password": PASSWORD}),
    )
    .await;
    let owner = app.user("streamer").await;
    let refreshed = app
        .post(
            "/api/v1/sessions/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    let second = session(&refreshed);
    // Reuse: the family is revoked (and that is logged).
    app.post(
        "/api/v1/sessions/refresh",
        None,
        json!({"refresh_token": owner.refresh}),
    )
    .await;
    secrets.extend([
        owner.access.clone(),
        owner.refresh.clone(),
        second.refresh.clone(),
    ]);
    let fresh = app.login(&unique_login(&app, &second.access).await).await;
    secrets.push(fresh.access.clone());

    let created = app
        .post("/api/v1/rooms", Some(&fresh.access), json!({"title": "t"}))
        .await;
    let room = created.body["room"]["id"].as_i64().unwrap();
    secrets.push(created.body["stream_key"].as_str().unwrap().to_owned());
    go_live(&app, room, "zlmediakit", "1-2").await;
    let rotated = app
        .post(
            &format!("/api/v1/rooms/{room}/stream-key/rotate"),
            Some(&fresh.access),
            json!({}),
        )
        .await;
    assert_eq!(rotated.body["kicked"], "failed");
    secrets.push(rotated.body["stream_key"].as_str().unwrap().to_owned());
    let token = app
        .get(
            &format!("/api/v1/rooms/{room}/play-token"),
            Some(&fresh.access),
        )
        .await;
    secrets.push(token.body["token"].as_str().unwrap().to_owned());
    app.call(
        Method::DELETE,
        "/api/v1/sessions",
        None,
        Some(json!({"refresh_token": fresh.refresh})),
    )
    .await;
    app.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("stream key rotated"),
        "the capture works: {text}"
    );
    assert!(text.contains("kicking the publisher failed"), "{text}");
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} was logged:\n{text}"
        );
    }
}

/// The username behind an access token.
async fn unique_login(app: &TestApp, access: &str) -> String {
    let me = app.get("/api/v1/users/me", Some(access)).await;
    me.body["username"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn no_callback_secret_or_signature_is_logged() {
    use crate::orders::{callback, event, payments_options, signed, SECRETS};

    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut options = Options::new(Backend::Sqlite, None);
    payments_options(&mut options);
    let app = TestApp::start(options).await;
    let mut logged_never: Vec<String> = SECRETS.iter().map(|s| (*s).to_owned()).collect();
    for (secret, kind) in [
        (SECRETS[0], "payment.succeeded"),
        ("forged-secret-0123456789", "payment.succeeded"),
    ] {
        let (body, signature) = signed(secret, &event(&unique("evt"), kind, "pay_none", 1, "EUR"));
        logged_never.push(signature.split("v1=").nth(1).unwrap().to_owned());
        callback(&app, body, Some(&signature)).await;
    }
    app.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("payment callback refused"),
        "the capture works: {text}"
    );
    assert!(text.contains("payment callback applied"), "{text}");
    for secret in &logged_never {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} was logged:\n{text}"
        );
    }
}
