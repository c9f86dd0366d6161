//! Publish start and stop.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use livegate_core::bus::LiveState;
use livegate_core::db::{
    now_ms, rooms, streams, Database, DbError, NewStream, OriginIds, Room, StartOutcome, Stream, Tx,
};
use subtle::ConstantTimeEq as _;

use super::room_id;
use crate::dialect::{Dialect, PublishStart, PublishStop};
use crate::metrics::ReasonLabels;
use crate::outbox::BusOp;
use crate::reply::{Decision, Refusal};
use crate::state::AppState;

/// Window of `publish.attempts_per_ip_per_minute`.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// How long the rate limiter may take before it is skipped (it must not hold up a publish).
const RATE_CHECK_BUDGET: Duration = Duration::from_millis(100);

fn refuse(state: &AppState, refusal: Refusal) -> Result<Decision, DbError> {
    state
        .metrics()
        .publish_refused
        .get_or_create(&ReasonLabels {
            reason: refusal.label(),
        })
        .inc();
    Ok(Decision::Refuse(refusal))
}

/// Whether `ip` lies in one of the comma-separated `cidrs`. A malformed entry matches
/// nothing, so a typo in the allowlist fails closed.
fn address_allowed(cidrs: &str, ip: Option<&str>) -> bool {
    let Some(ip) = ip.and_then(|ip| ip.parse::<IpAddr>().ok()) else {
        return false;
    };
    cidrs
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| match entry.parse::<IpNet>() {
            Ok(net) => net.contains(&ip),
            Err(_) => entry.parse::<IpAddr>().is_ok_and(|single| single == ip),
        })
}

async fn within_rate(state: &AppState, ip: Option<&str>) -> bool {
    let limit = state.config().publish.attempts_per_ip_per_minute;
    let Some(ip) = ip.filter(|_| limit > 0) else {
        return true;
    };
    let key = format!("publish:{ip}");
    let check = state.bus().rate_limit(&key, limit, RATE_WINDOW);
    match tokio::time::timeout(RATE_CHECK_BUDGET, check).await {
        Ok(Ok(allowed)) => allowed,
        // The limiter is a guard, not the truth: without the bus, publishes still go on.
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "rate limiter unavailable");
            true
        }
        Err(_) => true,
    }
}

/// Checks the room's own rules; `None` when the publisher may go ahead.
fn room_refusal(room: &Room, key: &str, ip: Option<&str>, now: i64) -> Option<Refusal> {
    if !bool::from(key.as_bytes().ct_eq(room.stream_key.as_bytes())) {
        return Some(Refusal::WrongKey);
    }
    if room.disabled {
        return Some(Refusal::Disabled);
    }
    if room
        .stream_key_expires_at
        .is_some_and(|expiry| now > expiry)
    {
        return Some(Refusal::KeyExpired);
    }
    if let Some(cidrs) = &room.publish_allow_cidrs {
        if !address_allowed(cidrs, ip) {
            return Some(Refusal::AddressNotAllowed);
        }
    }
    None
}

/// Authorises a publisher and, if it may go ahead, opens its stream.
async fn start(
    state: &AppState,
    dialect: Dialect,
    start: &PublishStart,
    fate: &Fate,
) -> Result<Decision, DbError> {
    let Some(room_id) = room_id(&start.stream) else {
        return refuse(state, Refusal::UnknownRoom);
    };
    let key = start
        .key
        .as_ref()
        .map(livegate_core::Secret::expose)
        .filter(|key| !key.is_empty());
    let Some(key) = key else {
        if !within_rate(state, start.ip.as_deref()).await {
            return refuse(state, Refusal::RateLimited);
        }
        return refuse(state, Refusal::MissingKey);
    };
    // The rate limit (Redis) and the room lookup (database) at once; the lookup's connection
    // is kept for the write, so a publish checks out one connection.
    let lookup = async {
        let mut conn = state.db().acquire().await?;
        let room = rooms::get(&mut conn, room_id).await?;
        Ok::<_, DbError>((conn, room))
    };
    let (allowed, looked_up) = tokio::join!(within_rate(state, start.ip.as_deref()), lookup);
    let (mut conn, room) = looked_up?;
    if !allowed {
        return refuse(state, Refusal::RateLimited);
    }
    let Some(room) = room else {
        return refuse(state, Refusal::UnknownRoom);
    };
    let now = now_ms();
    if let Some(refusal) = room_refusal(&room, key, start.ip.as_deref(), now) {
        return refuse(state, refusal);
    }

    let origin = &start.origin;
    if dialect == Dialect::Srs {
        if let Some(service_id) = &origin.service_id {
            if !state.service_known(&origin.server_id, service_id) {
                // Rare (once per SRS run): give the connection back while closing the old
                // run's streams, which needs connections of its own (SQLite has one).
                drop(conn);
                close_restarted(state, &origin.server_id, service_id).await?;
                conn = state.db().acquire().await?;
            }
        }
    }

    let new = NewStream {
        room_id,
        origin,
        publisher_ip: start.ip.as_deref(),
    };
    let Some(outcome) = start_stream(conn.begin().await?, &new, now, fate).await? else {
        return Ok(Decision::Unavailable);
    };
    drop(conn);
    match outcome {
        StartOutcome::Started(stream_id) => {
            opened(state, fate, room_id, stream_id, origin, now).await
        }
        StartOutcome::Refused => {
            // The same session asking again (ZLMediaKit retries a callback whose answer it
            // missed) is not a second publisher.
            let open = streams::open(state.db(), room_id).await?;
            let same_session = open.as_ref().is_some_and(|open| {
                origin.client_id.is_some()
                    && open.origin_server_id == origin.server_id
                    && open.origin_client_id == origin.client_id
            });
            if same_session {
                return Ok(Decision::Accept);
            }
            // ZLMediaKit lets a publisher resume its session (`continue_push_ms`) and reports
            // no stop for the old connection: a valid publish from the same server replaces
            // the open stream, unless the open one was published after this callback was sent
            // — and a higher index of the open stream proves that only within one process,
            // since every process counts from 0 again.
            let resumed = match open.as_ref() {
                Some(open)
                    if dialect == Dialect::Zlm && open.origin_server_id == origin.server_id =>
                {
                    let replaceable = match (open.origin_hook_index, origin.hook_index) {
                        (Some(open_index), Some(index)) if open_index >= index => {
                            crate::reconcile::zlm::is_from_earlier_process(state, open).await
                        }
                        _ => true,
                    };
                    replaceable.then_some(open)
                }
                _ => None,
            };
            if let Some(old) = resumed {
                if let Some(closed) = close_stream(state.db(), old.id, now).await? {
                    announce_closed(state, &closed, now);
                }
                if let Some(StartOutcome::Started(stream_id)) =
                    start_stream(state.db().begin().await?, &new, now, fate).await?
                {
                    tracing::debug!(room.id = room_id, stream.id = stream_id, replaced.id = old.id, origin = %origin.server_id, "publish resumed, replaced the open stream");
                    return opened(state, fate, room_id, stream_id, origin, now).await;
                }
            }
            refuse(state, Refusal::AlreadyLive)
        }
    }
}

/// Opens the publish's stream in `tx` and commits it only while the answer can still reach
/// the origin: past the deadline the origin has been refused, so the transaction is rolled
/// back instead and `None` returned. (A commit that itself lands after the deadline is
/// undone by [`opened`].)
async fn start_stream(
    mut tx: Tx<'_>,
    new: &NewStream<'_>,
    now: i64,
    fate: &Fate,
) -> Result<Option<StartOutcome>, DbError> {
    let outcome = streams::start(&mut tx, new, now).await?;
    match outcome {
        StartOutcome::Started(_) if fate.abandoned() => {
            tx.rollback().await?;
            Ok(None)
        }
        StartOutcome::Started(_) => {
            tx.commit().await?;
            Ok(Some(outcome))
        }
        StartOutcome::Refused => {
            tx.rollback().await?;
            Ok(Some(outcome))
        }
    }
}

/// Closes stream `id` (if open) and releases its room, in a transaction of its own.
pub(crate) async fn close_stream(
    db: &Database,
    id: i64,
    now: i64,
) -> Result<Option<Stream>, DbError> {
    let mut tx = db.begin().await?;
    let closed = streams::close(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok(closed)
}

/// Whether a publish's answer still reaches the origin. The request and the task that does
/// the work race for it: exactly one of `answer` (the work finished in time) and `abandon`
/// (the deadline passed and the origin is told "unavailable") succeeds.
#[derive(Debug, Clone, Default)]
struct Fate(Arc<AtomicU8>);

impl Fate {
    const PENDING: u8 = 0;
    const ANSWERED: u8 = 1;
    const ABANDONED: u8 = 2;

    fn settle(&self, to: u8) -> bool {
        self.0
            .compare_exchange(Self::PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn answer(&self) -> bool {
        self.settle(Self::ANSWERED)
    }

    fn abandon(&self) -> bool {
        self.settle(Self::ABANDONED)
    }

    fn abandoned(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::ABANDONED
    }
}

/// Runs a publish start in a task of the service's tracker (drained on shutdown) and waits
/// for it up to the deadline; `None` when the deadline passed. A publish whose stream row is
/// committed after the origin was told "unavailable" closes that row again, so a refused
/// publisher never leaves its room live.
pub(super) async fn start_within(
    state: &AppState,
    dialect: Dialect,
    publish: &PublishStart,
    deadline: Duration,
) -> Option<Result<Decision, DbError>> {
    let fate = Fate::default();
    let mut task = {
        let (state, publish, fate) = (state.clone(), publish.clone(), fate.clone());
        state.clone().tasks().spawn(async move {
            let decision = start(&state, dialect, &publish, &fate).await;
            // Whatever the outcome, it is the answer unless the deadline already passed.
            fate.answer();
            decision
        })
    };
    match tokio::time::timeout(deadline, &mut task).await {
        Ok(joined) => joined.ok(),
        // Too late for the answer, unless the task settled it in the meantime.
        Err(_) if fate.abandon() => None,
        Err(_) => task.await.ok(),
    }
}

/// The stream row is committed: announce it if the origin will hear "accepted", close it
/// again if it already heard otherwise.
async fn opened(
    state: &AppState,
    fate: &Fate,
    room_id: i64,
    stream_id: i64,
    origin: &OriginIds,
    now: i64,
) -> Result<Decision, DbError> {
    if fate.answer() {
        started(state, room_id, stream_id, origin, now);
        return Ok(Decision::Accept);
    }
    tracing::warn!(
        room.id = room_id,
        stream.id = stream_id,
        "publish committed after its deadline, closing the stream the origin was refused"
    );
    close_stream(state.db(), stream_id, now_ms()).await?;
    Ok(Decision::Unavailable)
}

fn started(state: &AppState, room_id: i64, stream_id: i64, origin: &OriginIds, now: i64) {
    tracing::debug!(
        room.id = room_id,
        stream.id = stream_id,
        origin = %origin.server_id,
        client.id = origin.client_id.as_deref().unwrap_or(""),
        "publish started"
    );
    state.outbox().push(BusOp::Live {
        room_id,
        state: LiveState {
            stream_id,
            started_at_ms: now,
            origin_server_id: origin.server_id.clone(),
        },
    });
}

/// Closes the stream of a stopped publisher. Idempotent: a duplicate or stale stop finds no
/// open stream of that publisher and changes nothing.
pub(super) async fn stop(state: &AppState, stop: &PublishStop) -> Result<Decision, DbError> {
    let Some(room_id) = room_id(&stop.stream) else {
        tracing::debug!("publish stop for a stream that is not a room");
        return Ok(Decision::Accept);
    };
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    let closed = match &stop.unregistered {
        Some(unregistered) => {
            streams::stop_unregistered(
                &mut tx,
                room_id,
                &stop.server_id,
                unregistered.schema.as_deref(),
                unregistered.hook_index,
                now,
            )
            .await?
        }
        None => {
            streams::stop(
                &mut tx,
                room_id,
                &stop.server_id,
                stop.client_id.as_deref(),
                now,
            )
            .await?
        }
    };
    tx.commit().await?;
    match closed {
        Some(closed) => {
            announce_closed(state, &closed, now);
            tracing::info!(room.id = room_id, stream.id = closed.id, "publish stopped");
        }
        None => tracing::debug!(room.id = room_id, "publish stop matched no open stream"),
    }
    Ok(Decision::Accept)
}

/// Closes SRS streams opened under another `service_id` of the same server: SRS restarted
/// without sending their stops. Runs once per (server, service) seen by this process.
async fn close_restarted(
    state: &AppState,
    server_id: &str,
    service_id: &str,
) -> Result<(), DbError> {
    if state.service_known(server_id, service_id) {
        return Ok(());
    }
    let stale = streams::open_of_other_service(state.db(), server_id, service_id).await?;
    let closed = close_streams(state, &stale).await?;
    if closed > 0 {
        tracing::info!(origin = %server_id, streams.closed = closed, "origin restarted, closed its old streams");
    }
    state.remember_service(server_id, service_id);
    Ok(())
}

/// Closes `streams` (those still open) and announces each; returns how many were closed.
pub async fn close_streams(state: &AppState, streams: &[Stream]) -> Result<usize, DbError> {
    let mut closed = 0;
    for stream in streams {
        let now = now_ms();
        if let Some(row) = close_stream(state.db(), stream.id, now).await? {
            announce_closed(state, &row, now);
            closed += 1;
        }
    }
    Ok(closed)
}

/// Queues the offline announcement of a closed stream.
pub(crate) fn announce_closed(state: &AppState, stream: &Stream, now: i64) {
    state.outbox().push(BusOp::Offline {
        room_id: stream.room_id,
        stream_id: stream.id,
        at_ms: stream.stop_at.unwrap_or(now),
    });
}

#[cfg(test)]
mod tests {
    use super::address_allowed;

    #[test]
    fn allowlists_match_networks_and_single_addresses() {
        assert!(address_allowed("10.0.0.0/8, 192.168.1.7", Some("10.2.3.4")));
        assert!(address_allowed(
            "10.0.0.0/8, 192.168.1.7",
            Some("192.168.1.7")
        ));
        assert!(!address_allowed("10.0.0.0/8", Some("11.0.0.1")));
        assert!(!address_allowed("10.0.0.0/8", None));
        assert!(!address_allowed("not-a-cidr", Some("10.0.0.1")));
        assert!(address_allowed("::1/128", Some("::1")));
    }
}
