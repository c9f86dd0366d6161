//! One viewer's HTTP-FLV response body, written straight on its connection.
//!
//! A viewer admitted and joined to its stream's hub has its response head written by Pingora's
//! HTTP session, which then hands the connection off ([`crate::downstream::hand_off`]) and
//! ends: the body runs for hours, and the session's state would be most of what a viewer
//! costs. [`FlvResponse`] holds what the body needs — the hub's subscription, the token's
//! cut-off, the revocations to watch, the viewer's counters — and writes the hub's shared
//! batches as they come until the stream, the viewer, the token or a revocation ends it. Then
//! it counts and logs the request as the HTTP session would have.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf as _, Bytes};
use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tracing::{debug, info, warn};

use livegate_core::token::Grant;

use super::hub::Subscription;
use super::queue::{End, Next};
use crate::downstream::Takeover;
use crate::drain::InFlightGuard;
use crate::gate::CLIENT_CLOSED;
use crate::metrics::{ActiveGauge, Metrics, RequestClass};
use crate::revocation::RevocationList;
use crate::viewers::FlvViewer;

/// Most pieces of the queue one write takes.
const WRITE_MAX_PIECES: usize = 64;

/// A write takes more queued pieces until it holds this many bytes.
const WRITE_MAX_BYTES: usize = 256 * 1024;

/// An FLV response whose head has gone out: the rest of its connection.
#[derive(Debug)]
pub struct FlvResponse {
    /// The viewer's place in its stream's hub.
    pub subscription: Subscription,
    /// The grant of the token it was admitted with (none for a CDN puller).
    pub grant: Option<Grant>,
    /// When the response ends because its token expired (when configured).
    pub deadline: Option<tokio::time::Instant>,
    /// A viewer that takes no data this long is dropped.
    pub write_timeout: Duration,
    /// Revocations that end the response when they cover its token.
    pub revocations: Arc<RevocationList>,
    /// Where the request is counted when it ends.
    pub metrics: Arc<Metrics>,
    /// The request's class for `requests_total`.
    pub class: RequestClass,
    /// The request path (without its query, which holds the token), for the log.
    pub path: Box<str>,
    /// The stream, for the log.
    pub stream_key: Box<str>,
    /// Counts the viewer in its room while the response runs.
    pub counted: Option<FlvViewer>,
    /// Counts the response in `flv_sessions_active`.
    pub active: Option<ActiveGauge>,
    /// Keeps a graceful shutdown waiting for the response.
    pub in_flight: Option<InFlightGuard>,
}

/// How the response ended.
enum Ending {
    /// The origin's stream ended, and with it the body.
    Finished,
    /// The viewer closed its side, sent data, or stopped taking it.
    ViewerGone(String),
    /// The token expired.
    Expired,
    /// A revocation covers the token.
    Revoked,
    /// The viewer stayed behind the stream too long.
    Lagged,
    /// The origin failed mid-stream.
    Origin,
}

#[async_trait]
impl Takeover for FlvResponse {
    async fn serve(self: Box<Self>, mut stream: Stream) -> Option<Stream> {
        let mut sent = 0u64;
        let ending = self.relay(&mut stream, &mut sent).await;
        // The body is close-delimited: closing the connection completes it.
        drop(stream);
        self.finish(ending, sent);
        None
    }
}

impl FlvResponse {
    /// Writes what the hub hands over until something ends the response.
    async fn relay(&self, stream: &mut Stream, sent: &mut u64) -> Ending {
        let mut revocations = self.revocations.watch();
        // A revocation that arrived between the admission and this watch changed nothing the
        // watch will report: look once now.
        if self.is_revoked() {
            return Ending::Revoked;
        }
        // Anything the viewer sends (or its closing) ends the response: a player sends nothing
        // on an FLV response, and the connection carries no other request after it.
        let mut probe = [0u8; 1];
        loop {
            let next = tokio::select! {
                next = self.subscription.next() => next,
                read = stream.read(&mut probe) => {
                    return Ending::ViewerGone(match read {
                        Ok(0) => "viewer closed the connection".to_owned(),
                        Ok(_) => "viewer sent data on an FLV response".to_owned(),
                        Err(err) => err.to_string(),
                    });
                }
                () = sleep_until(self.deadline) => return Ending::Expired,
                Ok(()) = revocations.changed() => {
                    if self.is_revoked() {
                        return Ending::Revoked;
                    }
                    continue;
                }
            };
            match next {
                Next::Data(first) => {
                    // What else is queued goes out in the same write: a joining viewer's GOP,
                    // or a backlog after a slow moment, costs one system call, not one a batch.
                    let mut bytes = first.len();
                    let written = match self.subscription.try_next() {
                        // The usual case, a viewer that keeps up: one merge window's batch.
                        None => self.write(stream, &mut [first]).await,
                        Some(second) => {
                            bytes += second.len();
                            let mut ready = vec![first, second];
                            while bytes < WRITE_MAX_BYTES && ready.len() < WRITE_MAX_PIECES {
                                let Some(more) = self.subscription.try_next() else {
                                    break;
                                };
                                bytes += more.len();
                                ready.push(more);
                            }
                            self.write(stream, &mut ready).await
                        }
                    };
                    if let Err(reason) = written {
                        return Ending::ViewerGone(reason);
                    }
                    *sent += bytes as u64;
                }
                // The body is close-delimited: closing the connection completes it.
                Next::End(End::Finished) => return Ending::Finished,
                Next::End(End::Lagged) => return Ending::Lagged,
                Next::End(End::OriginFailed) => return Ending::Origin,
            }
        }
    }

    async fn write(&self, stream: &mut Stream, ready: &mut [Bytes]) -> Result<(), String> {
        let write = async {
            write_all_vectored(stream, ready).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("writing body, timeout: {:?}", self.write_timeout)),
        }
    }

    fn is_revoked(&self) -> bool {
        self.grant
            .is_some_and(|grant| self.revocations.is_revoked(grant.room_id, grant.expires_at))
    }

    /// Counts and logs the request: the status its response went out with (200), or 499 when
    /// the viewer left or was cut before the stream ended.
    fn finish(&self, ending: Ending, sent: u64) {
        let room = self.grant.map(|g| g.room_id);
        let (status, error) = match ending {
            Ending::Finished => (200, None),
            Ending::ViewerGone(reason) => {
                debug!(error = %reason, "FLV viewer left");
                (CLIENT_CLOSED, Some(reason))
            }
            Ending::Expired => {
                info!(room, "ending FLV response: play token expired");
                (200, None)
            }
            Ending::Revoked => {
                // Like an expired token: the proxy's decision, not a failure.
                self.metrics.flv_viewers_revoked.inc();
                info!(room, "ending FLV response: the room revoked its token");
                (200, None)
            }
            Ending::Lagged => {
                info!(stream = %self.stream_key, "FLV viewer cut: it stayed behind the stream");
                (CLIENT_CLOSED, Some("FLV viewer cut for lag".to_owned()))
            }
            Ending::Origin => {
                self.metrics.cut_short(self.class);
                warn!(
                    stream = %self.stream_key,
                    path = %self.path,
                    "FLV response ended: the origin failed mid-stream"
                );
                (200, Some("FLV origin failed mid-stream".to_owned()))
            }
        };
        self.metrics.request_done(self.class, status, sent);
        debug!(
            method = "GET",
            path = %self.path,
            status,
            body_bytes = sent,
            room,
            error,
            "request done"
        );
    }
}

/// Writes every piece of `ready`, in as few system calls as the socket allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    stream: &mut W,
    mut ready: &mut [Bytes],
) -> io::Result<()> {
    loop {
        while ready.first().is_some_and(Bytes::is_empty) {
            ready = &mut ready[1..];
        }
        if ready.is_empty() {
            return Ok(());
        }
        let mut written = if ready.len() == 1 {
            stream.write(&ready[0]).await?
        } else {
            let slices: Vec<IoSlice<'_>> = ready.iter().map(|piece| IoSlice::new(piece)).collect();
            stream.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let piece = &mut ready[0];
            let taken = written.min(piece.len());
            piece.advance(taken);
            written -= taken;
            if piece.is_empty() {
                ready = &mut ready[1..];
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Takes at most `limit` bytes a call, the way a full socket buffer does.
    struct Trickle {
        limit: usize,
        written: Vec<u8>,
        calls: usize,
    }

    impl Trickle {
        fn take(&mut self, slices: &[IoSlice<'_>]) -> usize {
            self.calls += 1;
            let mut room = self.limit;
            for slice in slices {
                let part = &slice[..slice.len().min(room)];
                self.written.extend_from_slice(part);
                room -= part.len();
                if room == 0 {
                    break;
                }
            }
            self.limit - room
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(self.take(&[IoSlice::new(buf)])))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            slices: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(self.take(slices)))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn short_writes_send_every_piece_once_and_in_order() {
        let pieces: Vec<Bytes> = ["abc", "", "defgh", "i", "", "jklmnopq"]
            .into_iter()
            .map(|piece| Bytes::from_static(piece.as_bytes()))
            .collect();
        let mut out = Trickle {
            limit: 3,
            written: Vec::new(),
            calls: 0,
        };
        let mut ready = pieces.clone();
        write_all_vectored(&mut out, &mut ready).await.unwrap();
        assert_eq!(out.written, b"abcdefghijklmnopq");
        // 17 bytes three at a time: a call per three bytes, none spent on the empty pieces.
        assert_eq!(out.calls, 6);
    }

    #[tokio::test]
    async fn a_socket_that_takes_nothing_is_an_error() {
        let mut out = Trickle {
            limit: 0,
            written: Vec::new(),
            calls: 0,
        };
        let mut ready = vec![Bytes::from_static(b"abc")];
        let err = write_all_vectored(&mut out, &mut ready).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }
}
