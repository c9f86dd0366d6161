//! HTTP-FLV fan-out: one origin pull per stream, however many viewers watch it.
//!
//! The first viewer of a stream starts its pull; later viewers join it. The hub keeps the FLV
//! header, the latest metadata and codec configuration and the current GOP (from the last
//! video keyframe, bounded in bytes), and a joining viewer is sent those first, so its player
//! shows a picture at once instead of waiting for the next keyframe. The tags read from the
//! origin within one merge window go out as one batch, shared (`Bytes`) by all viewers, each
//! through its own bounded [`ViewerQueue`]: a viewer costs one wake-up and one write per
//! window rather than one per origin read (an origin sends a read or two per frame), which is
//! what keeps one pull on time for thousands of viewers when CPU is short — every viewer of a
//! stream waits on its pull, so a pull that falls behind stalls them all at once. The pull ends
//! a configured time after its last viewer leaves, or when the origin's stream ends, which ends
//! every viewer's response cleanly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, StatusCode};
use pingora::http::ResponseHeader;
use tokio::sync::{watch, Notify};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::origin::{OriginError, OriginRequest, OriginStream, OriginTimeouts};
use super::queue::{End, Next, QueueLimits, ViewerQueue};
use super::tags::{Batch, Demuxer, Item, TagKind};
use crate::metrics::Metrics;

/// Largest FLV tag accepted from an origin.
const MAX_TAG_BYTES: usize = 8 * 1024 * 1024;

/// How the hubs behave.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// How long a pull outlives its last viewer (a reconnecting viewer finds it warm).
    pub linger: Duration,
    /// Most bytes of the current GOP kept for joining viewers.
    pub gop_max_bytes: usize,
    /// How long tags read from the origin wait to go out together (zero: each read at once).
    pub merge: Duration,
    /// Bytes waiting that send a merge out before its window ends.
    pub merge_max_bytes: usize,
    /// Bounds of each viewer's queue.
    pub queue: QueueLimits,
    /// Origin connection timeouts.
    pub timeouts: OriginTimeouts,
}

/// Why a viewer could not join a stream.
#[derive(Debug, Clone)]
pub enum JoinError {
    /// The origin answered without a stream (404 while the stream is off, say).
    Status(StatusCode),
    /// The origin could not be reached or misbehaved.
    Origin {
        /// 504 rather than 502.
        timed_out: bool,
        /// What went wrong, for the log.
        reason: String,
    },
}

/// Every stream being pulled.
#[derive(Debug)]
pub struct Hubs {
    // A std mutex: held only to look up, insert or remove an entry.
    streams: Mutex<HashMap<String, Arc<Hub>>>,
    settings: HubSettings,
    metrics: Arc<Metrics>,
    // The pulls: each ends when its stream does or when nobody has watched for `linger`.
    tasks: TaskTracker,
}

#[derive(Debug, Clone)]
enum Start {
    Pending,
    Live(Arc<ResponseHeader>),
    Failed(JoinError),
}

#[derive(Debug)]
struct Hub {
    key: String,
    start: watch::Sender<Start>,
    state: Mutex<HubState>,
    /// Viewers came or went.
    viewers_changed: Notify,
}

#[derive(Debug, Default)]
struct HubState {
    viewers: HashMap<u64, Arc<ViewerQueue>>,
    next_viewer: u64,
    /// Since when nobody has watched.
    idle_since: Option<Instant>,
    flv_header: Option<Bytes>,
    /// The latest script data, video configuration and audio configuration.
    config: [Option<Bytes>; 3],
    /// The tags since the last keyframe, when within the byte bound.
    gop: Vec<Bytes>,
    gop_bytes: usize,
    gop_complete: bool,
    ended: bool,
}

impl HubState {
    fn config(&self) -> Vec<Bytes> {
        self.config.iter().flatten().cloned().collect()
    }

    fn remember(&mut self, batch: &Batch, gop_max_bytes: usize) {
        for (kind, bytes) in batch.config_tags() {
            let slot = match kind {
                TagKind::Script => 0,
                TagKind::VideoConfig => 1,
                _ => 2,
            };
            self.config[slot] = Some(bytes);
        }
        let from_keyframe = match batch.keyframe_offset() {
            Some(at) => {
                self.gop.clear();
                self.gop_bytes = 0;
                self.gop_complete = true;
                batch.bytes.slice(at..)
            }
            None => batch.bytes.clone(),
        };
        if !self.gop_complete {
            return;
        }
        if self.gop_bytes + from_keyframe.len() > gop_max_bytes {
            // Too long a GOP to keep: joiners wait for the next keyframe instead.
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_complete = false;
            return;
        }
        self.gop_bytes += from_keyframe.len();
        self.gop.push(from_keyframe);
    }
}

/// A viewer's place in a stream, taken before the origin has answered so that it sees the
/// stream from its very start; leaving (dropping it) tells the hub.
#[derive(Debug)]
struct Registration {
    hub: Arc<Hub>,
    id: u64,
    queue: Arc<ViewerQueue>,
}

/// A viewer of a stream the origin is sending.
#[derive(Debug)]
pub struct Subscription {
    registration: Registration,
    /// The origin's response head, for the viewer's own.
    pub head: Arc<ResponseHeader>,
}

impl Subscription {
    /// The next bytes for this viewer.
    pub async fn next(&self) -> Next {
        self.registration.queue.next().await
    }

    /// More bytes for this viewer if some are queued now.
    pub fn try_next(&self) -> Option<Bytes> {
        self.registration.queue.try_next()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        state.viewers.remove(&self.id);
        if state.viewers.is_empty() {
            state.idle_since = Some(Instant::now());
        }
        drop(state);
        self.hub.viewers_changed.notify_one();
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Hubs {
    /// No streams yet.
    pub fn new(settings: HubSettings, metrics: Arc<Metrics>) -> Hubs {
        Hubs {
            streams: Mutex::new(HashMap::new()),
            settings,
            metrics,
            tasks: TaskTracker::new(),
        }
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<String, Arc<Hub>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the stream `key` (starting its pull with `request` if nobody watches it yet) and
    /// waits until the origin has answered.
    pub async fn join(
        self: &Arc<Self>,
        key: &str,
        request: OriginRequest,
    ) -> Result<Subscription, JoinError> {
        // A hub that ended between lookup and registration is replaced: try twice.
        for _ in 0..2 {
            let hub = self.hub_for(key, &request);
            let registration = match self.register(&hub) {
                Ok(registration) => registration,
                // The pull already failed: its verdict is this viewer's too.
                Err(Some(err)) => return Err(err),
                // The stream ended just now: join a new pull.
                Err(None) => continue,
            };
            let mut start = hub.start.subscribe();
            let head = loop {
                let current = start.borrow_and_update().clone();
                match current {
                    Start::Live(head) => break head,
                    Start::Failed(err) => return Err(err),
                    Start::Pending => {}
                }
                if start.changed().await.is_err() {
                    return Err(JoinError::Origin {
                        timed_out: false,
                        reason: "stream pull stopped".to_owned(),
                    });
                }
            };
            return Ok(Subscription { registration, head });
        }
        Err(JoinError::Origin {
            timed_out: false,
            reason: "stream ended while joining".to_owned(),
        })
    }

    fn hub_for(self: &Arc<Self>, key: &str, request: &OriginRequest) -> Arc<Hub> {
        let mut streams = self.streams();
        if let Some(hub) = streams.get(key) {
            if !hub.lock().ended {
                return hub.clone();
            }
        }
        let hub = Arc::new(Hub {
            key: key.to_owned(),
            start: watch::Sender::new(Start::Pending),
            state: Mutex::new(HubState::default()),
            viewers_changed: Notify::new(),
        });
        streams.insert(key.to_owned(), hub.clone());
        drop(streams);
        let hubs = self.clone();
        let pulled = hub.clone();
        let request = request.clone();
        self.tasks
            .spawn(async move { hubs.pull(pulled, request).await });
        hub
    }

    fn register(&self, hub: &Arc<Hub>) -> Result<Registration, Option<JoinError>> {
        let queue = Arc::new(ViewerQueue::new(self.settings.queue));
        let mut state = hub.lock();
        if state.ended {
            return Err(match &*hub.start.borrow() {
                Start::Failed(err) => Some(err.clone()),
                _ => None,
            });
        }
        if let Some(header) = &state.flv_header {
            queue.push_start(header.clone());
        }
        for tag in state.config() {
            queue.push_start(tag);
        }
        if state.gop_complete {
            for bytes in &state.gop {
                queue.push_start(bytes.clone());
            }
        } else {
            queue.skip_to_keyframe();
        }
        let id = state.next_viewer;
        state.next_viewer += 1;
        state.viewers.insert(id, queue.clone());
        state.idle_since = None;
        let viewers = state.viewers.len();
        drop(state);
        self.metrics.flv_viewers_per_pull.observe(viewers as f64);
        hub.viewers_changed.notify_one();
        Ok(Registration {
            hub: hub.clone(),
            id,
            queue,
        })
    }

    /// The pull of one stream, from the origin's answer to its end.
    async fn pull(self: Arc<Self>, hub: Arc<Hub>, request: OriginRequest) {
        let _active = crate::metrics::ActiveGauge::start(&self.metrics.flv_pulls_active);
        let end = match self.open(&hub, &request).await {
            Some(stream) => self.relay(&hub, stream).await,
            None => End::OriginFailed,
        };
        let mut state = hub.lock();
        state.ended = true;
        for queue in state.viewers.values() {
            queue.end(end);
        }
        drop(state);
        let mut streams = self.streams();
        if streams.get(&hub.key).is_some_and(|h| Arc::ptr_eq(h, &hub)) {
            streams.remove(&hub.key);
        }
        debug!(stream = %hub.key, ?end, "FLV pull ended");
    }

    async fn open(&self, hub: &Hub, request: &OriginRequest) -> Option<OriginStream> {
        let failed = |err: JoinError| {
            hub.lock().ended = true;
            hub.start.send_replace(Start::Failed(err));
            None
        };
        let opened = match OriginStream::open(request, self.settings.timeouts).await {
            Ok(opened) => opened,
            Err(err) => {
                warn!(stream = %hub.key, error = %err, "FLV origin request failed");
                return failed(JoinError::Origin {
                    timed_out: err.is_timeout(),
                    reason: err.to_string(),
                });
            }
        };
        self.metrics
            .upstream_latency(crate::route::Kind::Flv, opened.latency.as_secs_f64());
        if opened.head.status != StatusCode::OK || opened.stream.is_empty() {
            return failed(JoinError::Status(opened.head.status));
        }
        let mut head = opened.head;
        // Each viewer gets a different byte count (the cached GOP, skips): no length applies.
        head.remove_header(&header::CONTENT_LENGTH);
        hub.start.send_replace(Start::Live(Arc::new(head)));
        Some(opened.stream)
    }

    async fn relay(&self, hub: &Hub, mut stream: OriginStream) -> End {
        let mut demuxer = Demuxer::new(MAX_TAG_BYTES);
        let mut merge = MergeWindow::new(self.settings.merge, self.settings.merge_max_bytes);
        loop {
            let idle_until = hub
                .lock()
                .idle_since
                .map(|since| since + self.settings.linger);
            let chunk = tokio::select! {
                chunk = stream.next_chunk() => chunk,
                () = sleep_until(merge.due()) => {
                    merge.sent();
                    if let Err(end) = self.publish_complete(hub, &mut demuxer) {
                        return end;
                    }
                    continue;
                }
                () = hub.viewers_changed.notified() => continue,
                () = sleep_until(idle_until) => {
                    if hub.lock().viewers.is_empty() {
                        return End::Finished;
                    }
                    continue;
                }
            };
            let data = match chunk {
                Ok(Some(data)) => data,
                Ok(None) => {
                    info!(stream = %hub.key, "FLV stream ended at the origin");
                    // What is still merging goes out before the end.
                    return match self.publish_complete(hub, &mut demuxer) {
                        Ok(()) => End::Finished,
                        Err(end) => end,
                    };
                }
                Err(err) => {
                    warn!(stream = %hub.key, error = %err, "FLV origin failed mid-stream");
                    return End::OriginFailed;
                }
            };
            demuxer.push(&data);
            if merge.arrived(Instant::now(), demuxer.pending()) {
                if let Err(end) = self.publish_complete(hub, &mut demuxer) {
                    return end;
                }
            }
        }
    }

    /// Hands every complete item the demuxer holds to the viewers.
    fn publish_complete(&self, hub: &Hub, demuxer: &mut Demuxer) -> Result<(), End> {
        loop {
            match demuxer.next_item() {
                Ok(Some(item)) => self.publish(hub, item),
                Ok(None) => return Ok(()),
                Err(err) => {
                    warn!(stream = %hub.key, error = %OriginError::Protocol("not FLV"), cause = %err, "FLV origin sent something else");
                    return Err(End::OriginFailed);
                }
            }
        }
    }

    fn publish(&self, hub: &Hub, item: Item) {
        let mut state = hub.lock();
        let batch = match item {
            Item::Header(header) => {
                for queue in state.viewers.values() {
                    queue.push_start(header.clone());
                }
                state.flv_header = Some(header);
                return;
            }
            Item::Batch(batch) => batch,
        };
        state.remember(&batch, self.settings.gop_max_bytes);
        let config = state.config();
        let now = Instant::now();
        let mut dropped = 0;
        let mut cut = 0;
        for queue in state.viewers.values() {
            let offered = queue.offer(&batch, &config, now);
            dropped += offered.dropped_tags;
            cut += u64::from(offered.cut);
        }
        drop(state);
        if dropped > 0 {
            self.metrics.flv_tags_dropped.inc_by(dropped);
        }
        if cut > 0 {
            self.metrics.flv_viewers_cut.inc_by(cut);
        }
    }

    /// Pulls running now.
    pub fn active(&self) -> usize {
        self.streams().len()
    }
}

/// When what the origin sent goes out: a window opens with the first bytes read after the last
/// send and closes `window` later, or as soon as `max_bytes` wait.
#[derive(Debug)]
struct MergeWindow {
    window: Duration,
    max_bytes: usize,
    due: Option<Instant>,
}

impl MergeWindow {
    fn new(window: Duration, max_bytes: usize) -> MergeWindow {
        MergeWindow {
            window,
            max_bytes,
            due: None,
        }
    }

    /// Bytes arrived at `now` and `pending` wait: whether to send them now.
    fn arrived(&mut self, now: Instant, pending: usize) -> bool {
        if self.window.is_zero() || pending >= self.max_bytes {
            self.due = None;
            return true;
        }
        self.due.get_or_insert(now + self.window);
        false
    }

    /// When the open window closes.
    fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The window's bytes were sent.
    fn sent(&mut self) {
        self.due = None;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_a_window_go_out_together_and_a_full_window_at_once() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut merge = MergeWindow::new(ms(100), 64 * 1024);
        assert_eq!(merge.due(), None);
        // The first read opens the window; later ones join it without moving its end.
        assert!(!merge.arrived(t0, 500));
        assert!(!merge.arrived(t0 + ms(40), 4_000));
        assert!(!merge.arrived(t0 + ms(90), 9_000));
        assert_eq!(merge.due(), Some(t0 + ms(100)));
        merge.sent();
        assert_eq!(merge.due(), None);
        // The next read opens the next window.
        assert!(!merge.arrived(t0 + ms(130), 300));
        assert_eq!(merge.due(), Some(t0 + ms(230)));
        // Enough bytes go out at once.
        assert!(merge.arrived(t0 + ms(150), 64 * 1024));
        assert_eq!(merge.due(), None);
        // Without a window every read goes out as it comes.
        let mut unmerged = MergeWindow::new(Duration::ZERO, 64 * 1024);
        assert!(unmerged.arrived(t0, 1));
        assert_eq!(unmerged.due(), None);
    }
}
