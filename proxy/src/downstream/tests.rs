//! The guard and hand-offs, over in-memory and loopback connections.

use std::future::Future;

use pingora::protocols::Shutdown;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::guard::{framing, inspect, Framing, HeadState, KEEP_ALIVE};
use super::*;

/// Stands in for Pingora's HTTP session: reads a head, answers it, hands the connection off
/// and then does what a finishing session does.
struct Session;

#[async_trait]
impl ServerApp for Session {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].ends_with(b"\r\n\r\n"));
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        stream.flush().await.unwrap();
        assert!(hand_off(Some(&stream), Box::new(Body)).is_ok());
        assert!(
            hand_off(Some(&stream), Box::new(Body)).is_err(),
            "a connection is handed off once"
        );
        // The session's last moves leave the connection alone.
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
        assert!(stream.write_all(b"stray").await.is_err());
        stream.flush().await.unwrap();
        Shutdown::shutdown(&mut *stream).await;
        None
    }
}

struct Body;

#[async_trait]
impl Takeover for Body {
    async fn serve(self: Box<Self>, mut stream: Stream) -> Option<Stream> {
        stream.write_all(b"body").await.unwrap();
        stream.flush().await.unwrap();
        None
    }
}

/// Serves one connection through [`Guarded`] around `app`; the task's result says whether
/// nothing was left to reuse.
async fn serve_one_connection<A: ServerApp + Send + Sync + 'static>(
    app: A,
) -> (tokio::net::TcpStream, tokio::task::JoinHandle<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = livegate_core::telemetry::Registry::with_prefix("proxy");
    let metrics = Arc::new(Metrics::register(&mut registry));
    let app = Arc::new(Guarded::new(app, LIMITS, metrics));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        app.process_new(stream, &shutdown).await.is_none()
    });
    let viewer = tokio::net::TcpStream::connect(addr).await.unwrap();
    (viewer, server)
}

#[tokio::test]
async fn a_connection_handed_off_is_served_by_its_takeover_after_the_session() {
    let (mut viewer, server) = serve_one_connection(Session).await;
    viewer
        .write_all(b"GET /live/42.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    viewer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nbody");
    assert!(server.await.unwrap(), "nothing is left to reuse");
}

/// Answers every request on its connection with a head, then hands the connection to a
/// takeover that writes the body and gives the connection back.
struct OneResponseAtATime;

#[async_trait]
impl ServerApp for OneResponseAtATime {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return None;
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
            .await
            .unwrap();
        stream.flush().await.unwrap();
        assert!(hand_off(Some(&stream), Box::new(GivenBack)).is_ok());
        None
    }
}

struct GivenBack;

#[async_trait]
impl Takeover for GivenBack {
    async fn serve(self: Box<Self>, mut stream: Stream) -> Option<Stream> {
        stream.write_all(b"body").await.unwrap();
        stream.flush().await.unwrap();
        Some(stream)
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_given_back_waits_for_its_next_request_as_a_kept_alive_one() {
    let (mut viewer, server) = serve_one_connection(OneResponseAtATime).await;
    let request = b"GET /live/42-1.ts HTTP/1.1\r\nHost: x\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";
    let mut got = vec![0u8; response.len()];
    for pause in [Duration::ZERO, LIMITS.timeout * 3] {
        // Longer than a first head may take, shorter than the keep-alive.
        tokio::time::sleep(pause).await;
        viewer.write_all(request).await.unwrap();
        viewer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, response);
    }
    // Quiet past the keep-alive: the connection is closed.
    tokio::time::sleep(KEEP_ALIVE + Duration::from_secs(1)).await;
    let mut rest = Vec::new();
    viewer.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert!(server.await.unwrap());
}

#[tokio::test]
async fn a_connection_that_bypassed_the_guard_is_not_handed_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let connect = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
    let (_viewer, accepted) = tokio::join!(connect, listener.accept());
    let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(
        accepted.unwrap().0,
    ));
    assert!(hand_off(Some(&stream), Box::new(Body)).is_err());
    assert!(hand_off(None, Box::new(Body)).is_err());
}

const LIMITS: HeadLimits = HeadLimits {
    max_target_bytes: 64,
    max_head_bytes: 256,
    timeout: Duration::from_secs(10),
};

#[test]
fn heads_are_complete_at_their_blank_line() {
    assert_eq!(
        inspect(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0, &LIMITS),
        HeadState::Complete(28)
    );
    assert_eq!(
        inspect(b"GET /a HTTP/1.1\nHost: x\n\n", 0, &LIMITS),
        HeadState::Complete(25)
    );
    assert_eq!(
        inspect(b"GET /a HTTP/1.1\r\nHost: x\r\n", 0, &LIMITS),
        HeadState::Partial
    );
}

#[test]
fn long_targets_and_large_heads_are_refused() {
    let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(64));
    assert_eq!(
        inspect(long_target.as_bytes(), 0, &LIMITS),
        HeadState::TargetTooLong
    );
    // Before the request line is even complete.
    let unfinished = format!("GET /{}", "a".repeat(80));
    assert_eq!(
        inspect(unfinished.as_bytes(), 0, &LIMITS),
        HeadState::TargetTooLong
    );
    let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n", "p".repeat(300));
    assert_eq!(inspect(big.as_bytes(), 0, &LIMITS), HeadState::TooLarge);
    let complete_but_big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(300));
    assert_eq!(
        inspect(complete_but_big.as_bytes(), 0, &LIMITS),
        HeadState::TooLarge
    );
}

#[test]
fn a_head_ends_at_its_first_blank_line_whatever_follows() {
    let pipelined = b"GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(inspect(pipelined, 0, &LIMITS), HeadState::Complete(25));
}

#[test]
fn bodies_are_framed_by_their_declared_length() {
    let framing_of = |fields: &str| framing(format!("POST / HTTP/1.1\r\n{fields}\r\n").as_bytes());
    assert_eq!(framing_of("Host: x\r\n"), Framing::Empty);
    assert_eq!(framing_of("Content-Length: 0\r\n"), Framing::Empty);
    assert_eq!(framing_of("content-length:  12 \r\n"), Framing::Length(12));
    assert_eq!(
        framing_of("Content-Length: 5\r\nContent-Length: 5\r\n"),
        Framing::Length(5)
    );
    for unknown in [
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: \r\n",
    ] {
        assert_eq!(framing_of(unknown), Framing::Unknown, "{unknown:?}");
    }
}

const EMPTY_200: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// Stands in for Pingora's HTTP/1 session: answers every read with an empty response,
/// recording what each read brought and whether the connection could have been handed off
/// for that response.
#[derive(Default)]
struct Recording {
    reads: Mutex<Vec<(Vec<u8>, bool)>>,
}

#[async_trait]
impl ServerApp for Recording {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut buf = vec![0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return None;
            }
            let lendable = can_hand_off_one_response(Some(&stream), |_| true);
            self.reads
                .lock()
                .unwrap()
                .push((buf[..n].to_vec(), lendable));
            stream.write_all(EMPTY_200).await.unwrap();
            stream.flush().await.unwrap();
        }
    }
}

/// Serves one connection with a [`Recording`] session: `exchange` talks to it as the viewer;
/// once it is done, the session's reads are returned.
async fn record<F, Fut>(exchange: F) -> Vec<(Vec<u8>, bool)>
where
    F: FnOnce(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = livegate_core::telemetry::Registry::with_prefix("proxy");
    let metrics = Arc::new(Metrics::register(&mut registry));
    let recording = Arc::new(Recording::default());
    let app = Arc::new(Guarded {
        inner: recording.clone(),
        limits: LIMITS,
        metrics,
    });
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        app.process_new(stream, &shutdown).await
    });
    exchange(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert!(server.await.unwrap().is_none());
    let reads = recording.reads.lock().unwrap().clone();
    reads
}

/// Reads `count` empty responses off `viewer`.
async fn read_empty_responses(viewer: &mut tokio::net::TcpStream, count: usize) {
    let mut got = vec![0u8; EMPTY_200.len() * count];
    viewer.read_exact(&mut got).await.unwrap();
    assert_eq!(got, EMPTY_200.repeat(count));
}

#[tokio::test]
async fn pipelined_requests_reach_the_session_one_at_a_time() {
    let heads: [&[u8]; 3] = [
        b"GET /live/42.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /live/42-1.ts HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /live/42-2.ts HTTP/1.1\nHost: x\n\n",
    ];
    let reads = record(|mut viewer| async move {
        viewer.write_all(&heads.concat()).await.unwrap();
        read_empty_responses(&mut viewer, 3).await;
        // A request alone may have its connection lent out; the first two came with the
        // next one behind them.
        viewer.write_all(heads[0]).await.unwrap();
        read_empty_responses(&mut viewer, 1).await;
        viewer.shutdown().await.unwrap();
    })
    .await;
    let expected: Vec<(Vec<u8>, bool)> = [
        (heads[0], false),
        (heads[1], false),
        (heads[2], true),
        (heads[0], true),
    ]
    .iter()
    .map(|(head, lendable)| (head.to_vec(), *lendable))
    .collect();
    assert_eq!(reads, expected);
}

#[tokio::test]
async fn a_body_of_declared_length_goes_with_its_head_and_no_further() {
    let post = b"POST /rtc/v1/whep/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
    let get = b"GET /live/42.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n";
    let reads = record(|mut viewer| async move {
        // The body whole, with the next request behind it.
        viewer
            .write_all(&[&post[..], b"hello", get].concat())
            .await
            .unwrap();
        read_empty_responses(&mut viewer, 2).await;
        // The body in two parts, the next request arriving with the second.
        viewer
            .write_all(&[&post[..], b"he"].concat())
            .await
            .unwrap();
        read_empty_responses(&mut viewer, 1).await;
        viewer
            .write_all(&[&b"llo"[..], get].concat())
            .await
            .unwrap();
        read_empty_responses(&mut viewer, 2).await;
        viewer.shutdown().await.unwrap();
    })
    .await;
    let reads: Vec<Vec<u8>> = reads.into_iter().map(|(read, _)| read).collect();
    assert_eq!(
        reads,
        [
            [&post[..], b"hello"].concat(),
            get.to_vec(),
            [&post[..], b"he"].concat(),
            b"llo".to_vec(),
            get.to_vec(),
        ]
    );
}

/// Reads one head, then looks for the viewer leaving before answering, as a session does
/// while its answer is prepared.
struct ProbesBeforeAnswering;

#[async_trait]
impl ServerApp for ProbesBeforeAnswering {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"GET /a "));
        let mut probe = [0u8; 1];
        assert_eq!(stream.read(&mut probe).await.unwrap(), 0);
        None
    }
}

#[tokio::test]
async fn a_pipelined_head_over_budget_is_not_answered_in_place_of_the_one_before() {
    let (mut viewer, server) = serve_one_connection(ProbesBeforeAnswering).await;
    let oversized = format!("GET /b HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(300));
    viewer
        .write_all(format!("GET /a HTTP/1.1\r\nHost: x\r\n\r\n{oversized}").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    viewer.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(server.await.unwrap());
}
