//! ZLMediaKit: what its API lists, what its keepalives say, and what a start notice means.
//!
//! - A pass compares the open streams of the API's server with `getMediaList`: a stream
//!   older than `reconcile.grace_ms` that is no longer listed (or listed with another
//!   publisher) is closed, and every live room's viewer count is set from the listed reader
//!   counts — ZLMediaKit reports no viewer stops, so this is where counts come down.
//! - A start notice closes only what the API does not list: ZLMediaKit sends it before it
//!   binds its ports, so a second instance that then fails to start sends one too.
//! - A keepalive whose `hook_index` is below a stream's publish index comes from a newer
//!   process than that publish: the stream is over. A server silent for
//!   `keepalive_misses` intervals has all its streams closed.
//!
//! Each of these closes notes the stream's record directory when it was recording MP4, since
//! the file ZLMediaKit had open is left behind unreported.

use std::path::Path;
use std::time::Duration;

use livegate_core::db::columns::{check_text, RECORD_URL};
use livegate_core::db::{
    now_ms, recording_jobs, rooms, streams, DbError, NewInterruptedRecording, Stream,
};
use livegate_core::origin::zlm::DEFAULT_VHOST;
use livegate_core::origin::{OriginControl, OriginStream, OriginStreams};

use super::ReconcileError;
use crate::dialect::{Dialect, Keepalive, RecordLayout};
use crate::handlers::{announce_closed, close_stream};
use crate::state::AppState;

/// Why the service closed a stream its origin never stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A new process of the origin started.
    Restarted,
    /// The origin's API no longer lists the stream.
    Dropped,
    /// The origin stopped sending keepalives.
    Silent,
}

impl CloseReason {
    /// The label stored with an interrupted recording and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Restarted => "origin_restarted",
            CloseReason::Dropped => "origin_dropped",
            CloseReason::Silent => "origin_silent",
        }
    }
}

/// ZLMediaKit's id of a media source, as stored in `streams.origin_stream_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceId {
    /// Virtual host.
    pub vhost: String,
    /// Application.
    pub app: String,
    /// Stream name.
    pub stream: String,
}

impl SourceId {
    /// The source of a ZLMediaKit stream row, when it recorded one.
    pub fn of(stream: &Stream) -> Option<SourceId> {
        if stream.origin_kind != Dialect::Zlm.as_str() {
            return None;
        }
        let mut parts = stream.origin_stream_id.as_deref()?.splitn(3, '/');
        Some(SourceId {
            vhost: parts.next()?.to_owned(),
            app: parts.next()?.to_owned(),
            stream: parts.next()?.to_owned(),
        })
    }

    fn matches(&self, listed: &OriginStream) -> bool {
        listed.vhost.as_deref().unwrap_or(DEFAULT_VHOST) == self.vhost
            && listed.app == self.app
            && listed.name == self.stream
    }
}

/// The API's entry for an open stream row, if it still carries that publish.
fn listing<'a>(stream: &Stream, listed: &'a OriginStreams) -> Option<&'a OriginStream> {
    let source = SourceId::of(stream);
    let room = stream.room_id.to_string();
    listed
        .streams
        .iter()
        .find(|entry| match &source {
            Some(source) => source.matches(entry),
            None => entry.name == room,
        })
        .filter(|entry| match (&entry.publisher, &stream.origin_client_id) {
            (Some(listed), Some(ours)) => listed == ours,
            _ => true,
        })
}

async fn open_streams_of(state: &AppState, server_id: &str) -> Result<Vec<Stream>, DbError> {
    let mut open = streams::open_of_server(state.db(), server_id).await?;
    open.retain(|stream| stream.origin_kind == Dialect::Zlm.as_str());
    Ok(open)
}

fn is_api_of(state: &AppState, server_id: &str) -> bool {
    state.config().zlmediakit.server_id.as_deref() == Some(server_id)
}

/// The API's listing within `budget`; `None` when there is no API for `server_id` or it did
/// not answer (logged).
async fn list_within(state: &AppState, server_id: &str, budget: Duration) -> Option<OriginStreams> {
    let api = state.zlm_api().filter(|_| is_api_of(state, server_id))?;
    match tokio::time::timeout(budget, api.streams()).await {
        Ok(Ok(listed)) => Some(listed),
        Ok(Err(err)) => {
            tracing::info!(origin = %server_id, error = %err, "ZLMediaKit API did not answer");
            None
        }
        Err(_) => {
            tracing::info!(origin = %server_id, "ZLMediaKit API did not answer in time");
            None
        }
    }
}

/// One pass against the ZLMediaKit API: closes what it dropped, sets the viewer counts.
pub(super) async fn pass(
    state: &AppState,
    api: &dyn OriginControl,
) -> Result<usize, ReconcileError> {
    // A stream opened after the API was asked cannot be missing from its answer: its age is
    // counted up to the question, not to the answer.
    let asked_at = now_ms();
    let listed = api.streams().await?;
    let open = open_streams_of(state, &listed.server_id).await?;
    let grace = i64::try_from(state.config().reconcile.grace_ms).unwrap_or(i64::MAX);
    // ZLMediaKit lists a stream only once its publish was answered and its tracks are ready.
    let dropped: Vec<Stream> = open
        .iter()
        .filter(|stream| asked_at - stream.start_at >= grace && listing(stream, &listed).is_none())
        .cloned()
        .collect();
    let closed = close(state, &dropped, CloseReason::Dropped).await?;
    for stream in open.iter().filter(|s| !dropped.contains(s)) {
        let readers = listing(stream, &listed).and_then(|entry| entry.readers);
        set_viewers(state, stream.room_id, readers.unwrap_or(0)).await?;
    }
    if closed > 0 {
        state.metrics().reconcile_closed.inc_by(closed as u64);
        tracing::info!(origin = %listed.server_id, streams.closed = closed, "reconciliation closed streams the origin dropped");
    }
    Ok(closed)
}

/// A start notice of `server_id` arrived at `started_ms`. Streams opened before it that the
/// API does not list are closed; the rest are left to later passes and keepalives. Viewer
/// counts start over: a new process has no viewers, and a running one gets its counts back
/// from the API.
pub async fn server_started(
    state: &AppState,
    server_id: &str,
    started_ms: i64,
) -> Result<usize, DbError> {
    let open = open_streams_of(state, server_id).await?;
    let budget = state.config().deadline() / 2;
    let listed = list_within(state, server_id, budget).await;
    let mut dropped = Vec::new();
    for stream in &open {
        let entry = listed.as_ref().and_then(|listed| listing(stream, listed));
        if listed.is_some() && entry.is_none() && stream.start_at < started_ms {
            dropped.push(stream.clone());
        } else {
            let readers = entry.and_then(|entry| entry.readers).unwrap_or(0);
            set_viewers(state, stream.room_id, readers).await?;
        }
    }
    let closed = close(state, &dropped, CloseReason::Restarted).await?;
    if closed > 0 {
        tracing::info!(origin = %server_id, streams.closed = closed, "origin restarted, closed the streams it no longer has");
    } else if listed.is_none() && !open.is_empty() {
        tracing::info!(origin = %server_id, streams.open = open.len(), "origin start notice: its streams stay open until its API or keepalives confirm they are over");
    }
    Ok(closed)
}

/// A keepalive arrived: streams published at a higher `hook_index` than this keepalive's,
/// longer ago than any callback can be late, came from an earlier process and are over.
pub async fn keepalive(state: &AppState, keepalive: &Keepalive) -> Result<usize, DbError> {
    let now = now_ms();
    let seen = state
        .zlm_servers()
        .keepalive(&keepalive.server_id, keepalive.hook_index, now);
    if seen.index_dropped {
        tracing::info!(origin = %keepalive.server_id, "keepalive index went down: a new origin process runs");
    }
    let Some(index) = keepalive.hook_index else {
        return Ok(0);
    };
    let late = state.config().zlmediakit.silence_ms();
    let open = open_streams_of(state, &keepalive.server_id).await?;
    let stale: Vec<Stream> = open
        .into_iter()
        .filter(|stream| {
            stream
                .origin_hook_index
                .is_some_and(|published| published > index)
                && now - stream.start_at > late
        })
        .collect();
    let closed = close(state, &stale, CloseReason::Restarted).await?;
    if closed > 0 {
        tracing::info!(origin = %keepalive.server_id, streams.closed = closed, "origin restarted, closed the streams of its previous process");
    }
    Ok(closed)
}

/// Closes the streams of every server whose keepalives stopped.
pub async fn watch_keepalives(state: &AppState) -> Result<usize, DbError> {
    let silence = state.config().zlmediakit.silence_ms();
    let mut closed = 0;
    for server_id in state.zlm_servers().take_silent(now_ms(), silence) {
        let open = open_streams_of(state, &server_id).await?;
        let count = close(state, &open, CloseReason::Silent).await?;
        if count > 0 {
            state.metrics().reconcile_closed.inc_by(count as u64);
            tracing::warn!(origin = %server_id, streams.closed = count, silence_ms = silence, "origin stopped sending keepalives, closed its streams");
        }
        closed += count;
    }
    Ok(closed)
}

/// Whether the open stream `open`, published at a higher `hook_index` than a new publish of
/// the same room from the same server, belongs to an earlier process (the new publish may
/// replace it) rather than being a live session the new publish races with. The API
/// decides when it answers; otherwise a new process must have been seen since the stream
/// opened (start notice, keepalive index drop), or the keepalives have paused.
pub async fn is_from_earlier_process(state: &AppState, open: &Stream) -> bool {
    let budget = state.config().deadline() / 4;
    if let Some(listed) = list_within(state, &open.origin_server_id, budget).await {
        return listing(open, &listed).is_none();
    }
    let server = state.zlm_servers().get(&open.origin_server_id);
    if server.restarted_at_ms.is_some_and(|at| at > open.start_at) {
        return true;
    }
    let interval =
        i64::try_from(state.config().zlmediakit.keepalive_interval_ms).unwrap_or(i64::MAX);
    server
        .last_keepalive
        .is_some_and(|(at, _)| now_ms() - at > interval.saturating_mul(3) / 2)
}

async fn set_viewers(state: &AppState, room_id: i64, readers: u64) -> Result<(), DbError> {
    rooms::set_viewers_count(
        state.db(),
        room_id,
        i64::try_from(readers).unwrap_or(i64::MAX),
    )
    .await
}

/// Closes `streams` (those still open), announces each, zeroes its room's viewers and notes
/// an interrupted recording; returns how many were closed.
pub(crate) async fn close(
    state: &AppState,
    streams: &[Stream],
    reason: CloseReason,
) -> Result<usize, DbError> {
    let mut closed = 0;
    for stream in streams {
        let now = now_ms();
        let Some(row) = close_stream(state.db(), stream.id, now).await? else {
            continue;
        };
        announce_closed(state, &row, now);
        set_viewers(state, row.room_id, 0).await?;
        note_interrupted_recording(state, &row, reason).await?;
        tracing::info!(room.id = row.room_id, stream.id = row.id, origin = %row.origin_server_id, reason = reason.as_str(), "stream closed for its origin");
        closed += 1;
    }
    Ok(closed)
}

/// The directory a stream's MP4s go to: beside its last reported file (two levels up, past
/// the per-day directory), known from the recorder's job for it, else by the server's layout
/// when it records MP4.
fn record_directory(
    stream: &Stream,
    last_file: Option<&str>,
    layout: Option<&RecordLayout>,
) -> Option<String> {
    if let Some(file) = last_file {
        let directory = Path::new(file).parent()?.parent()?;
        return Some(format!("{}/", directory.display()));
    }
    let layout = layout.filter(|layout| layout.enable_mp4)?;
    let source = SourceId::of(stream).unwrap_or_else(|| SourceId {
        vhost: DEFAULT_VHOST.to_owned(),
        app: "live".to_owned(),
        stream: stream.room_id.to_string(),
    });
    Some(layout.directory(&source.vhost, &source.app, &source.stream))
}

async fn note_interrupted_recording(
    state: &AppState,
    stream: &Stream,
    reason: CloseReason,
) -> Result<(), DbError> {
    if stream.origin_kind != Dialect::Zlm.as_str() {
        return Ok(());
    }
    let layout = state.zlm_servers().get(&stream.origin_server_id).layout;
    // The file the origin last reported is the job the recorder made of it (once it took the
    // job off the bus; until then the layout says where).
    let last_file = recording_jobs::latest_of_stream(state.db(), stream.id)
        .await?
        .map(|job| job.source_path);
    let Some(directory) = record_directory(stream, last_file.as_deref(), layout.as_ref()) else {
        return Ok(());
    };
    if check_text(&directory, RECORD_URL).is_err() {
        tracing::warn!(
            stream.id = stream.id,
            "record directory too long to note, skipped"
        );
        return Ok(());
    }
    let noted = state
        .db()
        .note_interrupted_recording(
            &NewInterruptedRecording {
                stream_id: stream.id,
                room_id: stream.room_id,
                origin_kind: &stream.origin_kind,
                origin_server_id: &stream.origin_server_id,
                directory: &directory,
                reason: reason.as_str(),
            },
            now_ms(),
        )
        .await?;
    if noted {
        tracing::info!(room.id = stream.room_id, stream.id = stream.id, directory = %directory, "recording interrupted, its directory noted");
    }
    Ok(())
}
