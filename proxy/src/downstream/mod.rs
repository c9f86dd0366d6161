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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::metrics::Metrics;

mod guard;
#[cfg(test)]
mod tests;

pub use guard::HeadGuard;
use guard::Waiting;

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
    let handoff = guard.handoff();
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
    !guard.handoff().claimed.load(Ordering::Acquire) && guard.holds_only_its_head(is_suitable)
}
