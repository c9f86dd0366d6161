//! HTTP-FLV through the proxy, from a paced origin.

use std::time::Duration;

use futures_util::StreamExt as _;
use livegate_core::unix_now;
use livegate_tests::flv::{FlvFile, FlvOrigin, Framing};
use livegate_tests::media::make_flv;
use livegate_tests::scripted::{Script, ScriptedOrigin};
use livegate_tests::wait_until;

use crate::support::{client, streaming_client, token, token_expiring, ProxyBuilder};

pub(crate) async fn paced_origin() -> FlvOrigin {
    paced_origin_with(Framing::UntilClose).await
}

pub(crate) async fn paced_origin_with(framing: Framing) -> FlvOrigin {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("42.flv");
    make_flv(&path, 4, 800);
    FlvOrigin::start_with(FlvFile::read(&path), framing).await
}

/// Reads from `body` until at least `want` bytes arrived.
pub(crate) async fn read_at_least(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    want: usize,
) -> Vec<u8> {
    let mut received = Vec::new();
    while received.len() < want {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended early")
            .expect("the stream failed");
        received.extend_from_slice(&chunk);
    }
    received
}

/// Walks FLV tags after the 13-byte file header, returning how many complete tags there are.
fn count_tags(data: &[u8]) -> usize {
    let mut at = 13;
    let mut tags = 0;
    while at + 11 <= data.len() {
        assert!(
            matches!(data[at], 8 | 9 | 18),
            "bad tag type {} at {at}",
            data[at]
        );
        let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
        if at + 11 + size + 4 > data.len() {
            break;
        }
        let previous = u32::from_be_bytes(data[at + 11 + size..at + 15 + size].try_into().unwrap());
        assert_eq!(previous as usize, 11 + size, "PreviousTagSize mismatch");
        at += 11 + size + 4;
        tags += 1;
    }
    tags
}

#[tokio::test]
async fn flv_streams_through_and_a_departing_viewer_releases_the_origin() {
    for framing in [Framing::UntilClose, Framing::Chunked] {
        flv_streams_through(framing).await;
    }
}

async fn flv_streams_through(framing: Framing) {
    let origin = paced_origin_with(framing).await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let token = token(42);

    let response = streaming_client()
        .get(proxy.url(&format!("/live/42.flv?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/x-flv");
    assert!(
        response.headers().get("server").is_none(),
        "the origin's software stays its own"
    );
    let mut body = response.bytes_stream();
    let received = read_at_least(&mut body, 64 * 1024).await;
    assert_eq!(&received[..3], b"FLV", "FLV signature");
    assert!(count_tags(&received) > 10, "FLV tags arrive");
    assert_eq!(origin.open_connections(), 1);
    assert!(proxy
        .metrics()
        .await
        .contains("livegate_proxy_flv_sessions_active 1"));
    let targets = origin.targets();
    assert_eq!(
        targets,
        vec!["/live/42.flv".to_owned()],
        "the token is not forwarded"
    );

    drop(body);
    wait_until(
        "the origin connection to close after the viewer left",
        || async { (origin.open_connections() == 0).then_some(()) },
    )
    .await;
    wait_until("the active FLV gauge to drop", || async {
        proxy
            .metrics()
            .await
            .contains("livegate_proxy_flv_sessions_active 0")
            .then_some(())
    })
    .await;
}

/// FLV tags after the 13-byte header: (type, first data byte) of each complete tag.
fn tag_heads(data: &[u8]) -> Vec<(u8, u8)> {
    let mut at = 13;
    let mut heads = Vec::new();
    while at + 11 < data.len() {
        let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
        if at + 11 + size + 4 > data.len() {
            break;
        }
        heads.push((data[at], data[at + 11]));
        at += 11 + size + 4;
    }
    heads
}

#[tokio::test]
async fn many_viewers_share_one_origin_pull() {
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[flv]\nlinger_ms = 200")
        .start()
        .await;
    let mut bodies = Vec::new();
    for _ in 0..8 {
        let response = streaming_client()
            .get(proxy.url(&format!("/live/42.flv?token={}", token(42))))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        bodies.push(response.bytes_stream());
    }
    for body in &mut bodies {
        let received = read_at_least(body, 16 * 1024).await;
        assert_eq!(&received[..3], b"FLV");
        assert!(count_tags(&received) > 3);
    }
    assert_eq!(origin.open_connections(), 1, "one pull for every viewer");
    assert_eq!(origin.targets().len(), 1);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("livegate_proxy_flv_pulls_active 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("livegate_proxy_flv_sessions_active 8"),
        "{metrics}"
    );
    drop(bodies);
    wait_until("the pull to end after its last viewer left", || async {
        (origin.open_connections() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn viewers_in_different_seconds_share_the_pull_when_the_proxy_mints_its_token() {
    // With tokens forwarded, the pull carries a token the proxy mints with the current time:
    // it must not split viewers that arrive in different seconds into pulls of their own.
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr)
        .forward_token(true)
        .start()
        .await;
    let join = || async {
        let response = streaming_client()
            .get(proxy.url(&format!("/live/42.flv?token={}", token(42))))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        read_at_least(&mut body, 1024).await;
        body
    };
    let first = join().await;
    let joined_at = unix_now();
    wait_until("the clock to reach the next second", || async {
        (unix_now() > joined_at).then_some(())
    })
    .await;
    let second = join().await;
    assert_eq!(origin.open_connections(), 1, "{:?}", origin.targets());
    assert_eq!(origin.targets().len(), 1);
    assert!(
        origin.targets()[0].contains("token="),
        "the origin gets the proxy's token"
    );
    drop((first, second));
}

#[tokio::test]
async fn a_viewer_joining_a_running_stream_starts_on_a_keyframe() {
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let url = proxy.url(&format!("/live/42.flv?token={}", token(42)));
    let first = streaming_client().get(&url).send().await.unwrap();
    let mut first = first.bytes_stream();
    // Well into the stream: past its first GOP.
    read_at_least(&mut first, 256 * 1024).await;
    let joiner = streaming_client().get(&url).send().await.unwrap();
    let mut joiner = joiner.bytes_stream();
    let received = read_at_least(&mut joiner, 64 * 1024).await;
    assert_eq!(&received[..3], b"FLV");
    let heads = tag_heads(&received);
    // Metadata and codec configuration first, then video starts on a keyframe.
    let first_video = heads.iter().find(|(kind, _)| *kind == 9).copied().unwrap();
    assert_eq!(
        first_video.1 >> 4,
        1,
        "first video tag is a keyframe or its config: {heads:?}"
    );
    assert!(
        heads
            .iter()
            .take_while(|(kind, _)| *kind != 9)
            .all(|(kind, _)| *kind == 18 || *kind == 8),
        "{heads:?}"
    );
    assert_eq!(origin.open_connections(), 1);
}

#[tokio::test]
async fn the_end_of_the_origin_stream_ends_every_viewer_cleanly() {
    use livegate_proxy::flv::tags::{encode_tag, FILE_HEADER};
    let mut body = FILE_HEADER.to_vec();
    body.extend(encode_tag(9, 0, &[0x17, 0x01, 0, 0, 0, 1, 2, 3]));
    body.extend(encode_tag(9, 40, &[0x27, 0x01, 0, 0, 0, 4]));
    let mut response =
        b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nConnection: close\r\n\r\n".to_vec();
    response.extend(body.clone());
    // An origin whose publisher stops: the body ends when it closes.
    let origin = ScriptedOrigin::start(Script::Send(response)).await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let received = client()
        .get(proxy.url(&format!("/live/42.flv?token={}", token(42))))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .expect("the response ends cleanly");
    assert_eq!(&received[..], &body[..]);
    // Counted once it has ended, with every byte it carried.
    let counted = [
        "livegate_proxy_requests_total{kind=\"flv\",status=\"2xx\"} 1".to_owned(),
        format!(
            "livegate_proxy_sent_bytes_total{{kind=\"flv\"}} {}",
            body.len()
        ),
        "livegate_proxy_flv_sessions_active 0".to_owned(),
    ];
    wait_until("the finished FLV response to be counted", || {
        let proxy = &proxy;
        let counted = &counted;
        async move {
            let metrics = proxy.metrics().await;
            counted
                .iter()
                .all(|line| metrics.contains(line))
                .then_some(())
        }
    })
    .await;
    let missing = ScriptedOrigin::start(Script::Send(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ))
    .await;
    let proxy = ProxyBuilder::new(missing.addr).start().await;
    let response = client()
        .get(proxy.url(&format!("/live/42.flv?token={}", token(42))))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        404,
        "a stream that is off is a 404, as at the origin"
    );
}

#[tokio::test]
async fn flv_ends_when_the_token_expires_if_configured() {
    let origin = paced_origin().await;
    // The stream may run for leeway (2 s) plus grace (1 s) past the token's expiry.
    let proxy = ProxyBuilder::new(origin.addr)
        .leeway(2)
        .with("[flv]\nend_at_token_expiry = true\nexpiry_grace_s = 1")
        .start()
        .await;
    let expires = unix_now() + 1;
    let response = streaming_client()
        .get(proxy.url(&format!(
            "/live/42.flv?token={}",
            token_expiring(42, expires)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut received = 0usize;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), body.next()).await {
            Ok(Some(Ok(chunk))) => received += chunk.len(),
            Ok(Some(Err(_)) | None) => break unix_now(),
            Err(_) => panic!("the stream stalled instead of ending"),
        }
        assert!(
            unix_now() <= expires + 3 + 10,
            "the stream outlived its token"
        );
    };
    assert!(received > 0);
    assert!(
        ended > expires + 3,
        "ended before expiry plus leeway and grace"
    );
    wait_until("the origin connection to close", || async {
        (origin.open_connections() == 0).then_some(())
    })
    .await;
}

async fn flv_status_through(origin: &ScriptedOrigin) -> u16 {
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let response = client()
        .get(proxy.url(&format!("/live/42.flv?token={}", token(42))))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    wait_until("the active FLV gauge to drop", || async {
        proxy
            .metrics()
            .await
            .contains("livegate_proxy_flv_sessions_active 0")
            .then_some(())
    })
    .await;
    status
}

#[tokio::test]
async fn an_origin_that_closes_before_its_response_head_gives_502() {
    // SRS closes without a word when its on_play hook refuses the viewer.
    for script in [
        Script::Close,
        Script::Send(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-fl".to_vec()),
    ] {
        let origin = ScriptedOrigin::start(script.clone()).await;
        assert_eq!(flv_status_through(&origin).await, 502, "{script:?}");
        assert_eq!(origin.requests(), 1);
    }
}

#[tokio::test]
async fn origin_responses_framed_two_ways_are_refused() {
    for head in [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Length: 90\r\n\r\n",
    ] {
        let origin = ScriptedOrigin::start(Script::SendAndHang(head.as_bytes().to_vec())).await;
        assert_eq!(flv_status_through(&origin).await, 502, "{head:?}");
    }
}

#[tokio::test]
async fn a_viewer_that_sends_anything_on_its_flv_response_is_let_go() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let origin = paced_origin().await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let mut viewer = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET /live/42.flv?token={} HTTP/1.1\r\nHost: edge\r\n\r\n",
        token(42)
    );
    viewer.write_all(request.as_bytes()).await.unwrap();
    let (status, head) = crate::support::read_response_head(&mut viewer).await;
    assert_eq!(status, 200, "{head}");
    // A player sends nothing more on an FLV response; another request is not served on it.
    viewer
        .write_all(b"GET /live/42.m3u8 HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await
        .unwrap();
    let drained = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match viewer.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(livegate_tests::patience(), drained)
        .await
        .expect("the FLV response went on after the viewer sent data");
    wait_until("the response to be counted as the viewer's end", || {
        let proxy = &proxy;
        async move {
            let metrics = proxy.metrics().await;
            (metrics
                .contains("livegate_proxy_requests_total{kind=\"flv\",status=\"client_closed\"} 1")
                && metrics.contains("livegate_proxy_flv_sessions_active 0"))
            .then_some(())
        }
    })
    .await;
    wait_until("the origin connection to close", || async {
        (origin.open_connections() == 0).then_some(())
    })
    .await;
}
