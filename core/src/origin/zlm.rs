//! ZLMediaKit: `/index/api/getMediaList` and `/index/api/close_streams`, authorised by the
//! server's `api.secret`.
//!
//! The secret travels in a form body rather than the URL, so that no access log or error
//! message along the way records it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    AudioTrack, MediaStats, OriginControl, OriginError, OriginStream, OriginStreams, StreamMedia,
    StreamRef, VideoTrack,
};
use crate::secret::Secret;

/// ZLMediaKit's name of the default virtual host.
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

/// What `getMediaList` says: one entry per stream and schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MediaList {
    /// Error code; 0 on success.
    #[serde(default)]
    pub code: i64,
    /// The media sources.
    #[serde(default)]
    pub data: Vec<MediaSource>,
}

/// One media source (a stream in one schema), as `makeMediaSourceJson` writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaSource {
    /// `rtmp`, `rtsp`, `hls`, `ts`, `fmp4`, …
    #[serde(default)]
    pub schema: String,
    /// Virtual host.
    #[serde(default)]
    pub vhost: String,
    /// Application.
    #[serde(default)]
    pub app: String,
    /// Stream name.
    #[serde(default)]
    pub stream: String,
    /// Viewers of this schema.
    #[serde(default)]
    pub reader_count: u64,
    /// Viewers of the stream over every schema.
    #[serde(default)]
    pub total_reader_count: Option<u64>,
    /// The publisher's connection; `null` for sources without one.
    #[serde(default)]
    pub origin_sock: Option<OriginSock>,
    /// How fast the source produces data, bytes per second.
    #[serde(default)]
    pub bytes_speed: Option<u64>,
    /// The source's tracks.
    #[serde(default)]
    pub tracks: Vec<MediaTrack>,
}

/// The publisher's connection of a media source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OriginSock {
    /// The connection id that `on_publish` named as `id`.
    #[serde(default)]
    pub identifier: String,
    /// The publisher's address.
    #[serde(default)]
    pub peer_ip: String,
    /// The publisher's port.
    #[serde(default)]
    pub peer_port: Option<u16>,
}

/// One track of a media source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MediaTrack {
    /// ZLMediaKit's `CodecId`: 0 H264, 1 H265, 2 AAC, 3 G711A, 4 G711U, 5 Opus, …
    #[serde(default)]
    pub codec_id: Option<i64>,
    /// The codec's name as ZLMediaKit spells it (RTSP names: AAC is `mpeg4-generic`).
    #[serde(default)]
    pub codec_id_name: String,
    /// 0 video, 1 audio.
    #[serde(default)]
    pub codec_type: i64,
    /// Pixels (video).
    #[serde(default)]
    pub width: Option<u32>,
    /// Pixels (video).
    #[serde(default)]
    pub height: Option<u32>,
}

impl MediaTrack {
    /// The codec's common name.
    fn codec(&self) -> String {
        let known = match self.codec_id {
            Some(0) => "H264",
            Some(1) => "H265",
            Some(2) => "AAC",
            Some(3) => "G711A",
            Some(4) => "G711U",
            Some(5) => "Opus",
            Some(7) => "VP8",
            Some(8) => "VP9",
            Some(9) => "AV1",
            _ => return self.codec_id_name.clone(),
        };
        known.to_owned()
    }
}

impl MediaList {
    /// The sources merged into one entry per stream (vhost, app, name).
    pub fn into_streams(self, server_id: &str) -> OriginStreams {
        let mut merged: BTreeMap<(String, String, String), OriginStream> = BTreeMap::new();
        for source in self.data {
            let key = (
                source.vhost.clone(),
                source.app.clone(),
                source.stream.clone(),
            );
            let entry = merged.entry(key).or_insert_with(|| OriginStream {
                vhost: Some(source.vhost),
                app: source.app,
                name: source.stream,
                publisher: None,
                readers: Some(0),
            });
            if entry.publisher.is_none() {
                entry.publisher = source
                    .origin_sock
                    .map(|sock| sock.identifier)
                    .filter(|id| !id.is_empty());
            }
            // `totalReaderCount` already sums every schema; older servers lack it.
            let readers = entry.readers.unwrap_or(0);
            entry.readers = Some(match source.total_reader_count {
                Some(total) => readers.max(total),
                None => readers + source.reader_count,
            });
        }
        OriginStreams {
            server_id: server_id.to_owned(),
            process_id: None,
            streams: merged.into_values().collect(),
        }
    }
}

impl MediaList {
    /// The media of every stream that has a publisher, its sources (one per schema) merged.
    pub fn into_media(self) -> MediaStats {
        let mut merged: BTreeMap<(String, String, String), StreamMedia> = BTreeMap::new();
        for source in self.data {
            let key = (
                source.vhost.clone(),
                source.app.clone(),
                source.stream.clone(),
            );
            let entry = merged.entry(key).or_insert_with(|| StreamMedia {
                vhost: Some(source.vhost.clone()),
                app: source.app.clone(),
                name: source.stream.clone(),
                readers: Some(0),
                ..StreamMedia::default()
            });
            if let Some(sock) = source
                .origin_sock
                .as_ref()
                .filter(|s| !s.identifier.is_empty())
            {
                entry
                    .publisher
                    .get_or_insert_with(|| sock.identifier.clone());
                if entry.publisher_addr.is_none() && !sock.peer_ip.is_empty() {
                    entry.publisher_addr = Some(match sock.peer_port {
                        Some(port) => format!("{}:{port}", sock.peer_ip),
                        None => sock.peer_ip.clone(),
                    });
                }
            }
            for track in &source.tracks {
                match track.codec_type {
                    0 if entry.video.is_none() => {
                        entry.video = Some(VideoTrack {
                            codec: track.codec(),
                            width: track.width,
                            height: track.height,
                        });
                    }
                    1 if entry.audio.is_none() => {
                        entry.audio = Some(AudioTrack {
                            codec: track.codec(),
                        });
                    }
                    _ => {}
                }
            }
            // Every schema remuxes the same input: the fastest is the publisher's rate.
            if let Some(speed) = source.bytes_speed {
                let kbps = speed.saturating_mul(8) / 1000;
                entry.bitrate_kbps = Some(entry.bitrate_kbps.map_or(kbps, |k| k.max(kbps)));
            }
            let readers = entry.readers.unwrap_or(0);
            entry.readers = Some(match source.total_reader_count {
                Some(total) => readers.max(total),
                None => readers + source.reader_count,
            });
        }
        MediaStats {
            streams: merged
                .into_values()
                .filter(|stream| stream.publisher.is_some())
                .collect(),
        }
    }
}

#[derive(Deserialize)]
struct CodeOnly {
    code: i64,
}

/// The ZLMediaKit HTTP API of one server.
#[derive(Debug, Clone)]
pub struct ZlmApi {
    client: reqwest::Client,
    base: String,
    secret: Secret,
    server_id: String,
}

impl ZlmApi {
    /// A client for the API at `base` (ZLMediaKit's HTTP server, e.g. `http://127.0.0.1:8081`)
    /// of the server whose `general.mediaServerId` is `server_id`.
    pub fn new(
        base: &str,
        secret: Secret,
        server_id: &str,
        timeout: Duration,
    ) -> Result<Self, OriginError> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_owned(),
            secret,
            server_id: server_id.to_owned(),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        api: &str,
        params: &[(&str, &str)],
    ) -> Result<T, OriginError> {
        let mut form = vec![("secret", self.secret.expose())];
        form.extend_from_slice(params);
        Ok(self
            .client
            .post(format!("{}/index/api/{api}", self.base))
            .form(&form)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// `getMediaList` as ZLMediaKit answers it.
    pub async fn media_list(&self) -> Result<MediaList, OriginError> {
        let list: MediaList = self.call("getMediaList", &[]).await?;
        if list.code != 0 {
            return Err(OriginError::Code { code: list.code });
        }
        Ok(list)
    }
}

#[async_trait]
impl OriginControl for ZlmApi {
    async fn streams(&self) -> Result<OriginStreams, OriginError> {
        Ok(self.media_list().await?.into_streams(&self.server_id))
    }

    async fn kick(&self, stream: &StreamRef<'_>) -> Result<(), OriginError> {
        let reply: CodeOnly = self
            .call(
                "close_streams",
                &[
                    ("vhost", stream.vhost.unwrap_or(DEFAULT_VHOST)),
                    ("app", stream.app.unwrap_or("live")),
                    ("stream", stream.name),
                    // Closed even while viewers watch it.
                    ("force", "1"),
                ],
            )
            .await?;
        if reply.code != 0 {
            return Err(OriginError::Code { code: reply.code });
        }
        Ok(())
    }

    async fn stats(&self) -> Result<MediaStats, OriginError> {
        Ok(self.media_list().await?.into_media())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_merge_into_one_stream_with_its_readers() {
        let list: MediaList = serde_json::from_str(
            r#"{"code":0,"data":[
              {"schema":"rtmp","vhost":"__defaultVhost__","app":"live","stream":"42","readerCount":1,
               "totalReaderCount":3,"originSock":{"identifier":"10-11","local_ip":"127.0.0.1"}},
              {"schema":"hls","vhost":"__defaultVhost__","app":"live","stream":"42","readerCount":2,
               "totalReaderCount":3,"originSock":{"identifier":"10-11"}},
              {"schema":"rtsp","vhost":"__defaultVhost__","app":"live","stream":"43","readerCount":0,
               "originSock":null}]}"#,
        )
        .unwrap_or_default();
        let streams = list.into_streams("zlm-1");
        assert_eq!(streams.server_id, "zlm-1");
        assert_eq!(streams.streams.len(), 2);
        assert_eq!(streams.streams[0].name, "42");
        assert_eq!(streams.streams[0].publisher.as_deref(), Some("10-11"));
        assert_eq!(streams.streams[0].readers, Some(3));
        assert_eq!(streams.streams[1].publisher, None);
        assert_eq!(streams.streams[1].readers, Some(0));
    }
}
