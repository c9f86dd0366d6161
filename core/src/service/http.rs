//! Serving an axum [`Router`] to clients that may be slow, idle or hostile: every HTTP/1
//! connection has a deadline for its request head, a limit on how long it may sit idle
//! between requests and a cap on the head's size, so a client that trickles a header or
//! holds a connection open cannot keep it (and its buffer) forever.
//!
//! `axum::serve` sets none of these, and detaches a task per connection. Here each connection
//! is a task of the server's own [`JoinSet`]: on stop the listener closes, idle connections
//! close at once, requests in flight finish, and the server returns when the last connection
//! has ended (a [`Drain`](super::Drain) step bounds the wait; dropping the server aborts what
//! is left). Upgrades (WebSocket) and streamed responses (SSE) work as with `axum::serve`.
//!
//! HTTP/1 only: no client of these listeners speaks cleartext HTTP/2, and sniffing for its
//! preface (as hyper-util's `auto` builder does) would wait, with no deadline, for a client
//! that sends nothing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

/// The default of [`HttpLimits::header_timeout`], in milliseconds: the proxy's too.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// The default of [`HttpLimits::keep_alive_idle`], in milliseconds: longer than the idle
/// timeout of the reverse proxies and load balancers usually in front (60 s), so that they,
/// not this server, close a pooled connection, and never while sending it a request.
pub const DEFAULT_KEEP_ALIVE_IDLE_MS: u64 = 75_000;
/// The default of [`HttpLimits::max_header_bytes`]: room for cookies and bearer tokens.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long a connection may take over a request head and wait for the next request, and
/// how large a head may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest a client may take to send a request head: from the moment the connection is
    /// accepted for its first request, from the head's first byte for the requests after.
    /// Then the connection is closed.
    pub header_timeout: Duration,
    /// Longest a kept-alive connection may wait for the first byte of its next request
    /// before it is closed.
    pub keep_alive_idle: Duration,
    /// Largest request head (request line and headers), in bytes; a larger one is answered
    /// 431 and the connection closed.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            keep_alive_idle: Duration::from_millis(DEFAULT_KEEP_ALIVE_IDLE_MS),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then finishes the requests in
/// flight and returns once every connection has closed. Handlers can extract
/// `ConnectInfo<SocketAddr>`, the client's address.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, router.clone(), limits, stop.clone()));
                }
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    // Out of file descriptors, most likely: accepting again at once would
                    // spin; connections that end meanwhile free some.
                    tracing::warn!(error = %err, "cannot accept a connection, pausing for 1 s");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => reap(ended),
        }
    }
    drop(listener);
    while let Some(ended) = connections.join_next().await {
        reap(ended);
    }
    Ok(())
}

fn reap(ended: Result<(), tokio::task::JoinError>) {
    if let Err(err) = ended {
        if err.is_panic() {
            tracing::error!(error = %err, "an HTTP connection task panicked");
        }
    }
}

/// Errors that concern one connection only (the client went away before it was accepted).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let reads = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(CountedReads {
        stream,
        reads: reads.clone(),
    });
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        // A `Router` is always ready (its `poll_ready` answers `Ready` at once), so it can be
        // called without asking first.
        router.clone().call(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(HeadTimer {
            reads,
            limits,
            started: AtomicBool::new(false),
        })
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    let mut conn = std::pin::pin!(builder.serve_connection(io, service).with_upgrades());
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stop.cancelled() => {
            // Closes the connection if it is idle, else once the response in flight is sent.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = ended {
        // Clients that time out, send garbage or go away: theirs to fix, not an operator's.
        tracing::debug!(error = %err, client.addr = %peer, "HTTP connection ended with an error");
    }
}

/// The connection's socket, counting the reads that brought bytes: what tells the head timer
/// that the next request has begun.
struct CountedReads {
    stream: TcpStream,
    reads: Arc<AtomicU64>,
}

impl AsyncRead for CountedReads {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.reads.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for CountedReads {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The timer of one connection. hyper asks it for a sleep each time the connection starts
/// waiting for a request head, and closes the connection when that sleep ends first. hyper
/// alone would give the idle wait and the head the same deadline; this timer gives the wait
/// [`HttpLimits::keep_alive_idle`] and the head [`HttpLimits::header_timeout`] from its
/// first byte.
struct HeadTimer {
    reads: Arc<AtomicU64>,
    limits: HttpLimits,
    /// Whether the first request's wait has begun: that one counts as a head from the start,
    /// since a client opens a connection to send a request.
    started: AtomicBool,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadWait {
            reads: self.reads.clone(),
            reads_at_start: 0,
            header_timeout: duration,
            head_started: true,
            sleep: Box::pin(tokio::time::sleep(duration)),
        })
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        let first = !self.started.swap(true, Ordering::Relaxed);
        let wait = if first {
            self.limits.header_timeout
        } else {
            self.limits.keep_alive_idle
        };
        Box::pin(HeadWait {
            reads: self.reads.clone(),
            reads_at_start: self.reads.load(Ordering::Relaxed),
            header_timeout: self.limits.header_timeout,
            head_started: first,
            sleep: Box::pin(tokio::time::sleep(wait)),
        })
    }
}

/// One wait for a request head: idle until a read brings a byte, then the head's deadline.
/// hyper polls it right after each read that left the head incomplete, so the switch
/// happens when the first byte arrives.
struct HeadWait {
    reads: Arc<AtomicU64>,
    reads_at_start: u64,
    header_timeout: Duration,
    head_started: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.head_started && this.reads.load(Ordering::Relaxed) != this.reads_at_start {
            this.head_started = true;
            let deadline = tokio::time::Instant::now() + this.header_timeout;
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadWait {}
