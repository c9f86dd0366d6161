//! The live snapshot: every room on air now, from the database (what is live, whose it is),
//! the origins' APIs (codecs, resolution, bitrate, the publisher's address), the edge's
//! viewer tally and chat presence, and the recording job table.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use livegate_core::db::live::{self, LiveSession};
use livegate_core::db::{now_ms, recording_jobs, DbError};
use livegate_core::origin::{MediaStats, StreamMedia};
use serde::Serialize;
use utoipa::ToSchema;

use crate::chat::presence;
use crate::state::AppState;

/// `GET /admin/live` and each `snapshot` event of its feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveSnapshot {
    /// When it was taken, unix milliseconds.
    pub at: i64,
    /// The live rooms, longest running first.
    pub rooms: Vec<LiveRoom>,
}

impl LiveSnapshot {
    /// The part `owner` may see (`None`: all of it).
    pub fn of_owner(&self, owner: Option<i64>) -> LiveSnapshot {
        match owner {
            None => self.clone(),
            Some(owner) => LiveSnapshot {
                at: self.at,
                rooms: self
                    .rooms
                    .iter()
                    .filter(|room| room.owner.id == owner)
                    .cloned()
                    .collect(),
            },
        }
    }
}

/// One live room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveRoom {
    /// The room.
    pub room_id: i64,
    /// Its title.
    pub title: String,
    /// Its owner.
    pub owner: Owner,
    /// The open publish session.
    pub stream_id: i64,
    /// When it started, unix milliseconds.
    pub started_at: i64,
    /// How long it has run, seconds.
    pub uptime_s: i64,
    /// The publisher's address: the origin's word, else the publish callback's.
    pub publisher_addr: Option<String>,
    /// The video track, when the origin says.
    pub video: Option<Video>,
    /// The audio track, when the origin says.
    pub audio: Option<Audio>,
    /// What the publisher sends, when the origin says.
    pub bitrate_kbps: Option<u64>,
    /// Who watches.
    pub viewers: Viewers,
    /// `off` (nothing recorded for this session yet), `recording` (files of it are stored or
    /// reported), `failed`, or the state of the job at work on it (`remuxing`, `uploading`…).
    pub recording: String,
    /// The origin that carries it.
    pub origin: OriginRef,
}

/// A room's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = LiveRoomOwner)]
pub struct Owner {
    /// User id.
    pub id: i64,
    /// Username (empty when the account is gone).
    pub username: String,
}

/// A video track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = LiveVideo)]
pub struct Video {
    /// `H264`, …
    pub codec: String,
    /// Pixels.
    pub width: Option<u32>,
    /// Pixels.
    pub height: Option<u32>,
}

/// An audio track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = LiveAudio)]
pub struct Audio {
    /// `AAC`, …
    pub codec: String,
}

/// A room's viewers by where they are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = LiveViewers)]
pub struct Viewers {
    /// FLV responses running on the edges.
    pub flv: u64,
    /// HLS viewers on the edges.
    pub hls: u64,
    /// Users present in the room's chat.
    pub chat: u64,
    /// Viewers the origin serves directly (the edges' pulls among them), when it says.
    pub origin: Option<u64>,
}

impl Viewers {
    /// One number for the room, as its details count it: the edge's or the origin's,
    /// whichever sees more, and at least the chat's.
    pub fn total(&self) -> u64 {
        (self.flv + self.hls)
            .max(self.origin.unwrap_or(0))
            .max(self.chat)
    }
}

/// Which origin carries a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = LiveOrigin)]
pub struct OriginRef {
    /// `srs`, `zlmediakit` or `nginx-rtmp`.
    pub kind: String,
    /// Its server id.
    pub server_id: String,
}

/// The media statistics of every origin entry that carries one of `sessions`, by entry
/// index; an origin that fails to answer in time is left out (its rooms show `null`s).
async fn origin_media(state: &AppState, sessions: &[LiveSession]) -> HashMap<usize, MediaStats> {
    let origins = state.origins();
    let mut wanted: Vec<usize> = sessions
        .iter()
        .filter_map(|s| origins.index_of(&s.origin_kind, &s.origin_server_id))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let timeout = Duration::from_millis(state.config().console.check_timeout_ms);
    let asked = wanted.into_iter().map(|index| async move {
        let entry = &origins.entries()[index];
        match tokio::time::timeout(timeout, entry.control.stats()).await {
            Ok(Ok(stats)) => Some((index, stats)),
            Ok(Err(err)) => {
                tracing::debug!(origin.kind = entry.kind.as_str(), error = %err, "origin media statistics unavailable");
                None
            }
            Err(_) => {
                tracing::debug!(origin.kind = entry.kind.as_str(), "origin media statistics timed out");
                None
            }
        }
    });
    join_all(asked).await.into_iter().flatten().collect()
}

/// What a live session's recording is, from its newest job and its `record_url` (set only
/// once a recording of the session is confirmed in storage).
fn recording_state(job_state: Option<&str>, record_url: Option<&str>) -> String {
    match job_state {
        Some("recorded" | "cleaned") => "recording".to_owned(),
        Some(state) => state.to_owned(),
        None if record_url.is_some() => "recording".to_owned(),
        None => "off".to_owned(),
    }
}

fn room_of(
    session: LiveSession,
    media: Option<&StreamMedia>,
    viewers: Viewers,
    job_state: Option<&str>,
    now: i64,
) -> LiveRoom {
    LiveRoom {
        room_id: session.room_id,
        title: session.title,
        owner: Owner {
            id: session.owner_id,
            username: session.owner_username.unwrap_or_default(),
        },
        stream_id: session.stream_id,
        started_at: session.start_at,
        uptime_s: (now - session.start_at).max(0) / 1000,
        publisher_addr: media
            .and_then(|m| m.publisher_addr.clone())
            .or(session.publisher_ip),
        video: media.and_then(|m| m.video.as_ref()).map(|v| Video {
            codec: v.codec.clone(),
            width: v.width,
            height: v.height,
        }),
        audio: media.and_then(|m| m.audio.as_ref()).map(|a| Audio {
            codec: a.codec.clone(),
        }),
        bitrate_kbps: media.and_then(|m| m.bitrate_kbps),
        viewers,
        recording: recording_state(job_state, session.record_url.as_deref()),
        origin: OriginRef {
            kind: session.origin_kind,
            server_id: session.origin_server_id,
        },
    }
}

/// Takes the snapshot of the rooms `owner` owns (`None`: every room).
pub async fn build(state: &AppState, owner: Option<i64>) -> Result<LiveSnapshot, DbError> {
    let limit = state.config().console.live_max_rooms;
    let sessions = live::sessions(state.db(), owner, limit).await?;
    let now = now_ms();
    if sessions.is_empty() {
        return Ok(LiveSnapshot {
            at: now,
            rooms: Vec::new(),
        });
    }
    let stream_ids: Vec<i64> = sessions.iter().map(|s| s.stream_id).collect();
    // The job table, the origins and chat presence are details: without them the rooms are
    // still listed.
    let jobs: HashMap<i64, String> = recording_jobs::latest_of_streams(state.db(), &stream_ids)
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "recording states unavailable");
            Vec::new()
        })
        .into_iter()
        .collect();
    let media = origin_media(state, &sessions).await;
    let bus = state.bus();
    let chat = join_all(sessions.iter().map(|s| async move {
        bus.presence(&presence::key(s.room_id), 0)
            .await
            .map(|(count, _)| count)
            .unwrap_or(0)
    }))
    .await;
    let origins = state.origins();
    let rooms = sessions
        .into_iter()
        .zip(chat)
        .map(|(session, chat)| {
            let name = session.room_id.to_string();
            let stream_media = origins
                .index_of(&session.origin_kind, &session.origin_server_id)
                .and_then(|index| media.get(&index))
                .and_then(|stats| stats.streams.iter().find(|m| m.name == name));
            let edge = state.edge_viewers().split(session.room_id);
            let viewers = Viewers {
                flv: edge.flv,
                hls: edge.hls,
                chat,
                origin: stream_media.and_then(|m| m.readers),
            };
            let job = jobs.get(&session.stream_id).map(String::as_str);
            room_of(session, stream_media, viewers, job, now)
        })
        .collect();
    Ok(LiveSnapshot { at: now, rooms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_state_follows_the_newest_job() {
        assert_eq!(recording_state(None, None), "off");
        assert_eq!(
            recording_state(None, Some("s3://recordings/42/1-42.mp4")),
            "recording"
        );
        assert_eq!(recording_state(Some("cleaned"), None), "recording");
        assert_eq!(recording_state(Some("uploading"), None), "uploading");
        assert_eq!(recording_state(Some("failed"), Some("x")), "failed");
    }

    #[test]
    fn the_total_counts_no_viewer_twice() {
        let viewers = Viewers {
            flv: 3,
            hls: 2,
            chat: 4,
            origin: Some(6),
        };
        assert_eq!(viewers.total(), 6);
        assert_eq!(
            Viewers {
                origin: None,
                chat: 9,
                ..viewers
            }
            .total(),
            9
        );
    }
}
