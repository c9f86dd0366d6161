//! The proxy accepts what the room API mints: a viewer asks the API for a play token and
//! plays the HLS playlist through the proxy with the URL it was given.

use livegate_api::kick::Origins;
use livegate_api::{App, Config, Deps};
use livegate_core::bus::{Bus, BusConfig};
use livegate_core::db::{Database, DbConfig};
use livegate_core::service::{Shutdown, Stop};
use livegate_core::Secret;
use livegate_tests::media::make_hls;
use livegate_tests::nginx::{static_origin, Nginx};
use serde_json::{json, Value};

use crate::flv::{paced_origin, read_at_least};
use crate::support::{client, streaming_client, ProxyBuilder, KEY};

const PASSWORD: &str = "a long enough password";

/// The API in this process, on an in-memory database, minting with the proxy's key and
/// handing out URLs on `edge`.
async fn start_api(
    edge: &str,
    bus: &BusConfig,
) -> (
    String,
    Shutdown,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let mut config = Config::default();
    config.auth.jwt_keys = vec![Secret::new("proxy-test-jwt-key-0123456789abcdef0123")];
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    config.play_token.keys = vec![Secret::new(KEY)];
    config.rooms.edge_base_url = edge.to_owned();
    let db = Database::connect(&DbConfig {
        url: Secret::new("sqlite::memory:"),
        ..DbConfig::default()
    })
    .await
    .unwrap();
    db.migrate().await.unwrap();
    config.bus = bus.clone();
    let bus = Bus::connect(bus).unwrap();
    let app = App::build_with(
        config,
        Deps {
            db,
            bus,
            origins: Origins::default(),
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    livegate_api::create_admin(app.state(), "admin", PASSWORD)
        .await
        .unwrap();
    let handle = tokio::spawn(app.run(listener, admin, shutdown.clone()));
    (base, shutdown, handle)
}

async fn post(url: String, token: Option<&str>, body: Value) -> Value {
    let mut request = client().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_token_from_the_api_plays_through_the_proxy() {
    let media = tempfile::tempdir().unwrap();
    let nginx = Nginx::start("", &static_origin(media.path()));
    nginx.ready().await;
    let proxy = ProxyBuilder::new(nginx.addr).start().await;
    let (api, shutdown, handle) = start_api(&proxy.url(""), &BusConfig::default()).await;

    let session = post(
        format!("{api}/api/v1/sessions"),
        None,
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await;
    let access = session["access_token"].as_str().unwrap();
    let room = post(
        format!("{api}/api/v1/rooms"),
        Some(access),
        json!({"title": "e2e"}),
    )
    .await;
    let room_id = room["room"]["id"].as_i64().unwrap();
    make_hls(media.path(), &room_id.to_string(), 4);

    let minted: Value = client()
        .get(format!("{api}/api/v1/rooms/{room_id}/play-token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hls_url = minted["hls_url"].as_str().unwrap();
    let played = client().get(hls_url).send().await.unwrap();
    assert_eq!(played.status(), 200, "{hls_url}\n{}", proxy.log());
    let playlist = played.text().await.unwrap();
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");

    // Without the token, or with it on another room's path, the proxy refuses.
    let bare = client()
        .get(proxy.url(&format!("/live/{room_id}.m3u8")))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 403);
    let token = minted["token"].as_str().unwrap();
    let elsewhere = client()
        .get(proxy.url(&format!("/live/{}.m3u8?token={token}", room_id + 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);

    shutdown.request(Stop::Drain);
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn disabling_a_room_in_the_api_cuts_its_viewers_at_the_edge() {
    let Some(redis) = livegate_core::testing::redis_url() else {
        return;
    };
    let prefix = format!(
        "lgtest-api-revoke-{}-{}",
        std::process::id(),
        livegate_core::unix_now_ms()
    );
    let bus = BusConfig {
        url: Secret::new(redis.as_str()),
        key_prefix: prefix.clone(),
        ..BusConfig::default()
    };
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with(&format!(
            "[bus]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}\""
        ))
        .start()
        .await;
    let (api, shutdown, handle) = start_api(&proxy.url(""), &bus).await;
    let session = post(
        format!("{api}/api/v1/sessions"),
        None,
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let room = post(
        format!("{api}/api/v1/rooms"),
        Some(&access),
        json!({"title": "to be disabled"}),
    )
    .await;
    let room_id = room["room"]["id"].as_i64().unwrap();
    let minted: Value = client()
        .get(format!("{api}/api/v1/rooms/{room_id}/play-token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flv_url = minted["flv_url"].as_str().unwrap().to_owned();
    let watching = streaming_client().get(&flv_url).send().await.unwrap();
    assert_eq!(watching.status(), 200, "{flv_url}\n{}", proxy.log());
    let mut body = watching.bytes_stream();
    read_at_least(&mut body, 4096).await;

    let disabled = client()
        .delete(format!("{api}/api/v1/rooms/{room_id}"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    tokio::time::timeout(livegate_tests::patience(), async {
        use futures_util::StreamExt as _;
        while let Some(Ok(_)) = body.next().await {}
    })
    .await
    .expect("the viewer of the disabled room kept receiving its stream");
    let refused = client().get(&flv_url).send().await.unwrap();
    assert_eq!(refused.status(), 403);

    shutdown.request(Stop::Drain);
    handle.await.unwrap().unwrap();
}
