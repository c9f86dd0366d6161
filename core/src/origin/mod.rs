//! The origins' control APIs behind one trait: list what an origin is carrying, describe its
//! streams' media, and kick a publisher. The hooks service reconciles its streams with
//! [`OriginControl::streams`]; a room API kicks through [`OriginControl::kick`] and shows what
//! is live with [`OriginControl::stats`]. One implementation per origin software:
//! [`srs::SrsApi`] (`/api/v1/streams`, `/api/v1/clients`, `DELETE /api/v1/clients/{id}`),
//! [`zlm::ZlmApi`] (`/index/api/getMediaList`, `/index/api/close_streams`) and
//! [`nginx::NginxRtmpControl`] (`/control/drop/publisher`, and the stat module's XML).

pub mod nginx;
pub mod srs;
pub mod zlm;

use async_trait::async_trait;

/// What an origin reports it is carrying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginStreams {
    /// The origin's server id, as its callbacks name it (SRS `server_id`, ZLMediaKit
    /// `mediaServerId`).
    pub server_id: String,
    /// The id of the origin's current process, when it has one (SRS `service_id`, which
    /// changes on every restart).
    pub process_id: Option<String>,
    /// One entry per stream that has a publisher.
    pub streams: Vec<OriginStream>,
}

/// One published stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginStream {
    /// Virtual host, when the origin has them.
    pub vhost: Option<String>,
    /// Application (`live`).
    pub app: String,
    /// Stream name (livegate's room id).
    pub name: String,
    /// The publisher's connection id, as the publish callback named it.
    pub publisher: Option<String>,
    /// Viewers the origin counts right now, when it reports them.
    pub readers: Option<u64>,
}

/// What an origin reports about the media of the streams it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// One entry per stream that has a publisher.
    pub streams: Vec<StreamMedia>,
}

/// The media facts of one published stream; `None` where the origin does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamMedia {
    /// Virtual host, when the origin has them.
    pub vhost: Option<String>,
    /// Application (`live`).
    pub app: String,
    /// Stream name (livegate's room id).
    pub name: String,
    /// The publisher's connection id.
    pub publisher: Option<String>,
    /// The publisher's address (`ip` or `ip:port`).
    pub publisher_addr: Option<String>,
    /// The video track.
    pub video: Option<VideoTrack>,
    /// The audio track.
    pub audio: Option<AudioTrack>,
    /// What the publisher sends, in kilobits per second.
    pub bitrate_kbps: Option<u64>,
    /// Viewers the origin serves right now.
    pub readers: Option<u64>,
}

/// A stream's video.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoTrack {
    /// `H264`, `H265`, …
    pub codec: String,
    /// Pixels.
    pub width: Option<u32>,
    /// Pixels.
    pub height: Option<u32>,
}

/// A stream's audio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioTrack {
    /// `AAC`, `Opus`, …
    pub codec: String,
}

/// Which stream's publisher to kick. Each origin uses the parts it knows the publisher by:
/// SRS its connection id, ZLMediaKit vhost, app and stream name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef<'a> {
    /// Virtual host; the origin's default when `None`.
    pub vhost: Option<&'a str>,
    /// Application; `live` when `None`.
    pub app: Option<&'a str>,
    /// Stream name.
    pub name: &'a str,
    /// The publisher's connection id.
    pub publisher: Option<&'a str>,
}

/// Why a call to an origin's API failed. Never carries the request URL or a secret.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The request did not complete or the answer was not what the API documents.
    #[error("origin API request failed")]
    Http(#[source] reqwest::Error),
    /// The origin answered with an error code.
    #[error("origin API answered code {code}")]
    Code {
        /// The origin's code.
        code: i64,
    },
    /// The stream reference lacks what this origin needs to find the publisher.
    #[error("cannot kick on this origin without the publisher's {0}")]
    Incomplete(&'static str),
    /// This origin's API cannot do what was asked.
    #[error("this origin's API does not support {0}")]
    Unsupported(&'static str),
    /// The answer arrived but is not what the API documents.
    #[error("origin API answer not understood: {0}")]
    Malformed(String),
}

impl From<reqwest::Error> for OriginError {
    fn from(err: reqwest::Error) -> Self {
        // reqwest's message names the URL, which may carry a secret in its query.
        OriginError::Http(err.without_url())
    }
}

/// The control API of one origin server.
#[async_trait]
pub trait OriginControl: Send + Sync + std::fmt::Debug {
    /// The streams the origin carries now.
    async fn streams(&self) -> Result<OriginStreams, OriginError>;
    /// Disconnects the publisher of `stream`; its stop callback then closes the stream.
    async fn kick(&self, stream: &StreamRef<'_>) -> Result<(), OriginError>;
    /// The media of the streams the origin carries now (codecs, resolution, bitrate, the
    /// publisher's address). An origin whose API has no such listing says
    /// [`OriginError::Unsupported`].
    async fn stats(&self) -> Result<MediaStats, OriginError> {
        Err(OriginError::Unsupported("media statistics"))
    }
}
