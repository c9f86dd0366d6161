//! [`HeadGuard`]: the connection as Pingora's HTTP/1 parser reads it, one bounded request head
//! at a time (see the [module documentation](super)).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, IO,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

use super::{Handoff, HeadLimits};
use crate::metrics::{HeadRefusal, Metrics};

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
pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// What a new guard waits for first.
#[derive(Debug, Clone, Copy)]
pub(super) enum Waiting {
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
pub(super) enum Framing {
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
    /// Where the guard's connection goes when it is handed off.
    pub(super) fn handoff(&self) -> &Handoff {
        &self.handoff
    }

    /// Whether nothing beyond the head of the request being answered has arrived (a pipelined
    /// request would be lost with the session's buffer or the guard), and `is_suitable` takes
    /// the connection beneath.
    pub(super) fn holds_only_its_head(&self, is_suitable: impl FnOnce(&Stream) -> bool) -> bool {
        !self.read_past_head
            && matches!(self.phase, Phase::Idle(None))
            && self.inner.as_ref().is_some_and(is_suitable)
    }

    /// Guards a connection: a freshly accepted one's first head must arrive within the
    /// timeout; one a takeover gave back waits for its next request as a kept-alive one does.
    pub(super) fn new(
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
pub(super) fn framing(head: &[u8]) -> Framing {
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
pub(super) enum HeadState {
    Partial,
    /// Complete, ending at this offset.
    Complete(usize),
    TargetTooLong,
    TooLarge,
}

pub(super) fn inspect(collected: &[u8], searched_from: usize, limits: &HeadLimits) -> HeadState {
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
