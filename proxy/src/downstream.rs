//! Bounds on what a viewer may send before its request is looked at.
//!
//! Pingora reads request heads of up to 1 MiB, with a timeout per read rather than per head: 200
//! connections each trickling an unfinished megabyte of headers hold 200 MiB, and a header sent
//! at one byte per second keeps a connection forever. [`HeadGuard`] sits between the socket and
//! Pingora's HTTP/1 parser and holds each request head back until its blank line has arrived,
//! within a byte budget and a deadline; a head over budget is answered 431 (414 when the request
//! target alone is too long), one too slow 408, and the connection is closed. Pingora never sees
//! the refused bytes, so it has nothing to log.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
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
        let guarded = HeadGuard::new(stream, self.limits, self.metrics.clone());
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const RESPONSE_414: &[u8] =
    b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const RESPONSE_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Bytes read from the socket at a time while a head is collected.
const READ_STEP: usize = 4096;

enum Phase {
    /// Between requests: nothing of the next head has arrived. The first request of a
    /// connection is already on the clock; later ones start it with their first byte (the
    /// wait before that is Pingora's keep-alive timeout).
    Idle(Option<Pin<Box<Sleep>>>),
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
    inner: Stream,
    phase: Phase,
    limits: HeadLimits,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HeadGuard {
    /// Guards a freshly accepted connection: its first head must arrive within the timeout.
    pub fn new(inner: Stream, limits: HeadLimits, metrics: Arc<Metrics>) -> HeadGuard {
        HeadGuard {
            inner,
            phase: Phase::Idle(Some(Box::pin(sleep(limits.timeout)))),
            limits,
            metrics,
        }
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
                Phase::Idle(Some(deadline)) | Phase::Head { deadline, .. } => {
                    deadline.as_mut().poll(cx).is_ready()
                }
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
            match Pin::new(&mut self.inner).poll_read(cx, &mut read) {
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
                other => {
                    self.phase = other;
                    return Poll::Ready(Ok(()));
                }
            };
            let searched_from = collected.len().saturating_sub(3);
            collected.extend_from_slice(arrived);
            match inspect(&collected, searched_from, &self.limits) {
                HeadState::Complete => {
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
    Complete,
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
        Some(end) if end <= limits.max_head_bytes => HeadState::Complete,
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
        loop {
            match &mut this.phase {
                Phase::Body => return Pin::new(&mut this.inner).poll_read(cx, buf),
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
                    while !response.is_empty() {
                        match Pin::new(&mut this.inner).poll_write(cx, response) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                            Poll::Ready(Ok(n)) => *response = &response[n..],
                        }
                    }
                    this.phase = Phase::Closed;
                }
                // End of stream, with nothing of the refused head given to the parser.
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::Idle(_) | Phase::Head { .. } => match this.poll_collect(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Ready(Ok(())) => {}
                },
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
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && matches!(this.phase, Phase::Body) {
            // A response is going out: whatever the viewer sends next starts a new head.
            this.phase = Phase::Idle(None);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && matches!(this.phase, Phase::Body) {
            this.phase = Phase::Idle(None);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        self.inner.set_socket_digest(socket_digest);
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

    const LIMITS: HeadLimits = HeadLimits {
        max_target_bytes: 64,
        max_head_bytes: 256,
        timeout: Duration::from_secs(10),
    };

    #[test]
    fn heads_are_complete_at_their_blank_line() {
        assert_eq!(
            inspect(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0, &LIMITS),
            HeadState::Complete
        );
        assert_eq!(
            inspect(b"GET /a HTTP/1.1\nHost: x\n\n", 0, &LIMITS),
            HeadState::Complete
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
