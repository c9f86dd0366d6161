//! What the service knows about each ZLMediaKit server between callbacks: where it records,
//! when it last said it was alive, and when a new process of it was last seen.
//!
//! ZLMediaKit's `hook_index` restarts at 0 in every process and its start notice arrives
//! before the process binds its ports (so a second instance that then fails to start sends
//! one too). Neither alone proves the running process changed; these facts, kept per server,
//! let the handlers and the reconciler tell a restart from a reordered callback.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::dialect::RecordLayout;

/// Servers remembered; beyond it the memory starts over (which only delays restart
/// detection until the next keepalive).
const MAX_SERVERS: usize = 10_000;

/// One server's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZlmServer {
    /// Its recording layout, from its last start notice.
    pub layout: Option<RecordLayout>,
    /// When its last keepalive arrived (unix ms) and the `hook_index` it carried.
    pub last_keepalive: Option<(i64, Option<i64>)>,
    /// When a new process was last seen: a start notice, or a keepalive whose `hook_index`
    /// went down (unix ms).
    pub restarted_at_ms: Option<i64>,
}

/// What a keepalive told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSeen {
    /// The previous keepalive's `hook_index` was higher: another process sends them now.
    pub index_dropped: bool,
}

/// The per-server registry.
#[derive(Debug, Default)]
pub struct ZlmServers {
    servers: Mutex<HashMap<String, ZlmServer>>,
}

impl ZlmServers {
    fn with<T>(&self, server_id: &str, change: impl FnOnce(&mut ZlmServer) -> T) -> T {
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if servers.len() >= MAX_SERVERS && !servers.contains_key(server_id) {
            servers.clear();
        }
        change(servers.entry(server_id.to_owned()).or_default())
    }

    /// A copy of what is known about `server_id`.
    pub fn get(&self, server_id: &str) -> ZlmServer {
        self.servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(server_id)
            .cloned()
            .unwrap_or_default()
    }

    /// A start notice arrived.
    pub fn started(&self, server_id: &str, layout: RecordLayout, now_ms: i64) {
        self.with(server_id, |server| {
            server.layout = Some(layout);
            server.restarted_at_ms = Some(now_ms);
        });
    }

    /// A keepalive arrived.
    pub fn keepalive(
        &self,
        server_id: &str,
        hook_index: Option<i64>,
        now_ms: i64,
    ) -> KeepaliveSeen {
        self.with(server_id, |server| {
            let index_dropped = matches!(
                (server.last_keepalive, hook_index),
                (Some((_, Some(previous))), Some(index)) if index < previous
            );
            if index_dropped {
                server.restarted_at_ms = Some(now_ms);
            }
            server.last_keepalive = Some((now_ms, hook_index));
            KeepaliveSeen { index_dropped }
        })
    }

    /// Servers whose last keepalive is older than `silence_ms`. Each is reported once: its
    /// keepalive record is dropped, so that only a new keepalive arms the watch again.
    pub fn take_silent(&self, now_ms: i64, silence_ms: i64) -> Vec<String> {
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut silent = Vec::new();
        for (id, server) in servers.iter_mut() {
            if server
                .last_keepalive
                .is_some_and(|(at, _)| now_ms - at > silence_ms)
            {
                server.last_keepalive = None;
                silent.push(id.clone());
            }
        }
        silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_keepalive_index_means_a_new_process() {
        let servers = ZlmServers::default();
        assert!(!servers.keepalive("z", Some(10), 1_000).index_dropped);
        assert!(!servers.keepalive("z", Some(20), 2_000).index_dropped);
        assert_eq!(servers.get("z").restarted_at_ms, None);
        assert!(servers.keepalive("z", Some(3), 3_000).index_dropped);
        assert_eq!(servers.get("z").restarted_at_ms, Some(3_000));
    }

    #[test]
    fn silent_servers_are_reported_once() {
        let servers = ZlmServers::default();
        servers.keepalive("z", Some(1), 1_000);
        assert!(servers.take_silent(1_500, 1_000).is_empty());
        assert_eq!(servers.take_silent(2_500, 1_000), vec!["z".to_owned()]);
        assert!(servers.take_silent(9_000, 1_000).is_empty());
    }
}
