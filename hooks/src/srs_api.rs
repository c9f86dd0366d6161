//! The SRS HTTP API, behind a trait so that reconciliation can be tested without an SRS.

use std::time::Duration;

use async_trait::async_trait;
use livegate_core::Secret;
use serde::Deserialize;

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

/// Why an SRS API call failed.
#[derive(Debug, thiserror::Error)]
pub enum SrsApiError {
    /// The request did not complete.
    #[error("SRS API request failed")]
    Http(#[from] reqwest::Error),
    /// SRS answered with an error code.
    #[error("SRS API answered code {0}")]
    Code(i64),
}

/// The parts of the SRS HTTP API livegate uses.
#[async_trait]
pub trait SrsApi: Send + Sync + std::fmt::Debug {
    /// `GET /api/v1/streams?count=…`.
    async fn streams(&self) -> Result<SrsStreams, SrsApiError>;
    /// `DELETE /api/v1/clients/{id}`: disconnects a client.
    async fn kick(&self, client_id: &str) -> Result<(), SrsApiError>;
}

/// The real API over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSrsApi {
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

impl HttpSrsApi {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:1985`).
    pub fn new(
        base: &str,
        username: Option<&str>,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, SrsApiError> {
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
}

#[async_trait]
impl SrsApi for HttpSrsApi {
    async fn streams(&self) -> Result<SrsStreams, SrsApiError> {
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
            return Err(SrsApiError::Code(streams.code));
        }
        Ok(streams)
    }

    async fn kick(&self, client_id: &str) -> Result<(), SrsApiError> {
        let path = format!(
            "/api/v1/clients/{}",
            form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>()
        );
        let reply: CodeOnly = self
            .request(reqwest::Method::DELETE, &path)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if reply.code != 0 {
            return Err(SrsApiError::Code(reply.code));
        }
        Ok(())
    }
}
