//! `Leaderboard`: a score per member under a key (a Redis sorted set, an in-process map),
//! for rankings a database can rebuild: gifts per room.
//!
//! A board is a cache of a sum the database holds. [`Leaderboard::add`] changes a key only
//! while it exists, so a board lost with Redis is never restarted from a partial sum: the
//! next reader finds it missing and rebuilds it with [`Leaderboard::replace`]. On Redis the
//! key is the sorted set `{prefix}:board:{name}:{key}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::Script;

use super::redis::Link;
use super::BusError;

/// Adds to a member's score only when the board exists.
const ADD_IF_PRESENT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZINCRBY', KEYS[1], ARGV[1], ARGV[2])
return 1";

/// Replaces the whole board: `ARGV` is score, member, score, member, …; a placeholder
/// member keeps an empty board existing, so that it is not rebuilt on every read.
const REPLACE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[1], 0, '')
for i = 1, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1";

/// The in-process boards: `name:key` → member → score.
pub(crate) type MemoryBoards = Arc<Mutex<HashMap<String, HashMap<String, i64>>>>;

#[derive(Debug, Clone)]
enum Backend {
    Redis(Link, Arc<Scripts>),
    Memory(MemoryBoards),
}

struct Scripts {
    add: Script,
    replace: Script,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripts")
    }
}

/// Scored members per key. Clones share the boards.
#[derive(Debug, Clone)]
pub struct Leaderboard {
    name: String,
    backend: Backend,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Leaderboard {
    pub(crate) fn redis(link: Link, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            backend: Backend::Redis(
                link,
                Arc::new(Scripts {
                    add: Script::new(ADD_IF_PRESENT),
                    replace: Script::new(REPLACE),
                }),
            ),
        }
    }

    pub(crate) fn memory(boards: MemoryBoards, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            backend: Backend::Memory(boards),
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("board:{}:{key}", self.name)
    }

    /// Adds `delta` to `member`'s score on board `key` if the board exists; returns whether
    /// it did (a missing board is rebuilt by its reader).
    pub async fn add(&self, key: &str, member: &str, delta: i64) -> Result<bool, BusError> {
        match &self.backend {
            Backend::Redis(link, scripts) => {
                let mut conn = link.conn();
                let added: i64 = scripts
                    .add
                    .key(link.key(&self.full_key(key)))
                    .arg(delta)
                    .arg(member)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(added == 1)
            }
            Backend::Memory(boards) => {
                let mut boards = lock(boards);
                let Some(board) = boards.get_mut(&self.full_key(key)) else {
                    return Ok(false);
                };
                let score = board.entry(member.to_owned()).or_insert(0);
                *score = score.saturating_add(delta);
                Ok(true)
            }
        }
    }

    /// Replaces board `key` with `scores` (it exists afterwards, even when empty).
    pub async fn replace(&self, key: &str, scores: &[(String, i64)]) -> Result<(), BusError> {
        match &self.backend {
            Backend::Redis(link, scripts) => {
                let mut conn = link.conn();
                let mut invocation = scripts.replace.key(link.key(&self.full_key(key)));
                for (member, score) in scores {
                    invocation.arg(*score).arg(member);
                }
                invocation.invoke_async::<i64>(&mut conn).await?;
                Ok(())
            }
            Backend::Memory(boards) => {
                lock(boards).insert(self.full_key(key), scores.iter().cloned().collect());
                Ok(())
            }
        }
    }

    /// The `n` highest scores of board `key`, highest first (ties by member), or `None` when
    /// the board does not exist.
    pub async fn top(&self, key: &str, n: usize) -> Result<Option<Vec<(String, i64)>>, BusError> {
        let n = n.max(1);
        match &self.backend {
            Backend::Redis(link, _) => {
                let mut conn = link.conn();
                let full = link.key(&self.full_key(key));
                let (exists, entries): (i64, Vec<(String, f64)>) = redis::pipe()
                    .cmd("EXISTS")
                    .arg(&full)
                    .cmd("ZREVRANGE")
                    .arg(&full)
                    .arg(0)
                    .arg(n)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await?;
                if exists == 0 {
                    return Ok(None);
                }
                // Scores are sums of integers well inside f64's exact range.
                #[expect(clippy::cast_possible_truncation, reason = "integral scores")]
                let top = entries
                    .into_iter()
                    .filter(|(member, _)| !member.is_empty())
                    .take(n)
                    .map(|(member, score)| (member, score as i64))
                    .collect();
                Ok(Some(top))
            }
            Backend::Memory(boards) => {
                let boards = lock(boards);
                let Some(board) = boards.get(&self.full_key(key)) else {
                    return Ok(None);
                };
                let mut top: Vec<(String, i64)> = board
                    .iter()
                    .map(|(member, score)| (member.clone(), *score))
                    .collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
                top.truncate(n);
                Ok(Some(top))
            }
        }
    }
}
