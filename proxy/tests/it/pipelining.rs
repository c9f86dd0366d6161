//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests a client sends before reading the answers to
//! those ahead of them are all answered, in order, on the viewer port and the admin port; a
//! connection the proxy will not reuse says so on the last answer it gets.

use std::net::SocketAddr;

use livegate_tests::free_addr;
use livegate_tests::scripted::{Script, ScriptedOrigin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::support::{read_response, token, ProxyBuilder};

const PLAYLIST: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n42-5.ts\n";

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: viewer\r\n\r\n")
}

type Connection = BufReader<TcpStream>;

/// Sends `requests` in one write on a new connection to `addr` and reads `answers` responses,
/// each as its head (lower case) and body.
async fn pipeline(
    addr: SocketAddr,
    requests: &[String],
    answers: usize,
) -> (Vec<(String, Vec<u8>)>, Connection) {
    let mut connection = BufReader::new(TcpStream::connect(addr).await.unwrap());
    connection
        .get_mut()
        .write_all(requests.concat().as_bytes())
        .await
        .unwrap();
    let mut responses = Vec::new();
    for _ in 0..answers {
        responses.push(next_response(&mut connection).await);
    }
    (responses, connection)
}

async fn next_response(connection: &mut Connection) -> (String, Vec<u8>) {
    let (head, body) = tokio::time::timeout(livegate_tests::patience(), read_response(connection))
        .await
        .expect("an answer to every pipelined request");
    (head.to_ascii_lowercase(), body)
}

/// Checks that the proxy closes `connection` with nothing more on it.
async fn assert_closed(mut connection: Connection) {
    let mut rest = Vec::new();
    tokio::time::timeout(
        livegate_tests::patience(),
        connection.read_to_end(&mut rest),
    )
    .await
    .expect("the connection to be closed")
    .unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

fn status(head: &str) -> u16 {
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn pipelined_viewer_requests_are_all_answered_in_order() {
    let origin = ScriptedOrigin::start(Script::Send(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PLAYLIST}",
            PLAYLIST.len()
        )
        .into_bytes(),
    ))
    .await;
    let proxy = ProxyBuilder::new(origin.addr)
        .with("[cache]\nplaylist_ttl_ms = 600000")
        .start()
        .await;
    let token = token(42);
    let playlist = format!("/live/42.m3u8?token={token}");
    let requests = [
        get(&playlist),
        get("/nope"),
        get(&format!("/live/42-5.ts?token={token}")),
        get(&playlist),
        get("/live/42.m3u8?token=forged"),
        format!("GET {playlist} HTTP/1.1\r\nHost: viewer\r\nConnection: close\r\n\r\n"),
    ];
    let (responses, connection) = pipeline(proxy.addr, &requests, requests.len()).await;
    let statuses: Vec<u16> = responses.iter().map(|(head, _)| status(head)).collect();
    assert_eq!(statuses, [200, 404, 200, 200, 403, 200]);
    let sources: Vec<Option<&str>> = responses
        .iter()
        .map(|(head, _)| {
            head.lines()
                .find_map(|line| line.strip_prefix("x-cache: "))
                .map(str::trim)
        })
        .collect();
    assert_eq!(
        sources,
        [
            Some("miss"),
            None,
            Some("miss"),
            Some("hit"),
            None,
            Some("hit")
        ]
    );
    assert!(String::from_utf8_lossy(&responses[0].1).contains(&format!("42-5.ts?token={token}")));
    assert_eq!(responses[2].1, PLAYLIST.as_bytes());
    // Every answer but the last kept the connection, as it said; the last asked to close it.
    for (head, _) in &responses[..requests.len() - 1] {
        assert!(!head.contains("connection: close"), "{head}");
    }
    assert!(responses[requests.len() - 1]
        .0
        .contains("connection: close"));
    assert_closed(connection).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_request_behind_an_offer_the_proxy_reads_is_answered_after_it() {
    let answer = "v=0\r\ns=answer\r\n";
    let api = ScriptedOrigin::start(Script::Send(
        format!(
            "HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        )
        .into_bytes(),
    ))
    .await;
    let proxy = ProxyBuilder::new(api.addr)
        .with(&format!("[webrtc]\napi_port = {}", api.addr.port()))
        .start()
        .await;
    let offer = "v=0\r\ns=offer\r\n";
    let requests = [
        format!(
            "POST /rtc/v1/whep/?app=live&stream=42&token={} HTTP/1.1\r\nHost: viewer\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            token(42),
            offer.len()
        ),
        get("/nope"),
    ];
    let (responses, _connection) = pipeline(proxy.addr, &requests, requests.len()).await;
    let statuses: Vec<u16> = responses.iter().map(|(head, _)| status(head)).collect();
    assert_eq!(statuses, [201, 404]);
    assert_eq!(responses[0].1, answer.as_bytes());
    assert!(api.heads()[0].ends_with(offer), "{}", api.heads()[0]);
}

#[tokio::test]
async fn pipelined_admin_requests_are_all_answered_in_order() {
    let origin = ScriptedOrigin::start(Script::Close).await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let requests = [
        get("/healthz"),
        get("/viewers"),
        get("/healthz"),
        get("/nope"),
    ];
    let (responses, mut connection) = pipeline(proxy.admin, &requests, requests.len()).await;
    let statuses: Vec<u16> = responses.iter().map(|(head, _)| status(head)).collect();
    assert_eq!(statuses, [200, 200, 200, 404]);
    assert_eq!(responses[0].1, b"ok\n");
    // The connection carries on.
    connection
        .get_mut()
        .write_all(get("/healthz").as_bytes())
        .await
        .unwrap();
    assert_eq!(status(&next_response(&mut connection).await.0), 200);
}

#[tokio::test]
async fn a_body_left_unread_ends_the_connection_and_its_answer_says_so() {
    let proxy = ProxyBuilder::new(free_addr()).start().await;
    let playlist = format!("/live/42.m3u8?token={}", token(42));
    for body in [
        "Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let requests = [
            format!("POST {playlist} HTTP/1.1\r\nHost: viewer\r\n{body}"),
            get("/nope"),
        ];
        let (responses, connection) = pipeline(proxy.addr, &requests, 1).await;
        let (head, _) = &responses[0];
        assert_eq!(status(head), 405, "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert_closed(connection).await;
    }
}

#[tokio::test]
async fn a_failure_that_ends_the_connection_says_so_to_the_requests_behind_it() {
    // Nothing listens at the origin: a ranged segment, which goes through Pingora's proxy
    // path, fails there, and the connection is not reused after it.
    let proxy = ProxyBuilder::new(free_addr()).start().await;
    let token = token(42);
    let ranged = format!(
        "GET /live/42-1.ts?token={token} HTTP/1.1\r\nHost: viewer\r\nRange: bytes=0-0\r\n\r\n"
    );
    let requests = [ranged, get("/nope")];
    let (responses, connection) = pipeline(proxy.addr, &requests, 1).await;
    let (head, _) = &responses[0];
    assert_eq!(status(head), 502, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_closed(connection).await;
}
