//! The HLS cache: an origin shield in memory.
//!
//! Playlists are kept for a short time (half their target duration unless configured, never
//! longer than the origin's `max-age`), segments until they are evicted or their time is up.
//! Entries are keyed by path and the query without the viewer's token — the token never enters
//! a key — and bounded in bytes, evicted by TinyUFO (TinyLFU admission, S3-FIFO eviction).
//! Concurrent misses for one key make one origin request: the first starts a fetch (in a task of
//! its own, so a viewer that leaves does not cancel it for the others) and the rest wait for it,
//! up to a lock timeout after which they ask the origin themselves, as nginx's
//! `proxy_cache_lock_timeout` does. The cache holds the origin's bytes; playlists are rewritten
//! for each viewer on the way out.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use tinyufo::TinyUfo;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::origin::{FetchError, Fetched};

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
    }
}

/// A response kept for later viewers.
#[derive(Debug)]
pub struct Cached {
    /// The full key (TinyUFO keeps only a hash of it).
    pub key: String,
    /// The room it belongs to (for purges).
    pub room: Option<u64>,
    /// The origin's status.
    pub status: StatusCode,
    /// The origin's `Content-Type`.
    pub content_type: Option<String>,
    /// The origin's `Location`.
    pub location: Option<String>,
    /// The body.
    pub body: Bytes,
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
    pub fn uncached(key: &str, room: Option<u64>, fetched: Fetched) -> Cached {
        entry(key, room, fetched, Duration::ZERO)
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

/// The result of a fetch, shared by everyone who waited for it.
type Outcome = Result<Arc<Cached>, Arc<FetchError>>;

/// A fetch the cache can run in a task of its own.
pub type Fill = Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send>>;

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most bytes kept.
    pub max_bytes: usize,
    /// How long a request waits for another's fetch of the same key before fetching itself.
    pub lock_timeout: Duration,
}

/// The cache.
pub struct HlsCache {
    entries: TinyUfo<String, Arc<Cached>>,
    // Std mutexes: held only to look up or change a map entry.
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
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

    /// The answer for `key`: from the cache, from a fetch already running for it, or from a new
    /// fetch `fill` (kept for `ttl_for` of the response when cacheable). `room` tags the entry
    /// for purges.
    pub async fn get_or_fetch(
        self: &Arc<Self>,
        key: &str,
        room: Option<u64>,
        ttl_for: impl FnOnce(&Fetched) -> Duration + Send + 'static,
        fill: impl Fn() -> Fill,
    ) -> (Result<Arc<Cached>, Arc<FetchError>>, Source) {
        if let Some(hit) = self.get(key) {
            return (Ok(hit), Source::Hit);
        }
        let (mut outcome, source) = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(key) {
                Some(running) => (running.clone(), Source::Coalesced),
                None => {
                    let (done, outcome) = watch::channel(None);
                    inflight.insert(key.to_owned(), outcome.clone());
                    let cache = self.clone();
                    let key = key.to_owned();
                    let fetch = fill();
                    self.fills.spawn(async move {
                        let result = fetch.await;
                        let outcome = cache.store(&key, room, ttl_for, result);
                        lock(&cache.inflight).remove(&key);
                        let _ = done.send(Some(outcome));
                    });
                    (outcome, Source::Miss)
                }
            }
        };
        // The request that started the fetch waits for it as long as it takes (the fetch has
        // its own deadline); the others only up to the lock timeout.
        let patience = match source {
            Source::Coalesced => self.settings.lock_timeout,
            _ => Duration::MAX,
        };
        let waited: Option<Outcome> =
            match tokio::time::timeout(patience, outcome.wait_for(Option::is_some)).await {
                Ok(Ok(ready)) => (*ready).clone(),
                _ => None,
            };
        match waited {
            Some(result) => (result, source),
            // The fetch is slower than the lock timeout (or its task died): ask the origin
            // directly, without keeping the answer.
            None => {
                let result = fill().await;
                let fetched = result.map_err(Arc::new);
                (
                    fetched.map(|fetched| Arc::new(entry(key, room, fetched, Duration::ZERO))),
                    Source::Miss,
                )
            }
        }
    }

    fn store(
        &self,
        key: &str,
        room: Option<u64>,
        ttl_for: impl FnOnce(&Fetched) -> Duration,
        result: Result<Fetched, FetchError>,
    ) -> Outcome {
        let fetched = result.map_err(Arc::new)?;
        let ttl = ttl_for(&fetched);
        let cached = Arc::new(entry(key, room, fetched, ttl));
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
        Ok(cached)
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

fn entry(key: &str, room: Option<u64>, fetched: Fetched, ttl: Duration) -> Cached {
    Cached {
        key: key.to_owned(),
        room,
        status: fetched.status,
        content_type: fetched.content_type,
        location: fetched.location,
        body: fetched.body,
        fetched_at: Instant::now(),
        ttl,
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
    pub fn playlist(&self, fetched: &Fetched) -> Duration {
        if fetched.status != StatusCode::OK {
            return Duration::ZERO;
        }
        let ours = self.playlist.unwrap_or_else(|| {
            target_duration(&fetched.body).map_or(DEFAULT_PLAYLIST_TTL, |target| target / 2)
        });
        self.bounded_by_origin(ours, fetched)
    }

    /// How long this segment answer may be kept: only a 200, never longer than the origin
    /// allows.
    pub fn segment(&self, fetched: &Fetched) -> Duration {
        if fetched.status != StatusCode::OK {
            return Duration::ZERO;
        }
        self.bounded_by_origin(self.segment, fetched)
    }

    fn bounded_by_origin(&self, ours: Duration, fetched: &Fetched) -> Duration {
        match origin_max_age(fetched.cache_control.as_deref(), self.honor_no_cache) {
            Some(theirs) => ours.min(theirs),
            None => ours,
        }
    }
}

/// The cache key for a request: the path and the query without the viewer's token (so one
/// entry serves every viewer), under the viewer's `Host` when the origin is told it.
pub fn key(host: Option<&str>, path: &str, query: Option<&str>, token_param: &str) -> String {
    let query = query.and_then(|q| crate::forwarding::strip_query_param(q, token_param));
    let mut key = String::with_capacity(
        host.map_or(0, str::len) + path.len() + query.as_ref().map_or(0, |q| q.len() + 1),
    );
    if let Some(host) = host {
        key.push_str(&host.to_ascii_lowercase());
    }
    key.push_str(path);
    if let Some(query) = query {
        key.push('?');
        key.push_str(&query);
    }
    key
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

    fn fetched(body: &'static [u8]) -> Fetched {
        Fetched {
            status: StatusCode::OK,
            content_type: None,
            location: None,
            cache_control: None,
            body: Bytes::from_static(body),
            header_latency: Duration::ZERO,
        }
    }

    fn cache() -> Arc<HlsCache> {
        Arc::new(HlsCache::new(CacheSettings {
            max_bytes: 1 << 20,
            lock_timeout: Duration::from_secs(5),
        }))
    }

    fn minute(_: &Fetched) -> Duration {
        Duration::from_secs(60)
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_fetch_and_later_ones_hit() {
        let cache = cache();
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut waiting = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            let released = released.clone();
            waiting.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("/live/42-1.ts", Some(42), minute, move || {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let mut released = released.clone();
                        Box::pin(async move {
                            let _ = released.wait_for(|r| *r).await;
                            Ok(fetched(b"segment"))
                        })
                    })
                    .await
            }));
        }
        // Every request is waiting on the one fetch before it is let go.
        livegate_tests::wait_until("the requests to queue up", || {
            let started = fetches.load(Ordering::SeqCst);
            async move { (started == 1).then_some(()) }
        })
        .await;
        release.send_replace(true);
        let mut sources = Vec::new();
        for task in waiting {
            let (result, source) = task.await.unwrap();
            assert_eq!(&result.unwrap().body[..], b"segment");
            sources.push(source);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(sources.iter().filter(|s| **s == Source::Miss).count(), 1);
        let (again, source) = cache
            .get_or_fetch("/live/42-1.ts", Some(42), minute, || unreachable!())
            .await;
        assert_eq!(source, Source::Hit);
        assert_eq!(&again.unwrap().body[..], b"segment");
    }

    #[tokio::test]
    async fn uncacheable_answers_are_shared_but_not_kept_and_purges_drop_rooms() {
        let cache = cache();
        let never = |_: &Fetched| Duration::ZERO;
        let (first, _) = cache
            .get_or_fetch("/live/42.m3u8?_HLS_msn=5", Some(42), never, || {
                Box::pin(async { Ok(fetched(b"#EXTM3U")) })
            })
            .await;
        assert!(first.is_ok());
        assert!(cache.get("/live/42.m3u8?_HLS_msn=5").is_none());

        for (key, room) in [("/live/42-1.ts", 42), ("/live/43-1.ts", 43)] {
            let (stored, _) = cache
                .get_or_fetch(key, Some(room), minute, || {
                    Box::pin(async { Ok(fetched(b"x")) })
                })
                .await;
            assert!(stored.is_ok());
        }
        assert_eq!(cache.purge(Some(42)), 1);
        assert!(cache.get("/live/42-1.ts").is_none());
        assert!(cache.get("/live/43-1.ts").is_some());
        assert_eq!(cache.purge(None), 1);
        assert!(cache.get("/live/43-1.ts").is_none());
    }

    #[test]
    fn keys_never_hold_the_token() {
        assert_eq!(
            key(None, "/live/42.m3u8", Some("token=abc"), "token"),
            "/live/42.m3u8"
        );
        assert_eq!(
            key(
                None,
                "/live/42.m3u8",
                Some("_HLS_msn=5&token=abc&_HLS_part=1"),
                "token"
            ),
            "/live/42.m3u8?_HLS_msn=5&_HLS_part=1"
        );
        assert_eq!(
            key(Some("Edge.Example"), "/live/42-1.ts", None, "token"),
            "edge.example/live/42-1.ts"
        );
    }

    #[test]
    fn freshness_follows_the_playlist_and_the_origin() {
        let freshness = Freshness {
            playlist: None,
            segment: Duration::from_secs(120),
            honor_no_cache: true,
        };
        let mut playlist = fetched(b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n");
        assert_eq!(freshness.playlist(&playlist), Duration::from_secs(2));
        playlist.cache_control = Some("max-age=1".into());
        assert_eq!(freshness.playlist(&playlist), Duration::from_secs(1));
        playlist.cache_control = Some("no-cache".into());
        assert_eq!(freshness.playlist(&playlist), Duration::ZERO);
        let mut missing = fetched(b"");
        missing.status = StatusCode::NOT_FOUND;
        assert_eq!(freshness.segment(&missing), Duration::ZERO);
        assert_eq!(freshness.segment(&fetched(b"ts")), Duration::from_secs(120));
        assert_eq!(
            freshness.playlist(&fetched(b"#EXTM3U\n")),
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
