//! `Leaderboard`: a score per member under a key (a Redis sorted set, an in-process map),
//! for rankings a database can rebuild: gifts per room.
//!
//! A board is a cache of sums the database holds, written whole by [`Leaderboard::replace`]
//! with a version: a count that only grows as the sums do (the number of paid orders behind
//! them), read in the same snapshot as the sums. A replacement with an older version than
//! the board's is dropped, so writers racing each other (a reader rebuilding a missing board,
//! relays on several instances) leave the newest snapshot, never an older one and never a
//! sum counted twice. On Redis the key is the sorted set `{prefix}:board:{name}:{key}`; its
//! member `""` holds the version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::Script;

use super::redis::Link;
use super::BusError;

/// Replaces the whole board unless it holds a newer version: `ARGV` is the version, then
/// score, member, score, member, …. The version member `""` also keeps an empty board
/// existing, so that it is not rebuilt on every read.
const REPLACE_IF_NOT_OLDER: &str = r"
local current = redis.call('ZSCORE', KEYS[1], '')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[1], '')
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1";

/// The member that holds a board's version.
const VERSION_MEMBER: &str = "";

/// The in-process boards: `name:key` → member → score (the version under `""`).
pub(crate) type MemoryBoards = Arc<Mutex<HashMap<String, HashMap<String, i64>>>>;

#[derive(Debug, Clone)]
enum Backend {
    Redis(Link, Arc<Scripts>),
    Memory(MemoryBoards),
}

struct Scripts {
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
                    replace: Script::new(REPLACE_IF_NOT_OLDER),
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

    /// Replaces board `key` with `scores` taken at `version`, unless the board holds a newer
    /// version; returns whether it did. The board exists afterwards, even when empty.
    pub async fn replace(
        &self,
        key: &str,
        version: i64,
        scores: &[(String, i64)],
    ) -> Result<bool, BusError> {
        match &self.backend {
            Backend::Redis(link, scripts) => {
                let mut conn = link.conn();
                let mut invocation = scripts.replace.key(link.key(&self.full_key(key)));
                invocation.arg(version);
                for (member, score) in scores {
                    invocation.arg(*score).arg(member);
                }
                let replaced: i64 = invocation.invoke_async(&mut conn).await?;
                Ok(replaced == 1)
            }
            Backend::Memory(boards) => {
                let mut boards = lock(boards);
                let full = self.full_key(key);
                let current = boards
                    .get(&full)
                    .and_then(|board| board.get(VERSION_MEMBER).copied());
                if current.is_some_and(|current| current > version) {
                    return Ok(false);
                }
                let mut board: HashMap<String, i64> = scores
                    .iter()
                    .filter(|(member, _)| member != VERSION_MEMBER)
                    .cloned()
                    .collect();
                board.insert(VERSION_MEMBER.to_owned(), version);
                boards.insert(full, board);
                Ok(true)
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
                    .filter(|(member, _)| member != VERSION_MEMBER)
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
                    .filter(|(member, _)| member.as_str() != VERSION_MEMBER)
                    .map(|(member, score)| (member.clone(), *score))
                    .collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
                top.truncate(n);
                Ok(Some(top))
            }
        }
    }
}
