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
//! A client may send its next requests before it has read the answer to the first (pipelining,
//! RFC 9112 §9.3.2), so one read can bring several heads. The guard hands the parser one request
//! at a time, its head and a body of declared length, and keeps what follows as the start of the
//! next head, which goes through the same bounds. Pingora's sessions run with pipelining on: a
//! session that reads the next head while answering its own (its check for a viewer leaving)
//! keeps it for the session after it, and requests are answered in order.
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
/// back afterwards: it came through [`Guarded`], is not handed off already, and nothing has
/// arrived beyond the head of the request being answered (a pipelined request would be lost
/// with the session's buffer or the guard). `is_suitable` judges the connection beneath.
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
        && matches!(guard.phase, Phase::Idle(None))
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
    /// A complete head, and whatever of its body came with it, being handed to the parser.
    Release {
        bytes: Bytes,
        /// Whether `bytes` hold body bytes after the head.
        with_body: bool,
        /// Whether the parser has had any of `bytes` yet.
        begun: bool,
        /// What comes once the parser has had them all.
        then: AfterRelease,
    },
    /// The rest of a request body passes through: `Some(n)` bytes of a declared length still
    /// to come, `None` for a body only the parser can find the end of (chunked), which passes
    /// through until a response is written.
    Body(Option<u64>),
    /// Sending a refusal; then the connection reads as closed.
    Refusing(&'static [u8]),
    /// Nothing more is read.
    Closed,
}

/// What follows a released head.
enum AfterRelease {
    /// The rest of the body passes through ([`Phase::Body`]).
    Body(Option<u64>),
    /// The request is complete; these bytes, which arrived with it, start the next head.
    NextHead(BytesMut),
}

/// How a request head says its body ends (RFC 9112 §6.3), as far as the guard needs to know.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// No body: neither `Content-Length` (or zero) nor `Transfer-Encoding`.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding`, or lengths the parser will judge (and refuse): where the body ends is
    /// left to it.
    Unknown,
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
    /// Set when the session was given bytes beyond the head of the request it is answering: a
    /// request body, or the next head, taken before this request's response went out.
    read_past_head: bool,
    /// Whether a head was released on this connection before (the first one cannot be taken by
    /// an earlier request's session).
    released_a_head: bool,
    /// Whether a response went out since the last head was released.
    wrote_since_release: bool,
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
            released_a_head: false,
            wrote_since_release: false,
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
        self.phase = if self.released_a_head && !self.wrote_since_release {
            // A pipelined head, refused before the answer to the request ahead of it went out:
            // a refusal written now would read as that answer. The connection just closes, and
            // the client sends what it still needs again (RFC 9112 §9.3.2).
            Phase::Closed
        } else {
            Phase::Refusing(response)
        };
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
            self.examine(collected, searched_from, deadline);
            if !matches!(self.phase, Phase::Head { .. }) {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Looks at a head collected so far (its blank line searched for from `searched_from`) and
    /// moves on: to releasing it once complete, to a refusal once over budget, otherwise to
    /// waiting for more of it.
    fn examine(&mut self, collected: BytesMut, searched_from: usize, deadline: Pin<Box<Sleep>>) {
        match inspect(&collected, searched_from, &self.limits) {
            HeadState::Complete(end) => self.release(collected, end),
            HeadState::TargetTooLong => self.refuse(RESPONSE_414, HeadRefusal::TargetTooLong),
            HeadState::TooLarge => self.refuse(RESPONSE_431, HeadRefusal::TooLarge),
            HeadState::Partial => {
                self.phase = Phase::Head {
                    collected,
                    deadline,
                }
            }
        }
    }

    /// Hands the complete head at the start of `collected` (ending at `end`) to the parser,
    /// with whatever of its body arrived with it. What arrived after that body starts the next
    /// request: it is kept back, so that the parser never holds part of a head the guard has not
    /// judged.
    fn release(&mut self, mut collected: BytesMut, end: usize) {
        let arrived_body = collected.len() - end;
        let (released, rest_of_body) = match framing(&collected[..end]) {
            Framing::Empty => (end, None),
            Framing::Length(length) => match usize::try_from(length) {
                Ok(length) if length <= arrived_body => (end + length, None),
                _ => (collected.len(), Some(Some(length - arrived_body as u64))),
            },
            // Where such a body ends is the parser's to find: everything goes to it.
            Framing::Unknown => (collected.len(), Some(None)),
        };
        let next = collected.split_off(released);
        let then = match rest_of_body {
            Some(left) => AfterRelease::Body(left),
            None => AfterRelease::NextHead(next),
        };
        self.phase = Phase::Release {
            bytes: collected.freeze(),
            with_body: released > end,
            begun: false,
            then,
        };
    }

    /// Moves on once the parser has had the whole of a release.
    fn after_release(&mut self, then: AfterRelease) {
        match then {
            AfterRelease::Body(left) => self.phase = Phase::Body(left),
            AfterRelease::NextHead(next) if next.is_empty() => self.phase = Phase::Idle(None),
            // The next request came with this one: its head is on the clock from now.
            AfterRelease::NextHead(next) => {
                self.examine(next, 0, Box::pin(sleep(self.limits.timeout)));
            }
        }
    }

    /// Notes that a response is going out.
    fn wrote_response(&mut self) {
        self.wrote_since_release = true;
        if matches!(self.phase, Phase::Body(None)) {
            // Whatever the viewer sends after a body whose end only the parser knows starts a
            // new head.
            self.phase = Phase::Idle(None);
        }
    }
}

/// How a complete request `head` says its body ends.
fn framing(head: &[u8]) -> Framing {
    let mut length = None;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Framing::Unknown;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (length, parsed) {
                (None, Some(parsed)) => length = Some(parsed),
                (Some(seen), Some(parsed)) if seen == parsed => {}
                _ => return Framing::Unknown,
            }
        }
    }
    match length {
        None | Some(0) => Framing::Empty,
        Some(length) => Framing::Length(length),
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
    let crlf = tail
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| searched_from + at + 4);
    // Bare-LF line endings, which the parser also accepts. The first blank line of either kind
    // ends the head: the bytes after it may be the next request's.
    let lf = tail
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|at| searched_from + at + 2);
    let end = match (crlf, lf) {
        (Some(crlf), Some(lf)) => Some(crlf.min(lf)),
        (crlf, lf) => crlf.or(lf),
    };
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
                Phase::Body(None) => {
                    let before = buf.filled().len();
                    let read = this.io()?.poll_read(cx, buf);
                    this.read_past_head |= buf.filled().len() > before;
                    return read;
                }
                Phase::Body(Some(left)) => {
                    // Only the body: what follows it is the next head, which the guard judges.
                    let left = *left;
                    let room = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buf.remaining())
                        .min(READ_STEP);
                    let mut step = [0u8; READ_STEP];
                    let mut read = ReadBuf::new(&mut step[..room]);
                    match this.io()?.poll_read(cx, &mut read) {
                        Poll::Ready(Ok(())) => {}
                        other => return other,
                    }
                    let arrived = read.filled();
                    if arrived.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    buf.put_slice(arrived);
                    this.read_past_head = true;
                    match left - arrived.len() as u64 {
                        0 => this.after_release(AfterRelease::NextHead(BytesMut::new())),
                        left => this.phase = Phase::Body(Some(left)),
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Release {
                    bytes,
                    with_body,
                    begun,
                    then,
                } => {
                    if !*begun {
                        *begun = true;
                        // A head that goes to the parser before the previous request's response
                        // has gone out is read by that request's session, which keeps it for the
                        // next one: that session then holds bytes beyond its own head.
                        this.read_past_head =
                            *with_body || (this.released_a_head && !this.wrote_since_release);
                        this.released_a_head = true;
                        this.wrote_since_release = false;
                    }
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    bytes.advance(n);
                    if bytes.is_empty() {
                        let then = std::mem::replace(then, AfterRelease::Body(None));
                        this.after_release(then);
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
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote_response();
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
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote_response();
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

    #[test]
    fn a_head_ends_at_its_first_blank_line_whatever_follows() {
        let pipelined = b"GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(inspect(pipelined, 0, &LIMITS), HeadState::Complete(25));
    }

    #[test]
    fn bodies_are_framed_by_their_declared_length() {
        let framing_of =
            |fields: &str| framing(format!("POST / HTTP/1.1\r\n{fields}\r\n").as_bytes());
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
}
