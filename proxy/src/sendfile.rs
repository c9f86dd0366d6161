//! A cached segment sent from its sealed file by the kernel (`sendfile`), outside Pingora's
//! HTTP session.
//!
//! Writing a cached megabyte through the session copies it from the cache into the socket on
//! every request, and that copy is most of what a cache hit costs; nginx avoids it by sending
//! its cache files with `sendfile`. Here the session writes the response head, then hands the
//! connection off ([`crate::downstream::hand_off`]) to a [`SealedResponse`], which sends the
//! head and the sealed file's pages, counts the request as the session would have, and gives
//! the connection back for the viewer's next request.

use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as TcpConnection;
use pingora::protocols::Stream;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt as _, Interest};
use tracing::debug;

use crate::cache::Cached;
use crate::downstream::Takeover;
use crate::drain::InFlightGuard;
use crate::gate::CLIENT_CLOSED;
use crate::metrics::{Metrics, RequestClass};

/// The body of a segment response whose head the HTTP session has written (still buffered on
/// the connection).
#[derive(Debug)]
pub struct SealedResponse {
    /// The cache entry, whose body is a sealed file. Holding it keeps the file open.
    pub cached: Arc<Cached>,
    /// A viewer that takes no data this long is dropped.
    pub write_timeout: Duration,
    /// Whether the connection may carry the viewer's next request afterwards.
    pub keep_alive: bool,
    /// Where the request is counted when it ends.
    pub metrics: Arc<Metrics>,
    /// The request's class for `requests_total`.
    pub class: RequestClass,
    /// The request path (without its query, which holds the token), for the log.
    pub path: Box<str>,
    /// Keeps a graceful shutdown waiting for the response.
    pub in_flight: Option<InFlightGuard>,
}

#[async_trait]
impl Takeover for SealedResponse {
    async fn serve(self: Box<Self>, mut stream: Stream) -> Option<Stream> {
        let sent = self.send(&mut stream).await;
        let (status, sent, error) = match sent {
            Ok(sent) => {
                self.metrics.segments_sent_from_file.inc();
                (200, sent, None)
            }
            Err((sent, err)) => (CLIENT_CLOSED, sent, Some(err.to_string())),
        };
        self.metrics.request_done(self.class, status, sent);
        debug!(
            method = "GET",
            path = %self.path,
            status,
            body_bytes = sent,
            sent_from = "sealed file",
            error,
            "request done"
        );
        (error.is_none() && self.keep_alive).then_some(stream)
    }
}

impl SealedResponse {
    /// Sends the buffered head and the body; `Err` with what was sent when the viewer went.
    async fn send(&self, stream: &mut Stream) -> Result<u64, (u64, io::Error)> {
        let Some(file) = self.cached.body.sealed() else {
            return Err((
                0,
                io::Error::other("the cached body is not in a sealed file"),
            ));
        };
        tokio::time::timeout(self.write_timeout, stream.flush())
            .await
            .map_err(|_| timed_out(self.write_timeout))
            .and_then(|flushed| flushed)
            .map_err(|err| (0, err))?;
        let socket = socket_of(stream).map_err(|err| (0, err))?;
        let len = file.len() as u64;
        let mut offset = 0u64;
        while offset < len {
            let ready = tokio::time::timeout(self.write_timeout, socket.writable())
                .await
                .map_err(|_| (offset, timed_out(self.write_timeout)))?;
            let mut ready = ready.map_err(|err| (offset, err))?;
            let left = usize::try_from(len - offset).unwrap_or(usize::MAX);
            let sent = ready.try_io(|socket| {
                rustix::fs::sendfile(socket.get_ref(), file.fd(), Some(&mut offset), left)
                    .map_err(io::Error::from)
            });
            match sent {
                // The socket's buffer is full: wait for it to drain.
                Err(_would_block) => continue,
                Ok(Ok(0)) => return Err((offset, io::ErrorKind::WriteZero.into())),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err((offset, err)),
            }
        }
        Ok(len)
    }
}

fn timed_out(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("writing body, timeout: {after:?}"),
    )
}

/// Whether `stream` is a plain TCP connection, which [`SealedResponse`] can send a file on.
pub fn can_send_file(stream: &Stream) -> bool {
    stream.as_any().downcast_ref::<TcpConnection>().is_some()
}

/// A second descriptor of `stream`'s socket, registered for write readiness.
///
/// Pingora's connection does not lend its socket out, only the socket's number; a duplicate
/// made from it is the same socket (same buffers, same non-blocking mode) under a descriptor of
/// our own, which the runtime can watch beside Pingora's and which is closed when the response
/// is done.
fn socket_of(stream: &Stream) -> io::Result<AsyncFd<OwnedFd>> {
    let connection = stream
        .as_any()
        .downcast_ref::<TcpConnection>()
        .ok_or_else(|| io::Error::other("not a plain TCP connection"))?;
    let raw = connection.as_raw_fd();
    if raw < 0 {
        return Err(io::Error::other("the connection has no socket"));
    }
    // SAFETY: `raw` is the descriptor of the socket that `connection` owns and keeps open for
    // as long as it lives; `connection` is borrowed for the whole life of this borrowed
    // descriptor, which ends with the duplicate made from it.
    #[allow(unsafe_code)]
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let duplicate = borrowed.try_clone_to_owned()?;
    // SAFETY: the `OwnedFd` is open, is owned by the `AsyncFd` for its whole life and always
    // names the same descriptor.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register_with_interest(duplicate, Interest::WRITABLE) };
    registered.map_err(io::Error::from)
}
