//! SRS 5/6: `GET /api/v1/streams` and `DELETE /api/v1/clients/{id}`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{OriginControl, OriginError, OriginStream, OriginStreams, StreamRef};
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
}
