//! ZLMediaKit: `/index/api/getMediaList` and `/index/api/close_streams`, authorised by the
//! server's `api.secret`.
//!
//! The secret travels in a form body rather than the URL, so that no access log or error
//! message along the way records it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{OriginControl, OriginError, OriginStream, OriginStreams, StreamRef};
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
}

/// The publisher's connection of a media source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OriginSock {
    /// The connection id that `on_publish` named as `id`.
    #[serde(default)]
    pub identifier: String,
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
