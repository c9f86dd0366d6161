//! nginx-rtmp's control module (`rtmp_control all;` in an HTTP `location /control`):
//! `GET /control/drop/publisher?app=…&name=…`.

use std::time::Duration;

use async_trait::async_trait;

use super::{OriginControl, OriginError, OriginStreams, StreamRef};

/// The control handler of one nginx-rtmp server.
#[derive(Debug, Clone)]
pub struct NginxRtmpControl {
    client: reqwest::Client,
    base: String,
}

impl NginxRtmpControl {
    /// A client for the control handler under `base` (the URL its `location` serves, e.g.
    /// `http://127.0.0.1:8081/control`).
    pub fn new(base: &str, timeout: Duration) -> Result<Self, OriginError> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }
}

#[async_trait]
impl OriginControl for NginxRtmpControl {
    async fn streams(&self) -> Result<OriginStreams, OriginError> {
        // The control module lists nothing; only the stat module does, as XML.
        Err(OriginError::Unsupported("listing streams"))
    }

    async fn kick(&self, stream: &StreamRef<'_>) -> Result<(), OriginError> {
        // The module answers 200 with the number of dropped connections, and an empty 2xx when
        // it found none: either way the publisher is gone.
        self.client
            .get(format!("{}/drop/publisher", self.base))
            .query(&[("app", stream.app.unwrap_or("live")), ("name", stream.name)])
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}
