//! Bounds on what a viewer may send before its request is looked at.
//!
//! Pingora reads request heads of up to 1 MiB, with a timeout per read rather than per head: 200
//! connections each trickling an unfinished megabyte of headers hold 200 MiB, and a header sent
//! at one byte per second keeps a connection forever. [`HeadGuard`] sits between the socket and
//! Pingora's HTTP/1 parser and holds each request head back until its blank line has arrived,
//! within a byte budget and a deadline; a head over budget is answered 431 (414 when the request
//! target alone is too long), one too slow 408, and the connection is closed. Pingora never sees
//! the refused bytes, so it has nothing to log.
//!
//! A request whose answer runs for hours on a connection of its own (an HTTP-FLV response)
//! need not keep Pingora's HTTP session for all that time: the session's futures, buffers and
//! header maps are most of what a connection costs. Once such a response's head has gone out,
//! the request path [hands the connection off](hand_off) to a [`Takeover`]; Pingora then
//! finishes its session without touching the connection again, and the connection's task serves
//! the rest of it with the takeover alone. A takeover that sends one response (a cached segment
//! sent from its file) gives the connection back, and its next request starts a new session.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, IO,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

use crate::metrics::{HeadRefusal, Metrics};

/// What a request head may cost.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Largest request target (path and query), in bytes.
    pub max_target_bytes: usize,
    /// Largest head (request line and headers), in bytes.
    pub max_head_bytes: usize,
    /// Longest time to receive a head.
    pub timeout: Duration,
}

/// Wraps a Pingora application so that every connection it serves goes through a
/// [`HeadGuard`].
pub struct Guarded<A> {
    inner: Arc<A>,
    limits: HeadLimits,
    metrics: Arc<Metrics>,
}

impl<A> Guarded<A> {
    /// Guards the connections of `inner`.
    pub fn new(inner: A, limits: HeadLimits, metrics: Arc<Metrics>) -> Guarded<A> {
        Guarded {
            inner: Arc::new(inner),
            limits,
            metrics,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut stream = stream;
        let mut waiting = Waiting::FirstHead;
        loop {
            let handoff = Arc::new(Handoff::default());
            let guarded = HeadGuard::new(
                stream,
                self.limits,
                self.metrics.clone(),
                handoff.clone(),
                waiting,
            );
            let reused = self.inner.process_new(Box::new(guarded), shutdown).await;
            if !handoff.claimed.load(Ordering::Acquire) {
                return reused;
            }
            // A guard handed back still holds the connection: dropping it passes it on.
            drop(reused);
            let (takeover, taken) = handoff.take()?;
            stream = takeover.serve(taken).await?;
            // Shutting down: the connection takes no further request.
            if *shutdown.borrow() {
                return None;
            }
            waiting = Waiting::KeptAlive;
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Serves the rest of a connection that its HTTP session handed off (see [`hand_off`]).
#[async_trait]
pub trait Takeover: Send {
    /// Serves `stream`, then gives it back if it may carry another request (it is then read
    /// as a new connection, its next head on the clock from the start); dropping it closes the
    /// connection.
    async fn serve(self: Box<Self>, stream: Stream) -> Option<Stream>;
}

/// Where a connection handed off waits for its [`Takeover`], between the request path and the
/// connection's task.
#[derive(Default)]
struct Handoff {
    /// Set once a takeover has claimed the connection: from then on the guard neither reads
    /// nor writes for the HTTP session.
    claimed: AtomicBool,
    parts: Mutex<Parts>,
}

/// What a hand-off brings together: the takeover from the request path, the connection from
/// the guard once the HTTP session has dropped it.
#[derive(Default)]
struct Parts {
    takeover: Option<Box<dyn Takeover>>,
    stream: Option<Stream>,
}

impl Handoff {
    fn parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Option<(Box<dyn Takeover>, Stream)> {
        let mut parts = self.parts();
        Some((parts.takeover.take()?, parts.stream.take()?))
    }
}

/// Hands the connection under an HTTP session (`session_stream`, Pingora's
/// `Session::stream()`) to `takeover`, which serves it once the session is finished. The session
/// must write nothing more and keep the connection no longer (no keep-alive): from now on its
/// reads see the end of the stream, its writes fail and its shutdown leaves the connection
/// open. Gives `takeover` back when the connection did not come through [`Guarded`] or was
/// handed off already.
pub fn hand_off(
    session_stream: Option<&Stream>,
    takeover: Box<dyn Takeover>,
) -> Result<(), Box<dyn Takeover>> {
    let Some(guard) = session_stream.and_then(|s| (**s).as_any().downcast_ref::<HeadGuard>())
    else {
        return Err(takeover);
    };
    let handoff = &guard.handoff;
    let mut parts = handoff.parts();
    if handoff.claimed.load(Ordering::Acquire) {
        return Err(takeover);
    }
    parts.takeover = Some(takeover);
    handoff.claimed.store(true, Ordering::Release);
    Ok(())
}

/// Whether the connection under an HTTP session can be handed off for one response and given
/// back afterwards: it came through [`Guarded`], is not handed off already, and the viewer has
/// sent nothing beyond the head of the request being answered (a pipelined request would be
/// lost with the session's buffer). `is_suitable` judges the connection beneath.
pub fn can_hand_off_one_response(
    session_stream: Option<&Stream>,
    is_suitable: impl FnOnce(&Stream) -> bool,
) -> bool {
    let Some(guard) = session_stream.and_then(|s| (**s).as_any().downcast_ref::<HeadGuard>())
    else {
        return false;
    };
    !guard.handoff.claimed.load(Ordering::Acquire)
        && !guard.read_past_head
        && guard.inner.as_ref().is_some_and(is_suitable)
}

fn handed_off() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection handed off")
}

const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const RESPONSE_414: &[u8] =
    b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const RESPONSE_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How long a connection a takeover gave back may wait for its next request's first byte: what
/// Pingora's HTTP session allows between requests.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// What a new guard waits for first.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// A fresh connection's first head, on the clock from the start.
    FirstHead,
    /// The next request on a connection a takeover gave back: up to [`KEEP_ALIVE`] for its
    /// first byte, then the head deadline.
    KeptAlive,
}

/// Bytes read from the socket at a time while a head is collected.
const READ_STEP: usize = 4096;

enum Phase {
    /// Between requests: nothing of the next head has arrived. The first request of a
    /// connection is already on the clock; later ones start it with their first byte (the
    /// wait before that is Pingora's keep-alive timeout).
    Idle(Option<Pin<Box<Sleep>>>),
    /// Between requests on a connection a takeover gave back: it closes if nothing arrives
    /// before the keep-alive runs out; the first byte starts the head's clock.
    KeptAlive(Pin<Box<Sleep>>),
    /// Part of a head has arrived.
    Head {
        collected: BytesMut,
        deadline: Pin<Box<Sleep>>,
    },
    /// A complete head, being handed to the parser.
    Release(Bytes),
    /// The request is being served: bytes pass through until a response is written.
    Body,
    /// Sending a refusal; then the connection reads as closed.
    Refusing(&'static [u8]),
    /// Nothing more is read.
    Closed,
}

/// A viewer connection whose request heads are bounded in size and time (see the module
/// documentation).
pub struct HeadGuard {
    /// Always there until the guard is dropped, which hands it on when it was handed off.
    inner: Option<Stream>,
    phase: Phase,
    limits: HeadLimits,
    metrics: Arc<Metrics>,
    handoff: Arc<Handoff>,
    /// Set once the session was given bytes beyond a request's head: the start of a pipelined
    /// request or a request body, which only the session's buffer holds.
    read_past_head: bool,
}

impl fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Drop for HeadGuard {
    fn drop(&mut self) {
        if self.handoff.claimed.load(Ordering::Acquire) {
            self.handoff.parts().stream = self.inner.take();
        }
    }
}

impl HeadGuard {
    /// Guards a connection: a freshly accepted one's first head must arrive within the
    /// timeout; one a takeover gave back waits for its next request as a kept-alive one does.
    fn new(
        inner: Stream,
        limits: HeadLimits,
        metrics: Arc<Metrics>,
        handoff: Arc<Handoff>,
        waiting: Waiting,
    ) -> HeadGuard {
        let phase = match waiting {
            Waiting::FirstHead => Phase::Idle(Some(Box::pin(sleep(limits.timeout)))),
            Waiting::KeptAlive => Phase::KeptAlive(Box::pin(sleep(KEEP_ALIVE))),
        };
        HeadGuard {
            inner: Some(inner),
            phase,
            limits,
            metrics,
            handoff,
            read_past_head: false,
        }
    }

    /// The connection, while the HTTP session may use it.
    fn io(&mut self) -> io::Result<Pin<&mut Stream>> {
        if self.handoff.claimed.load(Ordering::Acquire) {
            return Err(handed_off());
        }
        self.inner.as_mut().map(Pin::new).ok_or_else(handed_off)
    }

    fn refuse(&mut self, response: &'static [u8], reason: HeadRefusal) {
        self.metrics.head_refused(reason);
        self.phase = Phase::Refusing(response);
    }

    /// Reads into the head being collected until it is complete, refused, or the socket has
    /// nothing more for now.
    fn poll_collect(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let deadline_passed = match &mut self.phase {
                Phase::Idle(Some(deadline))
                | Phase::KeptAlive(deadline)
                | Phase::Head { deadline, .. } => deadline.as_mut().poll(cx).is_ready(),
                _ => false,
            };
            if deadline_passed {
                if matches!(self.phase, Phase::Head { .. }) {
                    self.refuse(RESPONSE_408, HeadRefusal::Timeout);
                } else {
                    // Connected and said nothing: just close.
                    self.phase = Phase::Closed;
                }
                return Poll::Ready(Ok(()));
            }
            let mut step = [0u8; READ_STEP];
            let mut read = ReadBuf::new(&mut step);
            match self.io()?.poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) => {}
            }
            let arrived = read.filled();
            if arrived.is_empty() {
                // The viewer closed; a half-sent head is dropped unseen.
                self.phase = Phase::Closed;
                return Poll::Ready(Ok(()));
            }
            let phase = std::mem::replace(&mut self.phase, Phase::Closed);
            let (mut collected, deadline) = match phase {
                Phase::Head {
                    collected,
                    deadline,
                } => (collected, deadline),
                Phase::Idle(deadline) => (
                    BytesMut::with_capacity(READ_STEP),
                    deadline.unwrap_or_else(|| Box::pin(sleep(self.limits.timeout))),
                ),
                Phase::KeptAlive(_) => (
                    BytesMut::with_capacity(READ_STEP),
                    Box::pin(sleep(self.limits.timeout)),
                ),
                other => {
                    self.phase = other;
                    return Poll::Ready(Ok(()));
                }
            };
            let searched_from = collected.len().saturating_sub(3);
            collected.extend_from_slice(arrived);
            match inspect(&collected, searched_from, &self.limits) {
                HeadState::Complete(end) => {
                    self.read_past_head |= collected.len() > end;
                    self.phase = Phase::Release(collected.freeze());
                    return Poll::Ready(Ok(()));
                }
                HeadState::TargetTooLong => {
                    self.refuse(RESPONSE_414, HeadRefusal::TargetTooLong);
                    return Poll::Ready(Ok(()));
                }
                HeadState::TooLarge => {
                    self.refuse(RESPONSE_431, HeadRefusal::TooLarge);
                    return Poll::Ready(Ok(()));
                }
                HeadState::Partial => {
                    self.phase = Phase::Head {
                        collected,
                        deadline,
                    };
                }
            }
        }
    }
}

/// How far a collected head has got.
#[derive(Debug, PartialEq, Eq)]
enum HeadState {
    Partial,
    /// Complete, ending at this offset.
    Complete(usize),
    TargetTooLong,
    TooLarge,
}

fn inspect(collected: &[u8], searched_from: usize, limits: &HeadLimits) -> HeadState {
    // The request target is the second word of the first line.
    let line_end = collected
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(collected.len());
    let line = &collected[..line_end];
    let target_len = line
        .split(|b| *b == b' ')
        .nth(1)
        .map_or(line.len(), <[u8]>::len);
    if target_len > limits.max_target_bytes {
        return HeadState::TargetTooLong;
    }
    let tail = &collected[searched_from..];
    let end = tail
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| searched_from + at + 4)
        .or_else(|| {
            // Bare-LF line endings, which the parser also accepts.
            tail.windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| searched_from + at + 2)
        });
    match end {
        Some(end) if end <= limits.max_head_bytes => HeadState::Complete(end),
        Some(_) => HeadState::TooLarge,
        None if collected.len() > limits.max_head_bytes => HeadState::TooLarge,
        None => HeadState::Partial,
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.handoff.claimed.load(Ordering::Acquire) {
            // The session's last look at the connection: nothing more comes for it.
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut this.phase {
                Phase::Body => {
                    let before = buf.filled().len();
                    let read = this.io()?.poll_read(cx, buf);
                    this.read_past_head |= buf.filled().len() > before;
                    return read;
                }
                Phase::Release(bytes) => {
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    bytes.advance(n);
                    if bytes.is_empty() {
                        this.phase = Phase::Body;
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Refusing(response) => {
                    let response = std::mem::take(response);
                    let mut left = response;
                    while !left.is_empty() {
                        match this.io()?.poll_write(cx, left) {
                            Poll::Pending => {
                                this.phase = Phase::Refusing(left);
                                return Poll::Pending;
                            }
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                            Poll::Ready(Ok(n)) => left = &left[n..],
                        }
                    }
                    this.phase = Phase::Closed;
                }
                // End of stream, with nothing of the refused head given to the parser.
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::Idle(_) | Phase::KeptAlive(_) | Phase::Head { .. } => {
                    match this.poll_collect(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                        Poll::Ready(Ok(())) => {}
                    }
                }
            }
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = this.io()?.poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && matches!(this.phase, Phase::Body) {
            // A response is going out: whatever the viewer sends next starts a new head.
            this.phase = Phase::Idle(None);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.handoff.claimed.load(Ordering::Acquire) {
            // What the session wrote went out before it handed the connection off.
            return Poll::Ready(Ok(()));
        }
        this.io()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.handoff.claimed.load(Ordering::Acquire) {
            // The connection stays open for the takeover.
            return Poll::Ready(Ok(()));
        }
        this.io()?.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = this.io()?.poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && matches!(this.phase, Phase::Body) {
            this.phase = Phase::Idle(None);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        if self.handoff.claimed.load(Ordering::Acquire) {
            // The connection stays open for the takeover.
            return;
        }
        if let Some(inner) = self.inner.as_mut() {
            inner.shutdown().await;
        }
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner
            .as_ref()
            .map_or_else(UniqueIDType::default, |s| s.id())
    }
}

impl Ssl for HeadGuard {}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner
            .as_ref()
            .map(|s| s.get_timing_digest())
            .unwrap_or_default()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.as_ref()?.get_proxy_digest()
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.as_ref()?.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        if let Some(inner) = self.inner.as_mut() {
            inner.set_socket_digest(socket_digest);
        }
    }
}

#[async_trait]
impl Peek for HeadGuard {}

// `IO` itself is implemented by Pingora for every type with the traits above.
const _: fn() = || {
    fn is_io<T: IO>() {}
    is_io::<HeadGuard>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
}
