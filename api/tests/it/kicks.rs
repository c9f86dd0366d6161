//! Kicking live publishers: SRS and ZLMediaKit clients against an HTTP server that records
//! the calls, and a real nginx-rtmp with its control module, ffmpeg publishing through the
//! hooks service, dropped when the key is rotated.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::routing::any;
use livegate_api::config::{OriginConfig, OriginKind};
use livegate_api::kick::Origins;
use livegate_core::db::testing::TestDatabase;
use livegate_core::db::{rooms, streams, Backend};
use livegate_core::service::{Shutdown, Stop};
use livegate_core::Secret;
use livegate_tests::rtmp::{Publisher, RtmpOrigin};
use reqwest::Method;
use serde_json::json;

use crate::rooms::go_live;
use crate::support::{setups, test_config, wait_until, Options, TestApp};

const ZLM_SECRET: &str = "zlm-secret-never-logged";

/// One call the fake origin API received: method, path and query, body.
type Calls = Arc<Mutex<Vec<(String, String, String)>>>;

/// An HTTP server answering `{"code": code}` to everything and recording what it got.
async fn recording_api(code: i64) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let app = axum::Router::new()
        .fallback(any(
            |State((calls, code)): State<(Calls, i64)>, request: Request| async move {
                let method = request.method().to_string();
                let target = request.uri().to_string();
                let body = axum::body::to_bytes(request.into_body(), 65536)
                    .await
                    .unwrap_or_default();
                calls.lock().unwrap().push((
                    method,
                    target,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                axum::Json(json!({"code": code}))
            },
        ))
        .with_state((calls.clone(), code));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

pub(crate) fn origin(kind: OriginKind, url: &str, secret: Option<&str>) -> OriginConfig {
    OriginConfig {
        kind,
        server_id: None,
        url: url.to_owned(),
        username: None,
        secret: secret.map(Secret::new),
        timeout_ms: 3000,
        stat_url: None,
    }
}

#[tokio::test]
async fn srs_and_zlmediakit_publishers_are_kicked_through_their_apis() {
    for (backend, bus) in setups() {
        let (srs_url, srs_calls) = recording_api(0).await;
        let (zlm_url, zlm_calls) = recording_api(0).await;
        let origins = Origins::from_config(&[
            origin(OriginKind::Srs, &srs_url, None),
            origin(OriginKind::Zlmediakit, &zlm_url, Some(ZLM_SECRET)),
        ])
        .unwrap();
        let app = TestApp::start(Options {
            origins,
            ..Options::new(backend, bus)
        })
        .await;
        let owner = app.user("streamer").await;

        // SRS, on rotation: DELETE the publisher's client id.
        let (srs_room, _) = app.room(&owner).await;
        go_live(&app, srs_room, "srs", "vid-7xk").await;
        let reply = app
            .post(
                &format!("/api/v1/rooms/{srs_room}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["kicked"], "kicked");
        assert_eq!(
            srs_calls.lock().unwrap().clone(),
            vec![(
                "DELETE".to_owned(),
                "/api/v1/clients/vid%2D7xk".to_owned(),
                String::new()
            )]
        );

        // ZLMediaKit, on disabling: close_streams with its secret, forced.
        let (zlm_room, _) = app.room(&owner).await;
        go_live(&app, zlm_room, "zlmediakit", "10-11").await;
        let reply = app
            .call(
                Method::DELETE,
                &format!("/api/v1/rooms/{zlm_room}"),
                Some(&owner.access),
                None,
            )
            .await;
        assert_eq!(reply.body["kicked"], "kicked", "{:?}", reply.body);
        let calls = zlm_calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1);
        let (method, target, body) = &calls[0];
        assert_eq!(
            (method.as_str(), target.as_str()),
            ("POST", "/index/api/close_streams")
        );
        let form: Vec<(String, String)> = url_pairs(body);
        for pair in [
            ("secret", ZLM_SECRET),
            ("vhost", "__defaultVhost__"),
            ("app", "live"),
            ("stream", &zlm_room.to_string()),
            ("force", "1"),
        ] {
            assert!(
                form.contains(&(pair.0.to_owned(), pair.1.to_owned())),
                "{pair:?} in {body}"
            );
        }

        // A stream of an origin nobody configured: said so, nothing called.
        let (other_room, _) = app.room(&owner).await;
        go_live(&app, other_room, "nginx-rtmp", "3").await;
        let reply = app
            .post(
                &format!("/api/v1/rooms/{other_room}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(reply.body["kicked"], "no_control");
        assert!(app
            .metrics()
            .await
            .contains("livegate_api_kicks_total{origin=\"srs\",outcome=\"kicked\"} 1"));
        app.stop().await;
    }
}

fn url_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn a_failing_origin_api_is_reported_and_the_key_still_rotates() {
    let (srs_url, _calls) = recording_api(2049).await;
    let app = TestApp::start(Options {
        origins: Origins::from_config(&[origin(OriginKind::Srs, &srs_url, None)]).unwrap(),
        ..Options::new(Backend::Sqlite, None)
    })
    .await;
    let owner = app.user("streamer").await;
    let (room, old_key) = app.room(&owner).await;
    go_live(&app, room, "srs", "c1").await;
    let reply = app
        .post(
            &format!("/api/v1/rooms/{room}/stream-key/rotate"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["kicked"], "failed");
    let row = rooms::get(&app.db, room).await.unwrap().unwrap();
    assert_ne!(row.stream_key, old_key);
    app.stop().await;
}

/// The hooks service on the API's database, as a deployment runs it.
pub(crate) struct Hooks {
    pub(crate) base: String,
    /// Its admin endpoints (`/metrics`).
    pub(crate) admin: String,
    shutdown: Shutdown,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Hooks {
    pub(crate) async fn start(db: livegate_core::db::Database) -> Hooks {
        let bus =
            livegate_core::bus::Bus::connect(&livegate_core::bus::BusConfig::default()).unwrap();
        Self::start_on(db, bus).await
    }

    /// On the API's bus too, so that its room events reach the API.
    pub(crate) async fn start_on(
        db: livegate_core::db::Database,
        bus: livegate_core::bus::Bus,
    ) -> Hooks {
        let mut config = livegate_hooks::Config::default();
        config.play.token_keys = vec![Secret::new(crate::support::PLAY_KEY)];
        config.publish.attempts_per_ip_per_minute = 0;
        let app = livegate_hooks::App::build_with(
            config,
            livegate_hooks::Deps {
                db,
                bus,
                origins: livegate_hooks::state::Origins {
                    srs: None,
                    zlm: None,
                },
            },
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let admin_base = format!("http://{}", admin.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(app.run(listener, admin, shutdown.clone()));
        Hooks {
            base,
            admin: admin_base,
            shutdown,
            handle,
        }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.request(Stop::Drain);
        tokio::time::timeout(livegate_tests::patience(), self.handle)
            .await
            .expect("the hooks service stops")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn rotating_the_key_drops_a_real_nginx_rtmp_publisher() {
    for (backend, _) in setups() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        let hooks = Hooks::start(test_db.db.clone()).await;
        let origin = RtmpOrigin::start(&hooks.base, "");
        origin.ready().await;
        let app = TestApp::start(Options {
            origins: Origins::from_config(&[origin_nginx(&origin.control_url())]).unwrap(),
            db: Some(test_db.db.clone()),
            config: test_config(),
            ..Options::new(backend, None)
        })
        .await;
        let owner = app.user("streamer").await;
        let (room, key) = app.room(&owner).await;
        let is_live = || async { rooms::get(&app.db, room).await.unwrap().unwrap().is_live };

        // Publishing with the key the API handed out: accepted by the hooks service.
        let publisher = Publisher::start(&origin.url(&format!("{room}?key={key}")), 60);
        wait_until("the room to go live", || async {
            is_live().await.then_some(())
        })
        .await;
        let stream = streams::open(&app.db, room).await.unwrap().unwrap();
        assert_eq!(stream.origin_kind, "nginx-rtmp");

        let reply = app
            .post(
                &format!("/api/v1/rooms/{room}/stream-key/rotate"),
                Some(&owner.access),
                json!({}),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["kicked"], "kicked");
        // nginx drops the publisher; its publish_done closes the stream.
        let status = publisher.finish(Duration::from_secs(30)).await;
        assert!(!status.success(), "ffmpeg kept publishing after the kick");
        wait_until("the room to go offline", || async {
            (!is_live().await).then_some(())
        })
        .await;
        let closed = streams::of_room(&app.db, room).await.unwrap();
        assert!(closed.iter().all(|s| s.stop_at.is_some()));

        // The old key no longer publishes.
        let again = Publisher::start(&origin.url(&format!("{room}?key={key}")), 2);
        assert!(!again.finish(Duration::from_secs(30)).await.success());
        assert!(!is_live().await);
        app.stop().await;
        hooks.stop().await;
    }
}

fn origin_nginx(control_url: &str) -> OriginConfig {
    origin(OriginKind::NginxRtmp, control_url, None)
}
