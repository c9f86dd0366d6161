//! A connection's outbound queue, bounded in bytes: the room never waits for a socket, and a
//! socket that cannot keep up is closed instead of growing memory.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::close::Close;
use super::frame::Outgoing;

/// The outbound queue of one connection. Producers never block.
#[derive(Debug)]
pub struct Outbox {
    limit: usize,
    // A std mutex: held to push or take frames, never across an await.
    inner: Mutex<Inner>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Outgoing>,
    bytes: usize,
    close: Option<Close>,
}

impl Outbox {
    /// A queue holding at most `limit` bytes of frames.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `frame`; past the byte limit the connection is marked to close as too slow and
    /// the frame is dropped. Returns whether it was queued.
    pub fn push(&self, frame: Outgoing) -> bool {
        let mut inner = self.inner();
        if inner.close.is_some() {
            return false;
        }
        if inner.bytes + frame.len() > self.limit {
            inner.close = Some(Close::TooSlow);
            inner.frames.clear();
            inner.bytes = 0;
            drop(inner);
            self.ready.notify_one();
            return false;
        }
        inner.bytes += frame.len();
        inner.frames.push_back(frame);
        drop(inner);
        self.ready.notify_one();
        true
    }

    /// Marks the connection to close with `close` (the first reason wins).
    pub fn close(&self, close: Close) {
        let mut inner = self.inner();
        if inner.close.is_none() {
            inner.close = Some(close);
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// The reason to close, once set.
    pub fn closing(&self) -> Option<Close> {
        self.inner().close
    }

    /// Everything queued, or the reason to close; waits while there is neither. The queue's
    /// memory goes with the frames: an idle connection keeps none after a burst.
    pub async fn next(&self) -> Result<VecDeque<Outgoing>, Close> {
        loop {
            let notified = self.ready.notified();
            {
                let mut inner = self.inner();
                if let Some(close) = inner.close {
                    return Err(close);
                }
                if !inner.frames.is_empty() {
                    inner.bytes = 0;
                    return Ok(std::mem::take(&mut inner.frames));
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::Utf8Bytes;

    use super::*;

    fn frame(len: usize) -> Outgoing {
        Outgoing {
            offset: None,
            text: Utf8Bytes::from("x".repeat(len)),
        }
    }

    #[tokio::test]
    async fn a_full_queue_closes_instead_of_growing() {
        let outbox = Outbox::new(100);
        assert!(outbox.push(frame(60)));
        assert!(!outbox.push(frame(60)));
        assert_eq!(outbox.next().await.unwrap_err(), Close::TooSlow);
        assert!(!outbox.push(frame(1)), "nothing is queued once closing");
    }

    #[tokio::test]
    async fn taking_frames_frees_their_bytes() {
        let outbox = Outbox::new(100);
        assert!(outbox.push(frame(60)));
        assert_eq!(outbox.next().await.unwrap().len(), 1);
        assert!(outbox.push(frame(60)));
        assert_eq!(outbox.closing(), None);
    }
}
