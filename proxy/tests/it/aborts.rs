//! Viewers that leave before their response is complete: counted and logged as 499 (nginx's
//! "client closed request"), never as server errors a 5xx alert would fire on.

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use livegate_tests::scripted::{Script, ScriptedOrigin};
use livegate_tests::wait_until;

use crate::support::{read_response_head, token, ProxyBuilder};

async fn abort_each(script: Script) {
    let origin = ScriptedOrigin::start(script).await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    for (kind, path) in [
        ("flv", "/live/42.flv"),
        ("playlist", "/live/42.m3u8"),
        ("segment", "/live/42-0.ts"),
    ] {
        let before = origin.requests();
        let mut viewer = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!(
            "GET {path}?token={} HTTP/1.1\r\nHost: edge\r\n\r\n",
            token(42)
        );
        viewer.write_all(request.as_bytes()).await.unwrap();
        wait_until("the request to reach the origin", || {
            let reached = origin.requests() > before;
            async move { reached.then_some(()) }
        })
        .await;
        drop(viewer);
        let counted =
            format!("livegate_proxy_requests_total{{kind=\"{kind}\",status=\"client_closed\"}} 1");
        wait_until(&format!("the {kind} abort to be counted"), || {
            let proxy = &proxy;
            let counted = counted.clone();
            async move { proxy.metrics().await.contains(&counted).then_some(()) }
        })
        .await;
        let metrics = proxy.metrics().await;
        assert!(
            metrics.contains(&format!(
                "livegate_proxy_requests_total{{kind=\"{kind}\",status=\"5xx\"}} 0"
            )),
            "{metrics}"
        );
    }
    let log = proxy.log();
    assert!(!log.contains("status: 5"), "{log}");
}

#[tokio::test]
async fn viewers_leaving_before_the_response_head_are_499() {
    // An origin that takes the request and says nothing.
    abort_each(Script::SendAndHang(Vec::new())).await;
}

#[tokio::test]
async fn viewers_leaving_mid_body_are_499() {
    // A live FLV origin sends an endless close-delimited body; a segment has a length.
    let mut flv = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n".to_vec();
    flv.extend_from_slice(&livegate_proxy::flv::tags::FILE_HEADER);
    flv.extend(livegate_proxy::flv::tags::encode_tag(
        9,
        0,
        &[0x17, 0x01, 0, 0, 0, 9],
    ));
    let mut segment =
        b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    segment.extend_from_slice(&vec![0u8; 256 * 1024]);
    abort_mid_body("flv", "/live/42.flv", Script::SendAndHang(flv), "").await;
    // The cache answers only once it has the whole segment; segments it does not keep are
    // relayed as they arrive.
    let uncached = "[cache]\nenabled = false";
    abort_mid_body(
        "segment",
        "/live/42-0.ts",
        Script::SendAndHang(segment),
        uncached,
    )
    .await;
}

/// A viewer that leaves while `path`'s body is still coming.
async fn abort_mid_body(kind: &str, path: &str, script: Script, config: &str) {
    let origin = ScriptedOrigin::start(script).await;
    let proxy = ProxyBuilder::new(origin.addr).with(config).start().await;
    let mut viewer = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET {path}?token={} HTTP/1.1\r\nHost: edge\r\n\r\n",
        token(42)
    );
    viewer.write_all(request.as_bytes()).await.unwrap();
    let (status, head) = read_response_head(&mut viewer).await;
    assert_eq!(status, 200, "{kind}: {head}");
    drop(viewer);
    let counted =
        format!("livegate_proxy_requests_total{{kind=\"{kind}\",status=\"client_closed\"}} 1");
    wait_until(&format!("the {kind} abort to be counted"), || {
        let proxy = &proxy;
        let counted = counted.clone();
        async move { proxy.metrics().await.contains(&counted).then_some(()) }
    })
    .await;
    let metrics = proxy.metrics().await;
    assert!(!metrics.contains("status=\"5xx\"} 1"), "{metrics}");
    let log = proxy.log();
    assert!(!log.contains("status: 5"), "{log}");
}
