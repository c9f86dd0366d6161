//! A response on its way from the origin into the cache, shared by every request waiting for it:
//! its head as soon as the origin has sent it, then its body a piece at a time as it arrives.
//!
//! The fill holds the pieces received so far — at most the size limit of one object, however
//! many requests read it, since each reader only keeps its place in them — and swaps them for
//! the one finished body when the origin is done. A reader that joins late starts at the first
//! piece; one that falls behind reads at its own pace without holding the fill back.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::{Cached, Outcome};
use crate::origin::{FetchError, OriginResponse, ResponseHead};

/// A response being read from the origin: its head, then its body.
pub trait Incoming: Send + 'static {
    /// The response head.
    fn head(&self) -> &ResponseHead;
    /// The next piece of the body; `None` at its end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, FetchError>> + Send;
}

impl Incoming for OriginResponse {
    fn head(&self) -> &ResponseHead {
        &self.head
    }

    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, FetchError>> + Send {
        OriginResponse::next_chunk(self)
    }
}

/// How far a fill has got.
#[derive(Debug, Default)]
pub(super) struct Progress {
    head: Option<Arc<ResponseHead>>,
    /// The body so far; emptied once `end` holds the whole of it.
    chunks: Vec<Bytes>,
    received: usize,
    end: Option<Outcome>,
}

/// The writing side of a fill, owned by the task that reads the origin.
#[derive(Debug)]
pub(super) struct Filling {
    progress: watch::Sender<Progress>,
}

impl Filling {
    pub(super) fn new() -> Filling {
        Filling {
            progress: watch::Sender::new(Progress::default()),
        }
    }

    /// A reader of this fill, from its first byte.
    pub(super) fn subscribe(&self) -> Waiting {
        Waiting {
            progress: self.progress.subscribe(),
        }
    }

    /// Reads `incoming` to its end, handing its head and every piece on as they arrive, and
    /// returns the head and the whole body.
    ///
    /// The piece that completes a body of known length is held back and reaches the readers
    /// with the finished body instead: a viewer that has every byte then finds the segment in
    /// the cache on its next request, not still on its way.
    pub(super) async fn run(
        &self,
        mut incoming: impl Incoming,
    ) -> Result<(Arc<ResponseHead>, Bytes), FetchError> {
        let head = Arc::new(incoming.head().clone());
        self.progress
            .send_modify(|progress| progress.head = Some(head.clone()));
        let mut held: Option<Bytes> = None;
        while let Some(chunk) = incoming.next_chunk().await? {
            if let Some(earlier) = held.take() {
                // More than the length promised: nothing to hold back for.
                self.publish(earlier);
            }
            let received = self.progress.borrow().received + chunk.len();
            if head.content_length == Some(received) {
                held = Some(chunk);
            } else {
                self.publish(chunk);
            }
        }
        let body = {
            let progress = self.progress.borrow();
            let pieces: Vec<&Bytes> = progress.chunks.iter().chain(held.as_ref()).collect();
            match pieces.as_slice() {
                [] => Bytes::new(),
                [only] => Bytes::clone(only),
                pieces => {
                    let length = pieces.iter().map(|piece| piece.len()).sum();
                    let mut body = BytesMut::with_capacity(length);
                    for piece in pieces {
                        body.extend_from_slice(piece);
                    }
                    body.freeze()
                }
            }
        };
        Ok((head, body))
    }

    fn publish(&self, chunk: Bytes) {
        self.progress.send_modify(|progress| {
            progress.received += chunk.len();
            progress.chunks.push(chunk);
        });
    }

    /// Ends the fill: every reader gets the rest from `outcome` (or its error), and the pieces
    /// are let go.
    pub(super) fn finish(&self, outcome: Outcome) {
        self.progress.send_modify(|progress| {
            progress.chunks = Vec::new();
            progress.end = Some(outcome);
        });
    }
}

/// A request waiting for a fill's head.
#[derive(Debug)]
pub(super) struct Waiting {
    progress: watch::Receiver<Progress>,
}

/// What a fill had to say once its head (or its end) was in.
pub(super) enum Started {
    /// The whole answer was already in.
    Done(Outcome),
    /// The head is in; the body is arriving.
    Arriving(Arriving),
}

impl Waiting {
    /// Waits for the head or the end. `None`: the fill stopped without either (its task was
    /// ended by shutdown).
    pub(super) async fn started(mut self) -> Option<Started> {
        let head = {
            let progress = self
                .progress
                .wait_for(|p| p.head.is_some() || p.end.is_some())
                .await
                .ok()?;
            if let Some(end) = &progress.end {
                return Some(Started::Done(end.clone()));
            }
            progress.head.clone()?
        };
        Some(Started::Arriving(Arriving {
            head,
            progress: self.progress,
            next_chunk: 0,
            sent: 0,
        }))
    }
}

/// A response still arriving from the origin, read from its first byte.
#[derive(Debug)]
pub struct Arriving {
    /// The origin's response head.
    pub head: Arc<ResponseHead>,
    progress: watch::Receiver<Progress>,
    next_chunk: usize,
    /// Body bytes handed out so far.
    sent: usize,
}

impl Arriving {
    /// The next piece of the body, as soon as the origin has sent it; `None` at the end. An
    /// origin that fails or cuts the body short makes this an error (nothing is cached then).
    pub async fn next(&mut self) -> Result<Option<Bytes>, Arc<FetchError>> {
        let next = self.next_chunk;
        let progress = self
            .progress
            .wait_for(|p| p.chunks.len() > next || p.end.is_some())
            .await
            .map_err(|_| Arc::new(FetchError::Abandoned))?;
        if let Some(chunk) = progress.chunks.get(next) {
            self.next_chunk += 1;
            self.sent += chunk.len();
            return Ok(Some(chunk.clone()));
        }
        match &progress.end {
            Some(Ok(whole)) if self.sent < whole.body.len() => {
                // The piece held back, and whatever this reader had not taken yet.
                let rest = whole
                    .body
                    .range_from(self.sent)
                    .map_err(|err| Arc::new(FetchError::CachedBody(err.to_string())))?;
                self.sent = whole.body.len();
                Ok(Some(rest))
            }
            Some(Ok(_)) => Ok(None),
            Some(Err(err)) => Err(err.clone()),
            None => Err(Arc::new(FetchError::Abandoned)),
        }
    }

    /// Waits for the whole answer.
    pub async fn whole(mut self) -> Result<Arc<Cached>, Arc<FetchError>> {
        let progress = self
            .progress
            .wait_for(|p| p.end.is_some())
            .await
            .map_err(|_| Arc::new(FetchError::Abandoned))?;
        match &progress.end {
            Some(end) => end.clone(),
            None => Err(Arc::new(FetchError::Abandoned)),
        }
    }
}
