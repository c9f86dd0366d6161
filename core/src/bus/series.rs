//! `Series<T>`: a short, capped time series per key (a room is one key), shared by every
//! process on the bus: the console's "last hour" of a room's viewers and bitrate.
//!
//! Points sit in fixed slots (the writer's sampling interval). The first point written for a
//! slot stays: several processes sampling the same room write the same slot, and readers see
//! one point per slot whichever wrote it. Each key keeps the points of the last
//! [`SeriesOptions::retention`] and at most [`SeriesOptions::capacity`] of them, and vanishes a
//! retention after its last write. On Redis a key is the sorted set
//! `{prefix}:series:{name}:{key}` scored by slot, each member `{slot}:{json}`.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Script;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::redis::Link;
use super::BusError;

/// Adds a point unless its slot has one, then trims by age and count and refreshes the
/// key's lifetime. KEYS[1] the set; ARGV: slot, member, oldest slot kept, capacity,
/// lifetime in ms.
const RECORD: &str = r"
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1]) > 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1";

/// The settings of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesOptions {
    /// The series' name, part of its keys.
    pub name: String,
    /// How far back points are kept.
    pub retention: Duration,
    /// Most points a key keeps.
    pub capacity: usize,
}

/// The in-process series: full key → slot → JSON.
#[derive(Debug, Default)]
pub(crate) struct MemorySeries {
    keys: HashMap<String, BTreeMap<i64, String>>,
}

pub(crate) type SharedMemorySeries = Arc<Mutex<MemorySeries>>;

#[derive(Debug, Clone)]
enum Backend {
    Redis(Link, Arc<Script>),
    Memory(SharedMemorySeries),
}

/// Points per key, in slots. Clones share the series.
#[derive(Debug, Clone)]
pub struct Series<T> {
    options: SeriesOptions,
    backend: Backend,
    _values: PhantomData<fn() -> T>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl<T: Serialize + DeserializeOwned> Series<T> {
    pub(crate) fn redis(link: Link, options: SeriesOptions) -> Self {
        Self {
            options,
            backend: Backend::Redis(link, Arc::new(Script::new(RECORD))),
            _values: PhantomData,
        }
    }

    pub(crate) fn memory(series: SharedMemorySeries, options: SeriesOptions) -> Self {
        Self {
            options,
            backend: Backend::Memory(series),
            _values: PhantomData,
        }
    }

    /// The settings.
    pub fn options(&self) -> &SeriesOptions {
        &self.options
    }

    fn full_key(&self, key: &str) -> String {
        format!("series:{}:{key}", self.options.name)
    }

    /// Writes `value` as the point of slot `slot_ms` of `key` unless the slot has one; returns
    /// whether it was written.
    pub async fn record(&self, key: &str, slot_ms: i64, value: &T) -> Result<bool, BusError> {
        let json = serde_json::to_string(value)?;
        let retention = millis(self.options.retention);
        let oldest = slot_ms.saturating_sub(retention);
        match &self.backend {
            Backend::Redis(link, script) => {
                let mut conn = link.conn();
                let written: i64 = script
                    .key(link.key(&self.full_key(key)))
                    .arg(slot_ms)
                    .arg(format!("{slot_ms}:{json}"))
                    .arg(oldest)
                    .arg(self.options.capacity)
                    .arg(retention.max(1))
                    .invoke_async(&mut conn)
                    .await?;
                Ok(written == 1)
            }
            Backend::Memory(series) => {
                let mut series = lock(series);
                let full = self.full_key(key);
                let is_new_key = !series.keys.contains_key(&full);
                if is_new_key {
                    // Keys of rooms no longer written go when a new one comes: the map holds
                    // the rooms of the last retention, as Redis's expiry keeps it.
                    series.keys.retain(|_, points| {
                        points
                            .last_key_value()
                            .is_some_and(|(newest, _)| *newest >= oldest)
                    });
                }
                let points = series.keys.entry(full).or_default();
                if points.contains_key(&slot_ms) {
                    return Ok(false);
                }
                points.insert(slot_ms, json);
                points.retain(|slot, _| *slot >= oldest);
                while points.len() > self.options.capacity {
                    points.pop_first();
                }
                Ok(true)
            }
        }
    }

    /// The points of `key` in slots from `from_ms` on, oldest first.
    pub async fn since(&self, key: &str, from_ms: i64) -> Result<Vec<(i64, T)>, BusError> {
        let raw: Vec<(i64, String)> = match &self.backend {
            Backend::Redis(link, _) => {
                let mut conn = link.conn();
                let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(link.key(&self.full_key(key)))
                    .arg(from_ms)
                    .arg("+inf")
                    .query_async(&mut conn)
                    .await?;
                members
                    .into_iter()
                    .filter_map(|member| {
                        let (slot, json) = member.split_once(':')?;
                        Some((slot.parse().ok()?, json.to_owned()))
                    })
                    .collect()
            }
            Backend::Memory(series) => lock(series)
                .keys
                .get(&self.full_key(key))
                .map(|points| {
                    points
                        .range(from_ms..)
                        .map(|(slot, json)| (*slot, json.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        raw.into_iter()
            .map(|(slot, json)| Ok((slot, serde_json::from_str(&json)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(capacity: usize) -> Series<u64> {
        Series::memory(
            SharedMemorySeries::default(),
            SeriesOptions {
                name: "t".to_owned(),
                retention: Duration::from_secs(60),
                capacity,
            },
        )
    }

    #[tokio::test]
    async fn the_first_point_of_a_slot_stays_and_old_points_go() {
        let series = series(100);
        assert!(series.record("a", 10_000, &1).await.unwrap_or(false));
        assert!(!series.record("a", 10_000, &2).await.unwrap_or(true));
        assert!(series.record("a", 20_000, &3).await.unwrap_or(false));
        assert_eq!(
            series.since("a", 0).await.unwrap_or_default(),
            vec![(10_000, 1), (20_000, 3)]
        );
        // A minute after the first slot, it is past the retention.
        assert!(series.record("a", 75_000, &4).await.unwrap_or(false));
        assert_eq!(
            series.since("a", 0).await.unwrap_or_default(),
            vec![(20_000, 3), (75_000, 4)]
        );
        assert_eq!(
            series.since("a", 30_000).await.unwrap_or_default(),
            vec![(75_000, 4)]
        );
        assert!(series.since("b", 0).await.unwrap_or_default().is_empty());
    }

    #[tokio::test]
    async fn a_key_keeps_at_most_its_capacity() {
        let series = series(2);
        for slot in 1..=4 {
            series
                .record("a", slot * 1000, &(slot as u64))
                .await
                .unwrap_or(false);
        }
        assert_eq!(
            series.since("a", 0).await.unwrap_or_default(),
            vec![(3000, 3), (4000, 4)]
        );
    }
}
