//! Room revocations at the edge: "refuse play tokens of room R that expire at or before T",
//! from the bus (every proxy, within a second of the API publishing it) or from the admin port
//! (one proxy, without a bus). A refused token is answered 403 like any bad token, and the
//! room's running FLV responses end.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use livegate_core::bus::{Bus, Received, Revocation};
use livegate_core::unix_now;
use pingora::server::ShutdownWatch;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often entries past their time are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Pause before subscribing again after the bus failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The revocations in force in this process.
#[derive(Debug)]
pub struct RevocationList {
    /// Room → the latest token expiry refused.
    rooms: RwLock<HashMap<u64, u64>>,
    /// Bumped on every change, for running responses to look again.
    changed: watch::Sender<u64>,
    leeway_s: u64,
}

impl RevocationList {
    /// An empty list; entries stay `leeway_s` past the expiry they name (the verifier accepts
    /// tokens that long after it).
    pub fn new(leeway_s: u64) -> RevocationList {
        RevocationList {
            rooms: RwLock::new(HashMap::new()),
            changed: watch::channel(0).0,
            leeway_s,
        }
    }

    /// Applies `revocation` (a later expiry widens a room's entry, an earlier one changes
    /// nothing). Returns whether it changed anything.
    pub fn apply(&self, revocation: Revocation) -> bool {
        if revocation.tokens_expiring_by.saturating_add(self.leeway_s) < unix_now() {
            return false;
        }
        let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
        let entry = rooms.entry(revocation.room_id).or_insert(0);
        if *entry >= revocation.tokens_expiring_by {
            return false;
        }
        *entry = revocation.tokens_expiring_by;
        drop(rooms);
        self.changed.send_modify(|generation| *generation += 1);
        true
    }

    /// Whether a token of `room_id` expiring at `expires_at` is refused.
    pub fn is_revoked(&self, room_id: u64, expires_at: u64) -> bool {
        let rooms = self.rooms.read().unwrap_or_else(PoisonError::into_inner);
        rooms
            .get(&room_id)
            .is_some_and(|refused| expires_at <= *refused)
    }

    /// Changes from now on.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The entries in force, by room.
    pub fn entries(&self) -> Vec<Revocation> {
        let rooms = self.rooms.read().unwrap_or_else(PoisonError::into_inner);
        let mut entries: Vec<Revocation> = rooms
            .iter()
            .map(|(room_id, refused)| Revocation {
                room_id: *room_id,
                tokens_expiring_by: *refused,
            })
            .collect();
        entries.sort_by_key(|entry| entry.room_id);
        entries
    }

    /// Drops entries whose tokens have all expired.
    pub fn sweep(&self) {
        let now = unix_now();
        let leeway_s = self.leeway_s;
        let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
        rooms.retain(|_, refused| refused.saturating_add(leeway_s) >= now);
    }

    /// How many rooms have an entry.
    pub fn len(&self) -> usize {
        self.rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no room has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Follows the bus's revocation feed into a [`RevocationList`]: one subscription, and a read
/// of what is in force on start and whenever messages may have been missed.
pub struct RevocationFeed {
    list: std::sync::Arc<RevocationList>,
}

impl RevocationFeed {
    /// Follows the feed into `list`.
    pub fn new(list: std::sync::Arc<RevocationList>) -> RevocationFeed {
        RevocationFeed { list }
    }

    /// Follows `bus`'s feed until shutdown.
    pub async fn follow(&self, bus: &Bus, mut shutdown: ShutdownWatch) {
        let shutdown = &mut shutdown;
        let feed = bus.revocations();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            // Subscribe before reading what is in force, so nothing falls between the two.
            let subscribed = tokio::select! {
                subscribed = feed.subscribe() => subscribed,
                _ = shutdown.changed() => return,
            };
            let mut subscriber = match subscribed {
                Ok(subscriber) => subscriber,
                Err(err) => {
                    warn!(error = %err, "cannot subscribe to revocations; retrying");
                    if pause(shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let mut stale = true;
            loop {
                if stale {
                    match feed.in_force(unix_now(), self.list.leeway_s).await {
                        Ok(entries) => {
                            let applied = entries
                                .into_iter()
                                .filter(|entry| self.list.apply(*entry))
                                .count();
                            info!(applied, "revocations in force read from the bus");
                            stale = false;
                        }
                        Err(err) => {
                            warn!(error = %err, "cannot read revocations in force; retrying");
                            if pause(shutdown).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
                let received = tokio::select! {
                    received = subscriber.recv() => received,
                    _ = sweep.tick() => {
                        self.list.sweep();
                        continue;
                    }
                    _ = shutdown.changed() => return,
                };
                match received {
                    Some(Received::Message(revocation)) => {
                        if self.list.apply(revocation) {
                            info!(
                                room = revocation.room_id,
                                tokens_expiring_by = revocation.tokens_expiring_by,
                                "room revoked"
                            );
                        }
                    }
                    // Something was missed: read what is in force again.
                    Some(Received::Lagged(_) | Received::Reconnected) => stale = true,
                    None => break,
                }
            }
        }
    }
}

/// Waits before a retry; true when shutting down instead.
async fn pause(shutdown: &mut ShutdownWatch) -> bool {
    tokio::select! {
        () = tokio::time::sleep(RETRY_AFTER) => false,
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_refuse_tokens_expiring_by_their_time_and_widen_only() {
        let list = RevocationList::new(5);
        let soon = unix_now() + 100;
        let mut changes = list.watch();
        assert!(list.apply(Revocation {
            room_id: 42,
            tokens_expiring_by: soon,
        }));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(list.is_revoked(42, soon));
        assert!(list.is_revoked(42, soon - 50));
        assert!(!list.is_revoked(42, soon + 1));
        assert!(!list.is_revoked(43, soon));
        // An earlier time for the same room changes nothing.
        assert!(!list.apply(Revocation {
            room_id: 42,
            tokens_expiring_by: soon - 10,
        }));
        assert!(!changes.has_changed().unwrap());
        // One whose tokens have all expired is not kept.
        assert!(!list.apply(Revocation {
            room_id: 44,
            tokens_expiring_by: unix_now() - 60,
        }));
        assert_eq!(list.len(), 1);
        list.sweep();
        assert_eq!(list.entries().len(), 1);
    }
}
