//! Plays that reach the origin directly (RTMP pulls, SRS HTTP-FLV/HLS without the proxy):
//! the same play token check as the proxy, and the viewer count.

use livegate_core::token::Rejection;
use livegate_core::unix_now;

use super::room_id;
use crate::dialect::Play;
use crate::metrics::ReasonLabels;
use crate::outbox::BusOp;
use crate::reply::{Decision, Refusal};
use crate::state::AppState;

fn session(play: &Play) -> Option<String> {
    // SRS sends an extra on_stop with an empty client id for HLS sessions: nothing to count.
    play.client_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .map(|id| format!("{}:{id}", play.server_id))
}

fn refuse(state: &AppState, reason: &'static str) -> Decision {
    state
        .metrics()
        .play_refused
        .get_or_create(&ReasonLabels { reason })
        .inc();
    Decision::Refuse(Refusal::PlayNotAllowed)
}

/// Checks the viewer's play token and, when `count`, counts the viewer.
pub(super) fn start(state: &AppState, play: &Play, count: bool) -> Decision {
    let room = room_id(&play.stream);
    if state.config().play.require_token {
        let Some(room) = room else {
            return refuse(state, Refusal::UnknownRoom.label());
        };
        let Some(verifier) = state.verifier() else {
            // Validation requires keys when tokens are required; refuse rather than guess.
            return refuse(state, Rejection::Malformed.as_str());
        };
        let room_u64 = u64::try_from(room).unwrap_or(u64::MAX);
        if let Err(rejection) = verifier.verify_for_room(
            play.token.as_ref().map(livegate_core::Secret::expose),
            room_u64,
            unix_now(),
        ) {
            tracing::info!(
                room.id = room,
                reason = rejection.as_str(),
                "play token refused"
            );
            return refuse(state, rejection.as_str());
        }
    }
    if let (true, Some(room_id), Some(session)) = (count, room, session(play)) {
        state.outbox().push(BusOp::ViewerJoin { room_id, session });
    }
    Decision::Accept
}

/// ZLMediaKit's HTTP server asks whether a client may read a file of its root. Only a
/// stream's own files (HLS segments fetched without ZLMediaKit's HLS cookie) are granted,
/// with a valid play token of that room in the query, for as long as the token lives (the
/// segments beside them carry no token of their own); everything else — pages, directory
/// listings, the `record/` tree — is refused. The playlist and `.live.flv` never come here:
/// they go through `on_play`.
pub(super) fn http_access(state: &AppState, play: &Play) -> Decision {
    if play.stream.is_empty() {
        return refuse(state, "not_a_stream");
    }
    let Some(room) = room_id(&play.stream) else {
        return refuse(state, Refusal::UnknownRoom.label());
    };
    if !state.config().play.require_token {
        return Decision::Accept;
    }
    let Some(verifier) = state.verifier() else {
        return refuse(state, Rejection::Malformed.as_str());
    };
    let room_u64 = u64::try_from(room).unwrap_or(u64::MAX);
    let now = unix_now();
    match verifier.verify_for_room(
        play.token.as_ref().map(livegate_core::Secret::expose),
        room_u64,
        now,
    ) {
        Ok(grant) => Decision::Granted {
            // Inclusive expiry: a token valid through second `exp` has `exp - now + 1` left.
            seconds: (grant.expires_at + verifier.leeway().as_secs())
                .saturating_sub(now)
                .saturating_add(1),
        },
        Err(rejection) => {
            tracing::info!(
                room.id = room,
                reason = rejection.as_str(),
                "HTTP access token refused"
            );
            refuse(state, rejection.as_str())
        }
    }
}

/// A viewer left.
pub(super) fn stop(state: &AppState, play: &Play) -> Decision {
    if let (Some(room_id), Some(session)) = (room_id(&play.stream), session(play)) {
        state.outbox().push(BusOp::ViewerLeave { room_id, session });
    }
    Decision::Accept
}
