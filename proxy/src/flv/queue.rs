//! One viewer's share of a stream: a queue bounded in bytes. A viewer that falls behind is not
//! allowed to slow the pull or grow memory: its backlog is dropped and it skips ahead to the next
//! keyframe (so it resumes on a picture it can decode, timestamps still increasing); one that
//! stays behind longer than the configured lag is cut.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::tags::Batch;

/// Entries a drained queue keeps room for: a viewer that keeps up holds one batch or two.
const KEPT_CAPACITY: usize = 8;

/// Why a viewer's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The origin's stream ended (the publisher stopped): a clean end.
    Finished,
    /// The origin failed mid-stream.
    OriginFailed,
    /// The viewer stayed behind longer than `flv.max_lag_ms`.
    Lagged,
}

/// What a viewer is sent next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Bytes to write.
    Data(Bytes),
    /// Nothing more; why.
    End(End),
}

/// What [`ViewerQueue::offer`] did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// Tags the viewer will not receive.
    pub dropped_tags: u64,
    /// The viewer was cut for lag by this offer.
    pub cut: bool,
}

/// Bounds of a viewer queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Most bytes waiting for one viewer.
    pub max_bytes: usize,
    /// Longest time a viewer may stay behind before it is cut.
    pub max_lag: Duration,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Bytes>,
    bytes: usize,
    /// Dropping everything until the next keyframe.
    skipping: bool,
    /// Since when the viewer has been behind (reset when it empties its queue).
    behind_since: Option<Instant>,
    end: Option<End>,
}

/// The queue between the hub (which offers batches) and one viewer's response (which takes
/// them).
#[derive(Debug)]
pub struct ViewerQueue {
    // A std mutex: offers and takes are short, never await, and each queue has one writer
    // (the hub, under its own lock) and one reader (the viewer's response).
    state: Mutex<State>,
    wake: Notify,
    limits: QueueLimits,
}

impl ViewerQueue {
    /// An empty queue.
    pub fn new(limits: QueueLimits) -> ViewerQueue {
        ViewerQueue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues bytes the viewer must receive whatever its lag (its start: header, metadata,
    /// codec configuration, the current GOP).
    pub fn push_start(&self, bytes: Bytes) {
        let mut state = self.lock();
        state.bytes += bytes.len();
        state.items.push_back(bytes);
        drop(state);
        self.wake.notify_one();
    }

    /// Makes the viewer skip to the next keyframe (it joined when no GOP was cached).
    pub fn skip_to_keyframe(&self) {
        self.lock().skipping = true;
    }

    /// Offers the next batch of the stream. `config` is the stream's latest metadata and codec
    /// configuration, re-sent to a viewer that resumes after skipping.
    pub fn offer(&self, batch: &Batch, config: &[Bytes], now: Instant) -> Offered {
        let mut state = self.lock();
        if state.end.is_some() {
            return Offered::default();
        }
        let mut offered = Offered::default();
        if !state.skipping && state.bytes + batch.bytes.len() > self.limits.max_bytes {
            // Behind: drop the backlog rather than buffer it, and resume at a keyframe.
            offered.dropped_tags += state.items.len() as u64;
            state.items.clear();
            state.bytes = 0;
            state.skipping = true;
            let since = *state.behind_since.get_or_insert(now);
            if now.duration_since(since) > self.limits.max_lag {
                state.end = Some(End::Lagged);
                offered.cut = true;
                drop(state);
                self.wake.notify_one();
                return offered;
            }
        }
        if state.skipping {
            let Some(at) = batch.keyframe_offset() else {
                offered.dropped_tags += batch.tags.len() as u64;
                return offered;
            };
            offered.dropped_tags += batch.tags.iter().filter(|t| t.offset < at).count() as u64;
            state.skipping = false;
            for tag in config {
                state.bytes += tag.len();
                state.items.push_back(tag.clone());
            }
            let rest = batch.bytes.slice(at..);
            state.bytes += rest.len();
            state.items.push_back(rest);
        } else {
            state.bytes += batch.bytes.len();
            state.items.push_back(batch.bytes.clone());
        }
        drop(state);
        self.wake.notify_one();
        offered
    }

    /// Ends the viewer's stream once what is queued has been sent.
    pub fn end(&self, end: End) {
        let mut state = self.lock();
        state.end.get_or_insert(end);
        drop(state);
        self.wake.notify_one();
    }

    /// The next bytes to send, waiting for them. A viewer cut for lag ends at once; otherwise
    /// the queue is drained before the end is reported.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut state = self.lock();
                if state.end == Some(End::Lagged) {
                    return Next::End(End::Lagged);
                }
                if let Some(bytes) = Self::pop(&mut state) {
                    return Next::Data(bytes);
                }
                if let Some(end) = state.end {
                    return Next::End(end);
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a wake between the check and
            // this await is not lost.
            self.wake.notified().await;
        }
    }

    /// The next bytes to send if some are queued now (and the viewer was not cut), without
    /// waiting: what a writer adds to the write it is about to make.
    pub fn try_next(&self) -> Option<Bytes> {
        let mut state = self.lock();
        if state.end == Some(End::Lagged) {
            return None;
        }
        Self::pop(&mut state)
    }

    fn pop(state: &mut State) -> Option<Bytes> {
        let bytes = state.items.pop_front()?;
        state.bytes -= bytes.len();
        if state.items.is_empty() {
            // A viewer's queue is long only right after it joins (the cached GOP) or while it
            // catches up; kept at that size for hours it would be a large share of the
            // viewer's memory.
            if state.items.capacity() > KEPT_CAPACITY {
                state.items.shrink_to(KEPT_CAPACITY);
            }
            if !state.skipping {
                // Caught up.
                state.behind_since = None;
            }
        }
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tags::{Demuxer, Item, FILE_HEADER};

    fn batches() -> Vec<Batch> {
        // GOPs of one keyframe and three inter frames, 1000 bytes of data each.
        let mut input = FILE_HEADER.to_vec();
        for gop in 0..4u32 {
            for frame in 0..4u32 {
                let mut data = vec![if frame == 0 { 0x17 } else { 0x27 }, 0x01];
                data.resize(1000, 0);
                input.extend(crate::flv::tags::encode_tag(
                    9,
                    gop * 160 + frame * 40,
                    &data,
                ));
            }
        }
        let mut demuxer = Demuxer::new(1 << 20);
        let mut out = Vec::new();
        // One tag per batch, as small origin reads produce.
        for piece in input.chunks(50) {
            demuxer.push(piece);
            while let Some(item) = demuxer.next_item().unwrap() {
                if let Item::Batch(batch) = item {
                    out.push(batch);
                }
            }
        }
        out
    }

    fn take_all(queue: &ViewerQueue) -> Vec<Bytes> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        queue.end(End::Finished);
        runtime.block_on(async {
            while let Next::Data(bytes) = queue.next().await {
                out.push(bytes);
            }
        });
        out
    }

    #[test]
    fn a_drained_queue_gives_back_the_room_of_its_join_backlog() {
        let queue = ViewerQueue::new(QueueLimits {
            max_bytes: 1 << 20,
            max_lag: Duration::from_secs(10),
        });
        for _ in 0..200 {
            queue.push_start(Bytes::from_static(b"tag"));
        }
        assert!(queue.lock().items.capacity() >= 200);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..200 {
                assert!(matches!(queue.next().await, Next::Data(_)));
            }
        });
        assert!(queue.lock().items.capacity() <= KEPT_CAPACITY);
    }

    #[test]
    fn what_is_queued_can_be_taken_without_waiting_until_the_viewer_is_cut() {
        let queue = ViewerQueue::new(QueueLimits {
            max_bytes: 2500,
            max_lag: Duration::from_secs(1),
        });
        assert_eq!(queue.try_next(), None);
        let batches = batches();
        let start = Instant::now();
        queue.offer(&batches[0], &[], start);
        queue.offer(&batches[1], &[], start);
        assert_eq!(queue.try_next(), Some(batches[0].bytes.clone()));
        assert_eq!(queue.try_next(), Some(batches[1].bytes.clone()));
        assert_eq!(queue.try_next(), None);
        // Cut for lag: nothing more is handed out, whatever is queued.
        let mut cut = false;
        for (i, batch) in batches.iter().enumerate() {
            cut |= queue
                .offer(batch, &[], start + Duration::from_millis(400 * i as u64))
                .cut;
        }
        assert!(cut);
        queue.push_start(Bytes::from_static(b"late"));
        assert_eq!(queue.try_next(), None);
    }

    #[test]
    fn a_fast_viewer_gets_everything_in_order() {
        let queue = ViewerQueue::new(QueueLimits {
            max_bytes: 1 << 20,
            max_lag: Duration::from_secs(10),
        });
        let batches = batches();
        let now = Instant::now();
        for batch in &batches {
            assert_eq!(queue.offer(batch, &[], now), Offered::default());
        }
        let got = take_all(&queue);
        assert_eq!(got.len(), batches.len());
        assert!(got.iter().zip(&batches).all(|(g, b)| *g == b.bytes));
    }

    #[test]
    fn a_slow_viewer_skips_to_the_next_keyframe_then_is_cut() {
        let queue = ViewerQueue::new(QueueLimits {
            max_bytes: 2500,
            max_lag: Duration::from_secs(10),
        });
        let batches = batches();
        let start = Instant::now();
        let config = [Bytes::from_static(b"CONFIG")];
        let mut dropped = 0;
        // Nobody reads: after two frames the queue is full.
        for batch in &batches[..6] {
            dropped += queue.offer(batch, &config, start).dropped_tags;
        }
        // Frames 0,1 queued; 2 overflows (backlog dropped, skipping), 3 skipped, 4 is the next
        // GOP's keyframe: resume with the configuration first; 5 queued.
        assert_eq!(dropped, 4);
        let got = take_all(&queue);
        assert_eq!(got.len(), 3);
        assert_eq!(&got[0][..], b"CONFIG");
        assert_eq!(got[1], batches[4].bytes);
        assert_eq!(got[2], batches[5].bytes);

        // Still behind past the lag limit: cut.
        let queue = ViewerQueue::new(QueueLimits {
            max_bytes: 2500,
            max_lag: Duration::from_secs(1),
        });
        let mut cut = false;
        for (i, batch) in batches.iter().enumerate() {
            cut |= queue
                .offer(
                    batch,
                    &config,
                    start + Duration::from_millis(400 * i as u64),
                )
                .cut;
        }
        assert!(cut);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(queue.next()), Next::End(End::Lagged));
    }
}
