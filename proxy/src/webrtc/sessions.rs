//! WHEP sessions admitted at this edge, ended at their origin when their room revokes the token
//! they were admitted with or, with `webrtc.end_at_token_expiry`, when that token runs out. The
//! media never passes the edge, so it cannot cut a session the way it cuts an FLV response:
//! it ends one as WHEP does, with a `DELETE` of the session's address, which the origin gave in
//! its answer (SRS puts its own session token in it and tears the session down on it).
//!
//! SRS's older play API answers with a session name but no such address; its sessions end
//! when their stream does.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, Method};
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Notify;
use tracing::{info, warn};

use livegate_core::token::Grant;
use livegate_core::unix_now;

use crate::metrics::Metrics;
use crate::origin::OriginClient;
use crate::revocation::RevocationList;

/// Teardowns sent at once when many sessions end together (a room revoked, say).
const TEARDOWNS_AT_ONCE: usize = 16;

/// Largest answer read back from a teardown.
const TEARDOWN_ANSWER_MAX_BYTES: usize = 16 * 1024;

/// Why the edge ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its room revoked the token it was admitted with.
    Revoked,
    /// That token expired.
    Expired,
}

impl EndReason {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked => "revoked",
            EndReason::Expired => "expired",
        }
    }
}

/// A session as the edge knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// The room whose token admitted it.
    pub room_id: u64,
    /// That token's expiry (unix seconds).
    pub expires_at: u64,
    /// The origin API that answered the offer.
    pub api: SocketAddr,
    /// The session's address at that API (path and query), as the origin named it.
    pub teardown: String,
    seq: u64,
    deadline: Option<u64>,
}

/// The sessions this edge admitted and may have to end. Bounded: past `max_sessions` the
/// oldest is no longer followed (and counted as such).
#[derive(Debug)]
pub struct WebrtcSessions {
    state: Mutex<State>,
    /// Wakes the [`SessionEnder`] when a session is added.
    added: Notify,
    /// Seconds past a token's expiry at which its session ends, when that is configured.
    cutoff_after_expiry_s: Option<u64>,
    max_sessions: usize,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct State {
    /// By [`key_of`].
    sessions: HashMap<String, Tracked>,
    /// Admission order, for dropping the oldest when full.
    order: BTreeMap<u64, String>,
    /// `(deadline, seq)` → key, when sessions end at their token's expiry.
    deadlines: BTreeMap<(u64, u64), String>,
    /// Added since the ender last looked: checked against the revocations once.
    fresh: Vec<String>,
    next_seq: u64,
}

impl State {
    fn remove(&mut self, key: &str) -> Option<Tracked> {
        let tracked = self.sessions.remove(key)?;
        self.order.remove(&tracked.seq);
        if let Some(deadline) = tracked.deadline {
            self.deadlines.remove(&(deadline, tracked.seq));
        }
        Some(tracked)
    }
}

/// A session's key: its origin, and the query of its address if it has one (SRS names the
/// session there, and the edge gives the viewer the same query on another path), else the
/// path.
fn key_of(api: SocketAddr, target: &str) -> String {
    let name = target.split_once('?').map_or(target, |(_, query)| query);
    format!("{api} {name}")
}

impl WebrtcSessions {
    /// An empty registry. `cutoff_after_expiry_s`: end sessions that many seconds after their
    /// token expires (`None`: only revocations end them).
    pub fn new(
        cutoff_after_expiry_s: Option<u64>,
        max_sessions: usize,
        metrics: Arc<Metrics>,
    ) -> WebrtcSessions {
        WebrtcSessions {
            state: Mutex::new(State::default()),
            added: Notify::new(),
            cutoff_after_expiry_s,
            max_sessions: max_sessions.max(1),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows a session the origin at `api` opened for `grant`; `teardown` is its address
    /// there (path and query).
    pub fn track(&self, grant: Grant, api: SocketAddr, teardown: String) {
        let key = key_of(api, &teardown);
        let mut state = self.state();
        state.remove(&key);
        let seq = state.next_seq;
        state.next_seq += 1;
        let deadline = self
            .cutoff_after_expiry_s
            .map(|cutoff| grant.expires_at.saturating_add(cutoff));
        if let Some(deadline) = deadline {
            state.deadlines.insert((deadline, seq), key.clone());
        }
        state.order.insert(seq, key.clone());
        state.sessions.insert(
            key.clone(),
            Tracked {
                room_id: grant.room_id,
                expires_at: grant.expires_at,
                api,
                teardown,
                seq,
                deadline,
            },
        );
        state.fresh.push(key);
        while state.sessions.len() > self.max_sessions {
            let Some((_, oldest)) = state.order.pop_first() else {
                break;
            };
            state.remove(&oldest);
            self.metrics.webrtc_sessions_untracked.inc();
        }
        if state.fresh.len() > self.max_sessions {
            // The ender has not looked for a while: what it skips is checked on the next
            // revocation anyway.
            state.fresh.clear();
        }
        self.metrics
            .webrtc_sessions_tracked
            .set(i64::try_from(state.sessions.len()).unwrap_or(i64::MAX));
        drop(state);
        self.added.notify_one();
    }

    /// Stops following the session the viewer tore down at `target` (the path and query it
    /// sent its `DELETE` to).
    pub fn forget(&self, api: SocketAddr, target: &str) {
        let mut state = self.state();
        if state.remove(&key_of(api, target)).is_some() {
            self.metrics
                .webrtc_sessions_tracked
                .set(i64::try_from(state.sessions.len()).unwrap_or(i64::MAX));
        }
    }

    /// How many sessions are followed.
    pub fn len(&self) -> usize {
        self.state().sessions.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest deadline of a session (unix seconds).
    fn next_deadline(&self) -> Option<u64> {
        self.state()
            .deadlines
            .first_key_value()
            .map(|((deadline, _), _)| *deadline)
    }

    /// Takes the sessions that must end now: past their deadline at `now`, revoked (all of
    /// them are looked at when `revocations_changed`, else only those added since the last
    /// look).
    fn take_due(
        &self,
        now: u64,
        revocations: &RevocationList,
        revocations_changed: bool,
    ) -> Vec<(Tracked, EndReason)> {
        let mut state = self.state();
        let mut due = Vec::new();
        while let Some(entry) = state.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(tracked) = state.remove(&key) {
                due.push((tracked, EndReason::Expired));
            }
        }
        let fresh = std::mem::take(&mut state.fresh);
        let revoked: Vec<String> = if revocations_changed {
            state
                .sessions
                .iter()
                .filter(|(_, t)| revocations.is_revoked(t.room_id, t.expires_at))
                .map(|(key, _)| key.clone())
                .collect()
        } else {
            fresh
                .into_iter()
                .filter(|key| {
                    state
                        .sessions
                        .get(key)
                        .is_some_and(|t| revocations.is_revoked(t.room_id, t.expires_at))
                })
                .collect()
        };
        for key in revoked {
            if let Some(tracked) = state.remove(&key) {
                due.push((tracked, EndReason::Revoked));
            }
        }
        self.metrics
            .webrtc_sessions_tracked
            .set(i64::try_from(state.sessions.len()).unwrap_or(i64::MAX));
        due
    }
}

/// Ends the sessions of [`WebrtcSessions`] when they are due, until shutdown.
pub struct SessionEnder {
    /// The sessions to watch.
    pub sessions: Arc<WebrtcSessions>,
    /// The revocations that end them.
    pub revocations: Arc<RevocationList>,
    /// How teardowns reach the origins.
    pub origin: Arc<OriginClient>,
    /// Where ends are counted.
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for SessionEnder {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut revocations = self.revocations.watch();
        loop {
            let wait = self
                .sessions
                .next_deadline()
                .map(|deadline| Duration::from_secs(deadline.saturating_sub(unix_now())));
            let revocations_changed = tokio::select! {
                _ = shutdown.changed() => return,
                changed = revocations.changed() => changed.is_ok(),
                () = self.sessions.added.notified() => false,
                // Unix seconds: one more second, so that the deadline has passed when it fires.
                () = sleep_for(wait.map(|wait| wait + Duration::from_secs(1))) => false,
            };
            let due = self
                .sessions
                .take_due(unix_now(), &self.revocations, revocations_changed);
            if due.is_empty() {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.end_all(due) => {}
            }
        }
    }
}

impl SessionEnder {
    async fn end_all(&self, due: Vec<(Tracked, EndReason)>) {
        futures_util::stream::iter(due)
            .for_each_concurrent(TEARDOWNS_AT_ONCE, |(tracked, reason)| {
                self.end(tracked, reason)
            })
            .await;
    }

    async fn end(&self, tracked: Tracked, reason: EndReason) {
        let request = match teardown_request(&tracked) {
            Ok(request) => request,
            Err(err) => {
                warn!(room = tracked.room_id, error = %err, "cannot build a WebRTC teardown");
                return;
            }
        };
        let ended = self
            .origin
            .send_to(
                tracked.api,
                request,
                Bytes::new(),
                TEARDOWN_ANSWER_MAX_BYTES,
            )
            .await;
        match ended {
            Ok(answer) if answer.head.status.is_success() => {
                self.metrics.webrtc_session_ended(reason);
                info!(
                    room = tracked.room_id,
                    reason = reason.as_str(),
                    "WebRTC session ended at the origin"
                );
            }
            Ok(answer) => {
                self.metrics.webrtc_session_end_failed();
                warn!(
                    room = tracked.room_id,
                    reason = reason.as_str(),
                    status = answer.head.status.as_u16(),
                    "the origin refused to end a WebRTC session"
                );
            }
            Err(err) => {
                self.metrics.webrtc_session_end_failed();
                warn!(
                    room = tracked.room_id,
                    reason = reason.as_str(),
                    error = %err,
                    "cannot reach the origin to end a WebRTC session"
                );
            }
        }
    }
}

fn teardown_request(tracked: &Tracked) -> pingora::Result<RequestHeader> {
    let mut request = RequestHeader::build(Method::DELETE, tracked.teardown.as_bytes(), Some(3))?;
    request.insert_header(header::HOST, tracked.api.to_string())?;
    request.insert_header(header::CONTENT_LENGTH, "0")?;
    Ok(request)
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use livegate_core::bus::Revocation;
    use livegate_core::telemetry::Registry;

    use super::*;

    fn sessions(cutoff: Option<u64>, max: usize) -> WebrtcSessions {
        let mut registry = Registry::with_prefix("proxy");
        WebrtcSessions::new(cutoff, max, Arc::new(Metrics::register(&mut registry)))
    }

    fn grant(room_id: u64, expires_at: u64) -> Grant {
        Grant {
            room_id,
            expires_at,
        }
    }

    const API: &str = "127.0.0.1:1985";

    fn track(sessions: &WebrtcSessions, room: u64, expires_at: u64, name: &str) {
        sessions.track(
            grant(room, expires_at),
            API.parse().unwrap(),
            format!("/rtc/v1/whip/?session={name}"),
        );
    }

    fn names(due: &[(Tracked, EndReason)]) -> Vec<(String, EndReason)> {
        let mut names: Vec<_> = due
            .iter()
            .map(|(t, reason)| (t.teardown.clone(), *reason))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names
    }

    #[test]
    fn sessions_end_at_their_deadline_and_on_a_revocation_of_their_room() {
        let now = unix_now();
        let sessions = sessions(Some(5), 100);
        let revocations = RevocationList::new(0);
        track(&sessions, 42, now + 100, "a");
        track(&sessions, 42, now + 300, "b");
        track(&sessions, 43, now + 10, "c");
        assert_eq!(sessions.next_deadline(), Some(now + 15));
        assert!(sessions.take_due(now, &revocations, false).is_empty());
        assert_eq!(
            names(&sessions.take_due(now + 15, &revocations, false)),
            [("/rtc/v1/whip/?session=c".to_owned(), EndReason::Expired)]
        );
        // Room 42's tokens expiring by now + 200 are refused: a, not b.
        revocations.apply(Revocation {
            room_id: 42,
            tokens_expiring_by: now + 200,
        });
        assert_eq!(
            names(&sessions.take_due(now + 16, &revocations, true)),
            [("/rtc/v1/whip/?session=a".to_owned(), EndReason::Revoked)]
        );
        assert_eq!(sessions.len(), 1);
        // Once ended, a session is no longer due.
        assert!(sessions.take_due(now + 16, &revocations, true).is_empty());
    }

    #[test]
    fn a_session_admitted_just_before_its_revocation_arrived_is_caught_when_added() {
        let now = unix_now();
        let sessions = sessions(None, 100);
        let revocations = RevocationList::new(0);
        revocations.apply(Revocation {
            room_id: 42,
            tokens_expiring_by: now + 100,
        });
        track(&sessions, 42, now + 50, "late");
        // No revocation change is reported, but the new session is looked at.
        assert_eq!(
            names(&sessions.take_due(now, &revocations, false)),
            [("/rtc/v1/whip/?session=late".to_owned(), EndReason::Revoked)]
        );
        // Without a deadline, nothing ends by time.
        track(&sessions, 43, now, "d");
        assert_eq!(sessions.next_deadline(), None);
        assert!(sessions
            .take_due(now + 10_000, &revocations, false)
            .is_empty());
    }

    #[test]
    fn a_torn_down_session_is_forgotten_and_the_oldest_goes_when_full() {
        let now = unix_now();
        let sessions = sessions(Some(0), 2);
        track(&sessions, 1, now + 10, "a");
        track(&sessions, 2, now + 20, "b");
        sessions.forget(API.parse().unwrap(), "/rtc/v1/whep/?session=a");
        assert_eq!(sessions.len(), 1);
        track(&sessions, 3, now + 30, "c");
        track(&sessions, 4, now + 40, "d");
        assert_eq!(sessions.len(), 2);
        let revocations = RevocationList::new(0);
        assert_eq!(
            names(&sessions.take_due(now + 100, &revocations, false)),
            [
                ("/rtc/v1/whip/?session=c".to_owned(), EndReason::Expired),
                ("/rtc/v1/whip/?session=d".to_owned(), EndReason::Expired),
            ]
        );
    }
}
