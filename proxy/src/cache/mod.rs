//! The HLS cache: an origin shield in memory.
//!
//! Playlists are kept for a short time (half their target duration unless configured, never
//! longer than the origin's `max-age`), segments until they are evicted or their time is up.
//! Entries are keyed by path and the query parameters that select different origin content
//! (`cache.key_query_params`, the LL-HLS delivery directives by default; see [`mod@key`]), which are
//! also all a cached request passes on to the origin — the viewer's token never enters a key —
//! and bounded in bytes, evicted by TinyUFO (TinyLFU admission, S3-FIFO eviction).
//! Concurrent misses for one key make one origin request: the first starts a fill (in a task of
//! its own, so a viewer that leaves does not cancel it for the others) and every request for the
//! key reads the response from the fill as it arrives ([`fill`]), up to a lock timeout for its
//! head after which a waiting request asks the origin itself, as nginx's
//! `proxy_cache_lock_timeout` does. Only a response that arrived whole is kept. The cache holds
//! the origin's bytes; playlists are rewritten for each viewer on the way out. Large bodies are
//! kept in sealed memory files ([`body`]), which the kernel sends to viewers without a copy.

pub mod body;
pub mod fill;
pub mod key;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use tinyufo::TinyUfo;
use tokio_util::task::TaskTracker;

use crate::origin::{FetchError, Fetched, ResponseHead};
pub use body::Body;
pub use fill::Arriving;
use fill::{Filling, Incoming, Started, Waiting};
pub use key::{key, KeyParams};

/// TinyUFO weighs entries in 16-bit units: a unit is one KiB.
const WEIGHT_UNIT: usize = 1024;

/// The largest entry the weights can express (65535 KiB, rounded to 64 MiB).
pub const MAX_OBJECT_BYTES: usize = 64 * 1024 * 1024;

/// `[cache]`: playlists and segments kept in memory, one origin request per key however many
/// viewers ask at once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Serve HLS through the cache. Default true.
    pub enabled: bool,
    /// Most bytes kept. Default 268435456 (256 MiB).
    pub max_bytes: usize,
    /// Largest segment kept, in bytes; a larger one is relayed from the origin uncached.
    /// Default 16777216 (16 MiB), at most 64 MiB.
    pub max_object_bytes: usize,
    /// How long a request waits for another request's fetch of the same key before asking the
    /// origin itself, in milliseconds (nginx's `proxy_cache_lock_timeout`). Default 5000.
    pub lock_timeout_ms: u64,
    /// How long a playlist is kept, in milliseconds. Default: half its target duration (1000 for
    /// a playlist without one), never longer than the origin's `max-age`.
    pub playlist_ttl_ms: Option<u64>,
    /// How long a segment is kept, in seconds, never longer than the origin's `max-age`.
    /// Default 120: longer than any live window, short enough that an origin reusing segment
    /// names after a restart is not answered from an old stream for long.
    pub segment_ttl_s: u64,
    /// Whether the origin's `Cache-Control: no-cache` (or `max-age=0`) keeps an answer out of
    /// the cache. Default false: live origins put it on playlists for players (nginx's
    /// `add_header Cache-Control no-cache` is the usual setup), and the shield keeps a playlist
    /// only for its short TTL anyway. `no-store` and `private` are always honoured, and a
    /// `max-age` above zero always bounds the time.
    pub honor_no_cache: bool,
    /// The query parameters that select different content at the origin: the only ones kept
    /// in a cache key and passed on to the origin for a request answered through the cache
    /// (named once each, in this order, with their first value). Every other parameter is
    /// dropped, so that no viewer can make the shield fetch and keep a copy per made-up query;
    /// the token never enters a key (it goes on to the origin only with
    /// `token.forward_to_origin`). Default the LL-HLS delivery directives `_HLS_msn`,
    /// `_HLS_part` and `_HLS_skip` (without the first two, blocking reloads become ordinary
    /// ones); SRS with `hls_ctx on` needs `hls_ctx` too. With the cache off, the whole query
    /// goes on.
    pub key_query_params: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 256 * 1024 * 1024,
            max_object_bytes: 16 * 1024 * 1024,
            lock_timeout_ms: 5000,
            playlist_ttl_ms: None,
            segment_ttl_s: 120,
            honor_no_cache: false,
            key_query_params: key::DEFAULT_KEY_QUERY_PARAMS.map(String::from).to_vec(),
        }
    }
}

impl CacheConfig {
    /// Records problems under `cache`.
    pub fn validate(&self, problems: &mut livegate_core::config::Problems) {
        problems.check(
            self.max_bytes >= 1024 * 1024,
            "cache.max_bytes",
            "must be at least 1048576 (1 MiB)",
        );
        problems.check(
            (1024..=MAX_OBJECT_BYTES).contains(&self.max_object_bytes)
                && self.max_object_bytes <= self.max_bytes,
            "cache.max_object_bytes",
            "must be between 1024 and 67108864 (64 MiB), and at most cache.max_bytes",
        );
        for (i, name) in self.key_query_params.iter().enumerate() {
            let field = format!("cache.key_query_params[{i}]");
            if !key::is_plain_param_name(name) {
                problems.add(
                    field,
                    "must be a non-empty name of letters, digits, `-`, `.`, `_` or `~`",
                );
            } else if self.key_query_params[..i].contains(name) {
                problems.add(field, format!("`{name}` is listed twice"));
            }
        }
    }
}

/// A response kept for later viewers.
#[derive(Debug)]
pub struct Cached {
    /// The full key (TinyUFO keeps only a hash of it).
    pub key: String,
    /// The room it belongs to (for purges).
    pub room: Option<u64>,
    /// The origin's response head.
    pub head: Arc<ResponseHead>,
    /// The body.
    pub body: Body,
    /// When it was fetched.
    pub fetched_at: Instant,
    /// How long it may be served.
    pub ttl: Duration,
}

impl Cached {
    /// Seconds since it was fetched (the `Age` header).
    pub fn age_s(&self, now: Instant) -> u64 {
        now.duration_since(self.fetched_at).as_secs()
    }

    /// An answer that is not kept (the cache is off, or the origin forbids keeping it).
    pub fn uncached(room: Option<u64>, fetched: Fetched) -> Cached {
        Cached {
            key: String::new(),
            room,
            head: Arc::new(fetched.head),
            body: Body::Memory(fetched.body),
            fetched_at: Instant::now(),
            ttl: Duration::ZERO,
        }
    }

    /// Whole seconds it may still be served (for `Cache-Control: max-age`).
    pub fn remaining_s(&self, now: Instant) -> u64 {
        self.ttl
            .saturating_sub(now.duration_since(self.fetched_at))
            .as_secs()
    }

    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.fetched_at) < self.ttl
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cache had it.
    Hit,
    /// This request fetched it.
    Miss,
    /// Another request's fetch, waited for.
    Coalesced,
}

impl Source {
    /// The `X-Cache` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hit => "HIT",
            Source::Miss => "MISS",
            Source::Coalesced => "COALESCED",
        }
    }
}

/// The end of a fill, shared by everyone who read it.
type Outcome = Result<Arc<Cached>, Arc<FetchError>>;

/// Opens an origin response for the cache to read in a task of its own.
pub type Open<I> = Pin<Box<dyn Future<Output = Result<I, FetchError>> + Send>>;

/// How long a response may be kept, decided once it is in whole (`ZERO`: not kept).
pub type TtlFor = Box<dyn FnOnce(&ResponseHead, &Bytes) -> Duration + Send>;

/// An answer for a request: whole, or still arriving.
#[derive(Debug)]
pub enum Answer {
    /// The whole response (kept, or complete before this request looked).
    Whole(Arc<Cached>),
    /// The head is in and the body is arriving from the origin.
    Arriving(Arriving),
}

impl Answer {
    /// The origin's response head.
    pub fn head(&self) -> &ResponseHead {
        match self {
            Answer::Whole(cached) => &cached.head,
            Answer::Arriving(arriving) => &arriving.head,
        }
    }

    /// Waits for the whole response (playlists, which are rewritten whole).
    pub async fn whole(self) -> Result<Arc<Cached>, Arc<FetchError>> {
        match self {
            Answer::Whole(cached) => Ok(cached),
            Answer::Arriving(arriving) => arriving.whole().await,
        }
    }
}

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most bytes kept.
    pub max_bytes: usize,
    /// How long a request waits for the head of another's fetch of the same key before
    /// fetching itself.
    pub lock_timeout: Duration,
}

/// The cache.
pub struct HlsCache {
    entries: TinyUfo<String, Arc<Cached>>,
    // Std mutexes: held only to look up or change a map entry.
    inflight: Mutex<HashMap<String, Arc<Filling>>>,
    /// Keys by room, for purges (entries TinyUFO evicted are dropped from it as reported).
    rooms: Mutex<HashMap<Option<u64>, HashSet<String>>>,
    settings: CacheSettings,
    fills: TaskTracker,
}

impl std::fmt::Debug for HlsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsCache")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HlsCache {
    /// An empty cache.
    pub fn new(settings: CacheSettings) -> HlsCache {
        let units = (settings.max_bytes / WEIGHT_UNIT).max(1);
        HlsCache {
            entries: TinyUfo::new(units, (units / 64).max(16)),
            inflight: Mutex::new(HashMap::new()),
            rooms: Mutex::new(HashMap::new()),
            settings,
            fills: TaskTracker::new(),
        }
    }

    /// A fresh cached answer for `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        let entry = self.entries.get(&key.to_owned())?;
        (entry.key == key && entry.fresh(Instant::now())).then_some(entry)
    }

    /// The answer for `key`: from the cache, from a fill already running for it, or from a new
    /// fill reading `open` (kept for `ttl_for` of the response when it arrives whole). `room`
    /// tags the entry for purges. Returns once the response head is in; the body of an answer
    /// still arriving is read from the fill as the origin sends it.
    pub async fn get_or_fetch<I: Incoming, O: Fn() -> Open<I>>(
        self: &Arc<Self>,
        key: &str,
        room: Option<u64>,
        ttl_for: TtlFor,
        open: O,
    ) -> (Result<Answer, Arc<FetchError>>, Source) {
        self.lookup(key, room, ttl_for, open).answer().await
    }

    /// Decides at once where the answer for `key` comes from (starting a fill on a miss); see
    /// [`HlsCache::get_or_fetch`].
    pub fn lookup<'a, I: Incoming, O: Fn() -> Open<I>>(
        self: &Arc<Self>,
        key: &'a str,
        room: Option<u64>,
        ttl_for: TtlFor,
        open: O,
    ) -> Lookup<'a, O> {
        let found = match self.get(key) {
            Some(hit) => Found::Hit(hit),
            None => {
                let mut inflight = lock(&self.inflight);
                match inflight.get(key) {
                    Some(running) => Found::Waiting(running.subscribe(), Source::Coalesced),
                    None => {
                        let filling = Arc::new(Filling::new());
                        inflight.insert(key.to_owned(), filling.clone());
                        let waiting = filling.subscribe();
                        self.spawn_fill(filling, key, room, Some(ttl_for), open());
                        Found::Waiting(waiting, Source::Miss)
                    }
                }
            }
        };
        Lookup {
            cache: self.clone(),
            key,
            room,
            found,
            open,
        }
    }

    /// Reads `opening` into `filling` in a task of its own and keeps the result under `key`
    /// (`ttl_for: None`: not kept, and not in `inflight`).
    fn spawn_fill<I: Incoming>(
        self: &Arc<Self>,
        filling: Arc<Filling>,
        key: &str,
        room: Option<u64>,
        ttl_for: Option<TtlFor>,
        opening: Open<I>,
    ) {
        let cache = self.clone();
        let key = key.to_owned();
        self.fills.spawn(async move {
            let read = async {
                let incoming = opening.await?;
                filling.run(incoming).await
            };
            let registered = ttl_for.is_some();
            let outcome = match (read.await, ttl_for) {
                (Ok((head, body)), Some(ttl_for)) => {
                    let ttl = ttl_for(&head, &body);
                    Ok(cache.store(&key, room, head, body, ttl))
                }
                (Ok((head, body)), None) => Ok(Arc::new(Cached {
                    key: key.clone(),
                    room,
                    head,
                    body: Body::Memory(body),
                    fetched_at: Instant::now(),
                    ttl: Duration::ZERO,
                })),
                (Err(err), _) => Err(Arc::new(err)),
            };
            if registered {
                lock(&cache.inflight).remove(&key);
            }
            filling.finish(outcome);
        });
    }

    fn store(
        &self,
        key: &str,
        room: Option<u64>,
        head: Arc<ResponseHead>,
        body: Bytes,
        ttl: Duration,
    ) -> Arc<Cached> {
        // Only what is kept is worth a sealed file: an answer served once stays in memory.
        let body = if ttl.is_zero() {
            Body::Memory(body)
        } else {
            Body::keep(body)
        };
        let cached = Arc::new(Cached {
            key: key.to_owned(),
            room,
            head,
            body,
            fetched_at: Instant::now(),
            ttl,
        });
        if !ttl.is_zero() {
            let weight = (cached.body.len() + key.len()).div_ceil(WEIGHT_UNIT).max(1);
            let weight = u16::try_from(weight).unwrap_or(u16::MAX);
            let evicted = self
                .entries
                .force_put(key.to_owned(), cached.clone(), weight);
            let mut rooms = lock(&self.rooms);
            for gone in evicted {
                if let Some(keys) = rooms.get_mut(&gone.data.room) {
                    keys.remove(&gone.data.key);
                }
            }
            rooms.entry(room).or_default().insert(key.to_owned());
        }
        cached
    }

    /// Drops every entry of `room` (`None`: every entry). Returns how many were dropped.
    pub fn purge(&self, room: Option<u64>) -> usize {
        let mut rooms = lock(&self.rooms);
        let keys: Vec<String> = match room {
            Some(room) => rooms.remove(&Some(room)).into_iter().flatten().collect(),
            None => rooms.drain().flat_map(|(_, keys)| keys).collect(),
        };
        drop(rooms);
        keys.iter()
            .filter(|key| self.entries.remove(key).is_some())
            .count()
    }
}

/// Where an answer will come from, decided (see [`HlsCache::lookup`]).
pub struct Lookup<'a, O> {
    cache: Arc<HlsCache>,
    key: &'a str,
    room: Option<u64>,
    found: Found,
    open: O,
}

enum Found {
    Hit(Arc<Cached>),
    Waiting(Waiting, Source),
}

impl<I: Incoming, O: Fn() -> Open<I>> Lookup<'_, O> {
    /// Where the answer comes from (a request that gives up waiting for another's fill later
    /// fetches for itself: its answer then says [`Source::Miss`]).
    pub fn source(&self) -> Source {
        match &self.found {
            Found::Hit(_) => Source::Hit,
            Found::Waiting(_, source) => *source,
        }
    }

    /// The answer, once its head is in.
    pub async fn answer(self) -> (Result<Answer, Arc<FetchError>>, Source) {
        let (waiting, source) = match self.found {
            Found::Hit(hit) => return (Ok(Answer::Whole(hit)), Source::Hit),
            Found::Waiting(waiting, source) => (waiting, source),
        };
        // The request that started the fill waits for it as long as it takes (the fetch has
        // its own deadline); the others only up to the lock timeout.
        let patience = match source {
            Source::Coalesced => self.cache.settings.lock_timeout,
            _ => Duration::MAX,
        };
        if let Ok(Some(started)) = tokio::time::timeout(patience, waiting.started()).await {
            return (answer(started), source);
        }
        // The fill's head is slower than the lock timeout (or its task was ended): ask the
        // origin directly, without keeping the answer.
        let filling = Arc::new(Filling::new());
        let waiting = filling.subscribe();
        self.cache
            .spawn_fill(filling, self.key, self.room, None, (self.open)());
        let started = waiting
            .started()
            .await
            .unwrap_or(Started::Done(Err(Arc::new(FetchError::Abandoned))));
        (answer(started), Source::Miss)
    }
}

fn answer(started: Started) -> Result<Answer, Arc<FetchError>> {
    match started {
        Started::Done(outcome) => outcome.map(Answer::Whole),
        Started::Arriving(arriving) => Ok(Answer::Arriving(arriving)),
    }
}

/// How long answers are kept.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// Playlists: `None` for half their target duration.
    pub playlist: Option<Duration>,
    /// Segments.
    pub segment: Duration,
    /// Whether the origin's `no-cache` and `max-age=0` forbid keeping an answer at all.
    pub honor_no_cache: bool,
}

/// A playlist without a target duration (a multivariant one) is kept this long by default.
const DEFAULT_PLAYLIST_TTL: Duration = Duration::from_secs(1);

impl Freshness {
    /// How long this playlist answer may be kept: only a 200, never longer than the origin
    /// allows.
    pub fn playlist(&self, head: &ResponseHead, body: &[u8]) -> Duration {
        if head.status != StatusCode::OK {
            return Duration::ZERO;
        }
        let ours = self.playlist.unwrap_or_else(|| {
            target_duration(body).map_or(DEFAULT_PLAYLIST_TTL, |target| target / 2)
        });
        self.bounded_by_origin(ours, head)
    }

    /// How long this segment answer may be kept: only a 200, never longer than the origin
    /// allows.
    pub fn segment(&self, head: &ResponseHead) -> Duration {
        if head.status != StatusCode::OK {
            return Duration::ZERO;
        }
        self.bounded_by_origin(self.segment, head)
    }

    fn bounded_by_origin(&self, ours: Duration, head: &ResponseHead) -> Duration {
        match origin_max_age(head.cache_control.as_deref(), self.honor_no_cache) {
            Some(theirs) => ours.min(theirs),
            None => ours,
        }
    }
}

/// The longest time the origin allows a response to be kept: `Some(ZERO)` for `no-store` or
/// `private` (and for `no-cache` or `max-age=0` when `honor_no_cache`), `None` when it says
/// nothing that bounds it.
pub fn origin_max_age(cache_control: Option<&str>, honor_no_cache: bool) -> Option<Duration> {
    let value = cache_control?;
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        match lower.as_str() {
            "no-store" | "private" => return Some(Duration::ZERO),
            "no-cache" if honor_no_cache => return Some(Duration::ZERO),
            _ => {}
        }
        if let Some(seconds) = lower
            .strip_prefix("s-maxage=")
            .or_else(|| lower.strip_prefix("max-age="))
        {
            if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                if seconds == 0 && !honor_no_cache {
                    continue;
                }
                let seconds = Duration::from_secs(seconds);
                max_age = Some(max_age.map_or(seconds, |m: Duration| m.min(seconds)));
            }
        }
    }
    max_age
}

/// `#EXT-X-TARGETDURATION` of a media playlist.
pub fn target_duration(playlist: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(playlist).ok()?;
    text.lines().find_map(|line| {
        line.trim()
            .strip_prefix("#EXT-X-TARGETDURATION:")
            .and_then(|d| d.trim().parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(Duration::from_secs_f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::mpsc;

    fn ok_head() -> ResponseHead {
        ResponseHead {
            status: StatusCode::OK,
            content_type: None,
            location: None,
            cache_control: None,
            content_length: None,
        }
    }

    /// A response the test feeds: its head at once, each piece of the body when the test
    /// sends it, the end when the test drops its sender.
    struct Fed {
        head: ResponseHead,
        pieces: mpsc::UnboundedReceiver<Result<Bytes, FetchError>>,
    }

    impl Incoming for Fed {
        fn head(&self) -> &ResponseHead {
            &self.head
        }

        async fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
            self.pieces.recv().await.transpose()
        }
    }

    /// An origin whose one response the test feeds piece by piece, counting how often it is
    /// asked.
    struct FedOrigin {
        opened: Arc<AtomicUsize>,
        response: Arc<Mutex<Option<Fed>>>,
    }

    impl FedOrigin {
        fn new() -> (FedOrigin, mpsc::UnboundedSender<Result<Bytes, FetchError>>) {
            let (feed, pieces) = mpsc::unbounded_channel();
            let fed = Fed {
                head: ok_head(),
                pieces,
            };
            let origin = FedOrigin {
                opened: Arc::new(AtomicUsize::new(0)),
                response: Arc::new(Mutex::new(Some(fed))),
            };
            (origin, feed)
        }

        fn open(&self) -> impl Fn() -> Open<Fed> {
            let (opened, response) = (self.opened.clone(), self.response.clone());
            move || {
                opened.fetch_add(1, Ordering::SeqCst);
                let fed = lock(&response).take();
                Box::pin(async move { fed.ok_or(FetchError::Abandoned) })
            }
        }
    }

    /// A response that is whole at once.
    fn whole(body: &'static [u8]) -> Fed {
        let (feed, pieces) = mpsc::unbounded_channel();
        let _ = feed.send(Ok(Bytes::from_static(body)));
        Fed {
            head: ok_head(),
            pieces,
        }
    }

    fn cache() -> Arc<HlsCache> {
        Arc::new(HlsCache::new(CacheSettings {
            max_bytes: 1 << 20,
            lock_timeout: Duration::from_secs(5),
        }))
    }

    fn minute() -> TtlFor {
        Box::new(|_, _| Duration::from_secs(60))
    }

    fn never() -> TtlFor {
        Box::new(|_, _| Duration::ZERO)
    }

    async fn read_all(answer: Answer) -> Result<Vec<u8>, Arc<FetchError>> {
        match answer {
            Answer::Whole(cached) => Ok(cached.body.bytes().unwrap().to_vec()),
            Answer::Arriving(mut arriving) => {
                let mut body = Vec::new();
                while let Some(piece) = arriving.next().await? {
                    body.extend_from_slice(&piece);
                }
                Ok(body)
            }
        }
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_fetch_and_later_ones_hit() {
        let cache = cache();
        let (origin, feed) = FedOrigin::new();
        let mut waiting = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let open = origin.open();
            waiting.push(tokio::spawn(async move {
                let (answer, source) = cache
                    .get_or_fetch("/live/42-1.ts", Some(42), minute(), open)
                    .await;
                (read_all(answer.unwrap()).await, source)
            }));
        }
        // Every request is waiting on the one fetch before it is let go.
        livegate_tests::wait_until("the requests to queue up", || {
            let started = origin.opened.load(Ordering::SeqCst);
            async move { (started == 1).then_some(()) }
        })
        .await;
        feed.send(Ok(Bytes::from_static(b"seg"))).unwrap();
        feed.send(Ok(Bytes::from_static(b"ment"))).unwrap();
        drop(feed);
        let mut sources = Vec::new();
        for task in waiting {
            let (body, source) = task.await.unwrap();
            assert_eq!(body.unwrap(), b"segment");
            sources.push(source);
        }
        assert_eq!(origin.opened.load(Ordering::SeqCst), 1);
        assert_eq!(sources.iter().filter(|s| **s == Source::Miss).count(), 1);
        let (again, source) = cache
            .get_or_fetch::<Fed, _>("/live/42-1.ts", Some(42), minute(), || unreachable!())
            .await;
        assert_eq!(source, Source::Hit);
        let Ok(Answer::Whole(again)) = again else {
            panic!("a hit is whole")
        };
        assert_eq!(&again.body.bytes().unwrap()[..], b"segment");
    }

    #[tokio::test]
    async fn every_reader_gets_each_piece_before_the_origin_is_done() {
        let cache = cache();
        let (origin, feed) = FedOrigin::new();
        let (first, source) = cache
            .get_or_fetch("/live/42-2.ts", Some(42), minute(), origin.open())
            .await;
        assert_eq!(source, Source::Miss);
        let (second, source) = cache
            .get_or_fetch("/live/42-2.ts", Some(42), minute(), origin.open())
            .await;
        assert_eq!(source, Source::Coalesced);
        let (Ok(Answer::Arriving(mut first)), Ok(Answer::Arriving(mut second))) = (first, second)
        else {
            panic!("both answers are still arriving")
        };
        feed.send(Ok(Bytes::from_static(b"first half"))).unwrap();
        assert_eq!(&first.next().await.unwrap().unwrap()[..], b"first half");
        assert_eq!(&second.next().await.unwrap().unwrap()[..], b"first half");
        // Nothing is kept until the origin is done.
        assert!(cache.get("/live/42-2.ts").is_none());
        // A reader that joins now starts at the first byte.
        let (late, source) = cache
            .get_or_fetch("/live/42-2.ts", Some(42), minute(), origin.open())
            .await;
        assert_eq!(source, Source::Coalesced);
        feed.send(Ok(Bytes::from_static(b", second half"))).unwrap();
        assert_eq!(&first.next().await.unwrap().unwrap()[..], b", second half");
        drop(feed);
        assert_eq!(first.next().await.unwrap(), None);
        // The one behind gets the rest of the finished body at once.
        assert_eq!(&second.next().await.unwrap().unwrap()[..], b", second half");
        assert_eq!(second.next().await.unwrap(), None);
        assert_eq!(
            read_all(late.unwrap()).await.unwrap(),
            b"first half, second half"
        );
        assert_eq!(origin.opened.load(Ordering::SeqCst), 1);
        let kept = cache.get("/live/42-2.ts").expect("kept once whole");
        assert_eq!(&kept.body.bytes().unwrap()[..], b"first half, second half");
    }

    #[tokio::test]
    async fn a_body_cut_short_reaches_every_reader_as_an_error_and_is_not_kept() {
        let cache = cache();
        let (origin, feed) = FedOrigin::new();
        let (first, _) = cache
            .get_or_fetch("/live/42-3.ts", Some(42), minute(), origin.open())
            .await;
        let Ok(Answer::Arriving(mut first)) = first else {
            panic!("still arriving")
        };
        feed.send(Ok(Bytes::from_static(b"half"))).unwrap();
        assert_eq!(&first.next().await.unwrap().unwrap()[..], b"half");
        let (second, _) = cache
            .get_or_fetch("/live/42-3.ts", Some(42), minute(), origin.open())
            .await;
        feed.send(Err(FetchError::Timeout)).unwrap();
        assert!(first.next().await.is_err());
        assert!(read_all(second.unwrap()).await.is_err());
        assert!(cache.get("/live/42-3.ts").is_none());
        // The next request asks the origin again.
        let (again, source) = cache
            .get_or_fetch("/live/42-3.ts", Some(42), minute(), || {
                Box::pin(async { Ok(whole(b"segment")) })
            })
            .await;
        assert_eq!(source, Source::Miss);
        assert_eq!(read_all(again.unwrap()).await.unwrap(), b"segment");
    }

    #[tokio::test]
    async fn uncacheable_answers_are_shared_but_not_kept_and_purges_drop_rooms() {
        let cache = cache();
        let (first, _) = cache
            .get_or_fetch("/live/42.m3u8?_HLS_msn=5", Some(42), never(), || {
                Box::pin(async { Ok(whole(b"#EXTM3U")) })
            })
            .await;
        assert_eq!(
            &first.unwrap().whole().await.unwrap().body.bytes().unwrap()[..],
            b"#EXTM3U"
        );
        assert!(cache.get("/live/42.m3u8?_HLS_msn=5").is_none());

        for (key, room) in [("/live/42-1.ts", 42), ("/live/43-1.ts", 43)] {
            let (stored, _) = cache
                .get_or_fetch(key, Some(room), minute(), || {
                    Box::pin(async { Ok(whole(b"x")) })
                })
                .await;
            assert!(stored.unwrap().whole().await.is_ok());
        }
        assert_eq!(cache.purge(Some(42)), 1);
        assert!(cache.get("/live/42-1.ts").is_none());
        assert!(cache.get("/live/43-1.ts").is_some());
        assert_eq!(cache.purge(None), 1);
        assert!(cache.get("/live/43-1.ts").is_none());
    }

    #[test]
    fn freshness_follows_the_playlist_and_the_origin() {
        let freshness = Freshness {
            playlist: None,
            segment: Duration::from_secs(120),
            honor_no_cache: true,
        };
        let playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n";
        let mut head = ok_head();
        assert_eq!(freshness.playlist(&head, playlist), Duration::from_secs(2));
        head.cache_control = Some("max-age=1".into());
        assert_eq!(freshness.playlist(&head, playlist), Duration::from_secs(1));
        head.cache_control = Some("no-cache".into());
        assert_eq!(freshness.playlist(&head, playlist), Duration::ZERO);
        let mut missing = ok_head();
        missing.status = StatusCode::NOT_FOUND;
        assert_eq!(freshness.segment(&missing), Duration::ZERO);
        assert_eq!(freshness.segment(&ok_head()), Duration::from_secs(120));
        assert_eq!(
            freshness.playlist(&ok_head(), b"#EXTM3U\n"),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn origin_directives_bound_the_time() {
        assert_eq!(origin_max_age(None, true), None);
        assert_eq!(origin_max_age(Some("no-cache"), true), Some(Duration::ZERO));
        assert_eq!(origin_max_age(Some("no-cache"), false), None);
        assert_eq!(origin_max_age(Some("max-age=0"), false), None);
        assert_eq!(origin_max_age(Some("private"), false), Some(Duration::ZERO));
        assert_eq!(
            origin_max_age(Some("public, max-age=3"), false),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            origin_max_age(Some("max-age=30, s-maxage=2"), true),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            target_duration(b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n"),
            Some(Duration::from_secs(4))
        );
    }
}
