//! The real SRS API client against an HTTP server answering with SRS 6's documented shapes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::Router;
use livegate_core::origin::srs::SrsApi;
use livegate_core::origin::{OriginControl as _, OriginError, StreamRef};
use livegate_core::Secret;

const STREAMS: &str = r#"{"code":0,"server":"vid-0xk989d","service":"8f2a1b3c","pid":"12345",
 "streams":[{"id":"vid-124q9y3","name":"42","vhost":"vid-k21d7y2","app":"live",
   "tcUrl":"rtmp://origin.example/live","url":"/live/42","live_ms":1735000000000,
   "clients":3,"frames":1234,"send_bytes":0,"recv_bytes":0,"kbps":{"recv_30s":2500,"send_30s":0},
   "publish":{"active":true,"cid":"341w361a"},
   "video":{"codec":"H264","profile":"High","level":"3.1","width":1280,"height":720},
   "audio":{"codec":"AAC","sample_rate":44100,"channel":2,"profile":"LC"}},
  {"id":"vid-2","name":"43","vhost":"vid-k21d7y2","app":"live","tcUrl":"","url":"/live/43",
   "live_ms":1735000000000,"clients":1,"frames":0,"send_bytes":0,"recv_bytes":0,
   "kbps":{"recv_30s":0,"send_30s":0},"publish":{"active":false},"video":null,"audio":null}]}"#;

async fn fake_srs(kicked: Arc<Mutex<Vec<String>>>) -> (String, tokio::task::JoinHandle<()>) {
    // "admin:admin" in HTTP basic auth.
    let authorised = |headers: &HeaderMap| {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic YWRtaW46YWRtaW4=")
    };
    let app = Router::new()
        .route(
            "/api/v1/streams",
            get(move |headers: HeaderMap| async move {
                if authorised(&headers) {
                    (StatusCode::OK, STREAMS)
                } else {
                    (StatusCode::UNAUTHORIZED, "")
                }
            }),
        )
        .route(
            "/api/v1/clients/{id}",
            delete(move |Path(id): Path<String>| async move {
                if id == "341w361a" {
                    kicked.lock().unwrap().push(id);
                    r#"{"code":0}"#
                } else {
                    // ERROR_RTMP_CLIENT_NOT_FOUND
                    r#"{"code":2049}"#
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, server)
}

#[tokio::test]
async fn the_http_client_lists_streams_and_kicks() {
    let kicked = Arc::new(Mutex::new(Vec::new()));
    let (base, server) = fake_srs(kicked.clone()).await;
    let password = Secret::new("admin");
    let api = SrsApi::new(
        &base,
        Some("admin"),
        Some(&password),
        Duration::from_secs(5),
    )
    .unwrap();

    let listed = api.list().await.unwrap();
    assert_eq!(
        (listed.server.as_str(), listed.service.as_str()),
        ("vid-0xk989d", "8f2a1b3c")
    );
    assert_eq!(listed.streams.len(), 2);
    assert!(listed.streams[0].publish.active);
    assert_eq!(listed.streams[0].publish.cid.as_deref(), Some("341w361a"));
    assert!(!listed.streams[1].publish.active);
    assert_eq!(listed.streams[1].publish.cid, None);

    // Through the origin-control trait: only active publishers are listed.
    let streams = api.streams().await.unwrap();
    assert_eq!(streams.process_id.as_deref(), Some("8f2a1b3c"));
    assert_eq!(streams.streams.len(), 1);
    assert_eq!(streams.streams[0].publisher.as_deref(), Some("341w361a"));

    let publisher = |id| StreamRef {
        vhost: None,
        app: Some("live"),
        name: "42",
        publisher: Some(id),
    };
    api.kick(&publisher("341w361a")).await.unwrap();
    assert_eq!(*kicked.lock().unwrap(), vec!["341w361a".to_owned()]);
    assert!(matches!(
        api.kick(&publisher("nobody")).await,
        Err(OriginError::Code { code: 2049 })
    ));

    let anonymous = SrsApi::new(&base, None, None, Duration::from_secs(5)).unwrap();
    assert!(matches!(
        anonymous.streams().await,
        Err(OriginError::Http(_))
    ));
    server.abort();
}
