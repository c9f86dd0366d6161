//! The origins: which one serves a stream, how to reach it, and a bounded fetch for the small
//! responses (playlists) that the proxy reads whole before answering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, StatusCode};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::Consistent;
use pingora::lb::LoadBalancer;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::client::HttpSession;

use crate::config::{HealthCheckKind, OriginConfig, TimeoutsConfig};

/// How many ring positions consistent hashing may walk to find a healthy origin.
const MAX_SELECTION_STEPS: usize = 256;

/// Pooled connections tried before a fresh one: the origin may have closed several while idle.
const MAX_STALE_CONNECTIONS: usize = 3;

/// Builds the origin set with its health check; the caller runs it as a background service.
pub fn origin_pool(config: &OriginConfig) -> std::io::Result<LoadBalancer<Consistent>> {
    let mut pool =
        LoadBalancer::<Consistent>::try_from_iter(config.addresses.iter().map(String::as_str))?;
    let check: Box<dyn HealthCheck + Send + Sync> = match config.health_check {
        HealthCheckKind::Tcp => TcpHealthCheck::new(),
        HealthCheckKind::Http => {
            let host = config.host.as_deref().unwrap_or("localhost");
            let mut check = HttpHealthCheck::new(host, false);
            let mut request =
                RequestHeader::build("GET", config.health_check_path.as_bytes(), None)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            request
                .insert_header(header::HOST, host)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            check.req = request;
            Box::new(check)
        }
    };
    pool.set_health_check(check);
    pool.health_check_frequency = Some(Duration::from_millis(config.health_check_interval_ms));
    Ok(pool)
}

/// One origin server, chosen for a stream.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// `ip:port`, the `Host` it is sent when nothing else is configured.
    pub authority: String,
    backend: pingora::lb::Backend,
}

/// Why a bounded fetch produced no response.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The origin did not deliver the whole response in time.
    #[error("origin did not answer in time")]
    Timeout,
    /// The body is larger than allowed.
    #[error("response body exceeds the size limit")]
    TooLarge,
    /// Connecting, writing or reading failed.
    #[error("origin request failed: {0}")]
    Origin(Box<pingora::Error>),
}

impl FetchError {
    /// Whether the origin was too slow (504) rather than broken or refusing (502).
    pub fn is_timeout(&self) -> bool {
        match self {
            FetchError::Timeout => true,
            FetchError::Origin(err) => is_timeout(err.etype()),
            FetchError::TooLarge => false,
        }
    }
}

/// Whether a Pingora error type means the origin did not answer in time.
pub fn is_timeout(etype: &pingora::ErrorType) -> bool {
    matches!(
        etype,
        pingora::ErrorType::ConnectTimedout
            | pingora::ErrorType::ReadTimedout
            | pingora::ErrorType::WriteTimedout
    )
}

impl From<Box<pingora::Error>> for FetchError {
    fn from(err: Box<pingora::Error>) -> Self {
        FetchError::Origin(err)
    }
}

/// A response read whole from the origin.
#[derive(Debug)]
pub struct Fetched {
    /// The origin's status.
    pub status: StatusCode,
    /// The origin's `Content-Type`.
    pub content_type: Option<String>,
    /// The origin's `Location`, for redirects.
    pub location: Option<String>,
    /// The origin's `Cache-Control`.
    pub cache_control: Option<String>,
    /// The body (at most the limit asked for).
    pub body: Bytes,
    /// Time from sending the request to reading the response header.
    pub header_latency: Duration,
}

/// Picks origins and talks to them.
pub struct OriginClient {
    pool: Arc<LoadBalancer<Consistent>>,
    connector: Connector,
    connect_timeout: Duration,
    fetch_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    idle_timeout: Duration,
}

impl OriginClient {
    /// Wraps a (health-checked) pool with the configured timeouts.
    pub fn new(pool: Arc<LoadBalancer<Consistent>>, timeouts: &TimeoutsConfig) -> OriginClient {
        OriginClient {
            pool,
            connector: Connector::new(None),
            connect_timeout: timeouts.connect(),
            fetch_timeout: timeouts.fetch(),
            read_timeout: timeouts.upstream_read(),
            write_timeout: timeouts.upstream_write(),
            idle_timeout: timeouts.upstream_idle(),
        }
    }

    /// The origin for `stream_key`: always the same one while it is healthy.
    pub fn select(&self, stream_key: &str) -> Option<Origin> {
        let backend = self
            .pool
            .select(stream_key.as_bytes(), MAX_SELECTION_STEPS)?;
        let addr = backend.addr.as_inet().copied()?;
        Some(Origin {
            authority: addr.to_string(),
            addr,
            backend,
        })
    }

    /// A Pingora peer for `origin`, with the configured timeouts.
    pub fn peer(&self, origin: &Origin) -> Box<HttpPeer> {
        self.peer_at(HttpPeer::new(origin.backend.clone(), false, String::new()))
    }

    /// Sends `request` with `body` to `addr` (an origin's API address, say) and reads the
    /// whole answer, as [`OriginClient::fetch`] does.
    pub async fn send_to(
        &self,
        addr: std::net::SocketAddr,
        request: RequestHeader,
        body: Bytes,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let peer = self.peer_at(HttpPeer::new(addr, false, String::new()));
        tokio::time::timeout(
            self.fetch_timeout,
            self.fetch_from(&peer, request, Some(body), max_bytes),
        )
        .await
        .map_err(|_| FetchError::Timeout)?
    }

    fn peer_at(&self, mut peer: HttpPeer) -> Box<HttpPeer> {
        let options = &mut peer.options;
        options.connection_timeout = Some(self.connect_timeout);
        options.total_connection_timeout = Some(self.connect_timeout * 2);
        // Reset after every read, so for an endless FLV body this is an idle timeout.
        options.read_timeout = Some(self.read_timeout);
        options.write_timeout = Some(self.write_timeout);
        options.idle_timeout = Some(self.idle_timeout);
        Box::new(peer)
    }

    /// Sends `request` to `origin` and reads the whole response within `timeouts.fetch_ms`,
    /// refusing bodies over `max_bytes`. A pooled connection that turns out to have been closed
    /// by the origin is replaced and the request sent again.
    pub async fn fetch(
        &self,
        origin: &Origin,
        request: RequestHeader,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let peer = self.peer(origin);
        tokio::time::timeout(
            self.fetch_timeout,
            self.fetch_from(&peer, request, None, max_bytes),
        )
        .await
        .map_err(|_| FetchError::Timeout)?
    }

    async fn fetch_from(
        &self,
        peer: &HttpPeer,
        request: RequestHeader,
        body: Option<Bytes>,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let mut stale = 0;
        loop {
            let (session, reused) = self.connector.get_http_session(peer).await?;
            match self
                .exchange(session, peer, request.clone(), body.clone(), max_bytes)
                .await
            {
                Err(FetchError::Origin(mut err)) if reused && stale < MAX_STALE_CONNECTIONS => {
                    // Errors on a reused connection leave the retry decision open until told
                    // whether the connection was reused; asking before deciding panics.
                    err.retry.decide_reuse(true);
                    if !err.retry() {
                        return Err(FetchError::Origin(err));
                    }
                    stale += 1;
                }
                other => return other,
            }
        }
    }

    async fn exchange(
        &self,
        mut session: HttpSession,
        peer: &HttpPeer,
        request: RequestHeader,
        body: Option<Bytes>,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        session.set_read_timeout(Some(self.read_timeout));
        session.set_write_timeout(Some(self.write_timeout));
        let sent = Instant::now();
        session.write_request_header(Box::new(request)).await?;
        if let Some(body) = body.filter(|body| !body.is_empty()) {
            session.write_request_body(body, true).await?;
        }
        session.finish_request_body().await?;
        session.read_response_header().await?;
        let header_latency = sent.elapsed();
        let header = session.response_header().ok_or_else(|| {
            FetchError::Origin(pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "origin sent no response header",
            ))
        })?;
        let status = header.status;
        let text_header = |name| {
            header
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = text_header(header::CONTENT_TYPE);
        let location = text_header(header::LOCATION);
        let cache_control = text_header(header::CACHE_CONTROL);
        let declared_len = header
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared_len.is_some_and(|len| len > max_bytes) {
            // Not worth draining: drop the connection instead of pooling it.
            return Err(FetchError::TooLarge);
        }
        let mut body = BytesMut::with_capacity(declared_len.unwrap_or(4096).min(max_bytes));
        while let Some(chunk) = session.read_response_body().await? {
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if session.response_done() {
            self.connector
                .release_http_session(session, peer, Some(self.idle_timeout))
                .await;
        }
        Ok(Fetched {
            status,
            content_type,
            location,
            cache_control,
            body: body.freeze(),
            header_latency,
        })
    }
}
