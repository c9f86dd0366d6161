//! SRS 5/6: `GET /api/v1/streams` and `DELETE /api/v1/clients/{id}`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    AudioTrack, MediaStats, OriginControl, OriginError, OriginStream, OriginStreams, StreamMedia,
    StreamRef, VideoTrack,
};
use crate::secret::Secret;

/// What `GET /api/v1/streams` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsStreams {
    /// Error code; 0 on success.
    #[serde(default)]
    pub code: i64,
    /// The `server_id` (matches `server_id` in callbacks).
    #[serde(default)]
    pub server: String,
    /// The `service_id`: changes whenever SRS restarts.
    #[serde(default)]
    pub service: String,
    /// The streams SRS knows.
    #[serde(default)]
    pub streams: Vec<SrsStream>,
}

/// One entry of [`SrsStreams::streams`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsStream {
    /// Stat id (`vid-…`).
    #[serde(default)]
    pub id: String,
    /// Stream name.
    #[serde(default)]
    pub name: String,
    /// App name.
    #[serde(default)]
    pub app: String,
    /// The publisher, if any.
    #[serde(default)]
    pub publish: SrsPublish,
    /// Connections to the stream: its publisher and its players.
    #[serde(default)]
    pub clients: u64,
    /// Bitrates over the last 30 seconds.
    #[serde(default)]
    pub kbps: SrsKbps,
    /// The video track, once SRS has seen its sequence header.
    #[serde(default)]
    pub video: Option<SrsVideo>,
    /// The audio track, once SRS has seen its sequence header.
    #[serde(default)]
    pub audio: Option<SrsAudio>,
}

/// A stream's bitrates, kilobits per second.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsKbps {
    /// Received (from the publisher) over the last 30 s.
    #[serde(default)]
    pub recv_30s: u64,
    /// Sent (to players) over the last 30 s.
    #[serde(default)]
    pub send_30s: u64,
}

/// A stream's video track.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsVideo {
    /// `H264`, `H265`, …
    #[serde(default)]
    pub codec: String,
    /// Pixels.
    #[serde(default)]
    pub width: Option<u32>,
    /// Pixels.
    #[serde(default)]
    pub height: Option<u32>,
}

/// A stream's audio track.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsAudio {
    /// `AAC`, `Opus`, …
    #[serde(default)]
    pub codec: String,
}

/// What `GET /api/v1/clients` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsClients {
    /// Error code; 0 on success.
    #[serde(default)]
    pub code: i64,
    /// The connections SRS has.
    #[serde(default)]
    pub clients: Vec<SrsClient>,
}

/// One connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsClient {
    /// The client id (a stream's `publish.cid`).
    #[serde(default)]
    pub id: String,
    /// The peer's address.
    #[serde(default)]
    pub ip: String,
}

/// The publisher part of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SrsPublish {
    /// Whether a publisher is active (an entry survives while players remain).
    #[serde(default)]
    pub active: bool,
    /// The publisher's client id (matches `client_id` in callbacks).
    #[serde(default)]
    pub cid: Option<String>,
}

impl From<SrsStreams> for OriginStreams {
    fn from(listed: SrsStreams) -> Self {
        OriginStreams {
            server_id: listed.server,
            process_id: Some(listed.service),
            streams: listed
                .streams
                .into_iter()
                // An entry outlives its publisher while players remain.
                .filter(|stream| stream.publish.active)
                .map(|stream| OriginStream {
                    vhost: None,
                    app: stream.app,
                    name: stream.name,
                    publisher: stream.publish.cid,
                    readers: None,
                })
                .collect(),
        }
    }
}

impl SrsStreams {
    /// The media of the streams that have a publisher, with the publishers' addresses from
    /// `clients` (SRS's client listing) where it names them.
    pub fn into_media(self, clients: &[SrsClient]) -> MediaStats {
        let address = |cid: &Option<String>| {
            let cid = cid.as_deref()?;
            clients
                .iter()
                .find(|client| client.id == cid && !client.ip.is_empty())
                .map(|client| client.ip.clone())
        };
        MediaStats {
            streams: self
                .streams
                .into_iter()
                .filter(|stream| stream.publish.active)
                .map(|stream| StreamMedia {
                    vhost: None,
                    publisher_addr: address(&stream.publish.cid),
                    app: stream.app,
                    name: stream.name,
                    publisher: stream.publish.cid,
                    video: stream.video.map(|video| VideoTrack {
                        codec: video.codec,
                        width: video.width,
                        height: video.height,
                    }),
                    audio: stream.audio.map(|audio| AudioTrack { codec: audio.codec }),
                    bitrate_kbps: Some(stream.kbps.recv_30s),
                    // `clients` counts the publisher too.
                    readers: Some(stream.clients.saturating_sub(1)),
                })
                .collect(),
        }
    }
}

/// The SRS HTTP API.
#[derive(Debug, Clone)]
pub struct SrsApi {
    client: reqwest::Client,
    base: String,
    auth: Option<(String, Secret)>,
}

/// Large enough to list every stream: SRS clamps `count` to at least 10 and pages otherwise.
const STREAMS_PAGE: u32 = 10_000;

#[derive(Deserialize)]
struct CodeOnly {
    code: i64,
}

impl SrsApi {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:1985`), with HTTP basic auth
    /// when `username` is given.
    pub fn new(
        base: &str,
        username: Option<&str>,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, OriginError> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let auth = username.map(|user| {
            (
                user.to_owned(),
                password.cloned().unwrap_or_else(|| Secret::new("")),
            )
        });
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            auth,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password.expose())),
            None => request,
        }
    }

    /// `GET /api/v1/streams` as SRS answers it.
    pub async fn list(&self) -> Result<SrsStreams, OriginError> {
        let streams: SrsStreams = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/streams?start=0&count={STREAMS_PAGE}"),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if streams.code != 0 {
            return Err(OriginError::Code { code: streams.code });
        }
        Ok(streams)
    }

    /// `GET /api/v1/clients` as SRS answers it.
    pub async fn clients(&self) -> Result<SrsClients, OriginError> {
        let clients: SrsClients = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/clients?start=0&count={STREAMS_PAGE}"),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if clients.code != 0 {
            return Err(OriginError::Code { code: clients.code });
        }
        Ok(clients)
    }
}

#[async_trait]
impl OriginControl for SrsApi {
    async fn streams(&self) -> Result<OriginStreams, OriginError> {
        Ok(self.list().await?.into())
    }

    async fn kick(&self, stream: &StreamRef<'_>) -> Result<(), OriginError> {
        let client_id = stream
            .publisher
            .ok_or(OriginError::Incomplete("client id"))?;
        let path = format!(
            "/api/v1/clients/{}",
            percent_encoding::utf8_percent_encode(client_id, percent_encoding::NON_ALPHANUMERIC)
        );
        let reply: CodeOnly = self
            .request(reqwest::Method::DELETE, &path)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if reply.code != 0 {
            return Err(OriginError::Code { code: reply.code });
        }
        Ok(())
    }

    async fn stats(&self) -> Result<MediaStats, OriginError> {
        let streams = self.list().await?;
        // The addresses are a detail: without them the media facts still stand.
        let clients = match self.clients().await {
            Ok(listed) => listed.clients,
            Err(err) => {
                tracing::debug!(error = %err, "SRS client listing failed; publisher addresses unknown");
                Vec::new()
            }
        };
        Ok(streams.into_media(&clients))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_with_a_publisher_carry_their_media() {
        let listed: SrsStreams = serde_json::from_str(
            r#"{"code":0,"server":"vid-s","service":"y36bo341","streams":[
              {"id":"vid-2591469","name":"42","app":"live","clients":3,
               "kbps":{"recv_30s":812,"send_30s":1600},
               "publish":{"active":true,"cid":"70763180"},
               "video":{"codec":"H264","profile":"High","level":"3","width":640,"height":360},
               "audio":{"codec":"AAC","sample_rate":44100,"channel":1,"profile":"LC"}},
              {"id":"vid-x","name":"43","app":"live","clients":1,"publish":{"active":false},
               "video":null,"audio":null}]}"#,
        )
        .unwrap_or_default();
        let clients = [SrsClient {
            id: "70763180".to_owned(),
            ip: "192.0.2.7".to_owned(),
        }];
        let media = listed.into_media(&clients);
        assert_eq!(media.streams.len(), 1);
        let stream = &media.streams[0];
        assert_eq!(stream.name, "42");
        assert_eq!(stream.publisher_addr.as_deref(), Some("192.0.2.7"));
        assert_eq!(stream.bitrate_kbps, Some(812));
        assert_eq!(stream.readers, Some(2));
        assert_eq!(
            stream.video,
            Some(VideoTrack {
                codec: "H264".to_owned(),
                width: Some(640),
                height: Some(360)
            })
        );
        assert_eq!(stream.audio.as_ref().map(|a| a.codec.as_str()), Some("AAC"));
    }
}
