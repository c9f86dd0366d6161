//! The origins: which one serves a stream, how to reach it, and bounded fetches: a response read
//! whole (playlists, signalling), or one handed on a piece at a time as it arrives (segments
//! filling the cache).

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

/// Why a bounded fetch produced no (whole) response.
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
    /// The fetch stopped without an answer (the proxy is shutting down).
    #[error("origin request abandoned")]
    Abandoned,
    /// The finished body could not be read back from where the cache keeps it.
    #[error("reading the cached body failed: {0}")]
    CachedBody(String),
}

impl FetchError {
    /// Whether the origin was too slow (504) rather than broken or refusing (502).
    pub fn is_timeout(&self) -> bool {
        match self {
            FetchError::Timeout => true,
            FetchError::Origin(err) => is_timeout(err.etype()),
            FetchError::TooLarge | FetchError::Abandoned | FetchError::CachedBody(_) => false,
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

/// What the proxy keeps of an origin's response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The origin's status.
    pub status: StatusCode,
    /// The origin's `Content-Type`.
    pub content_type: Option<String>,
    /// The origin's `Location`, for redirects.
    pub location: Option<String>,
    /// The origin's `Cache-Control`.
    pub cache_control: Option<String>,
    /// The origin's `Content-Length` (`None`: chunked or until close).
    pub content_length: Option<usize>,
}

impl ResponseHead {
    fn from_header(header: &pingora::http::ResponseHeader) -> ResponseHead {
        let text = |name| {
            header
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        ResponseHead {
            status: header.status,
            content_type: text(header::CONTENT_TYPE),
            location: text(header::LOCATION),
            cache_control: text(header::CACHE_CONTROL),
            content_length: header
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok()),
        }
    }
}

/// A response read whole from the origin.
#[derive(Debug)]
pub struct Fetched {
    /// Its head.
    pub head: ResponseHead,
    /// The body (at most the limit asked for).
    pub body: Bytes,
    /// Time from sending the request to reading the response header.
    pub header_latency: Duration,
}

/// A response being read from the origin: its head at once, its body a piece at a time as the
/// origin sends it, within the size limit and with at most `timeouts.upstream_read_s` between
/// reads (and, when asked, within the fetch deadline as a whole). Reading it to its end puts
/// the connection back in the pool; dropping it before closes the connection.
pub struct OriginResponse {
    /// Its head.
    pub head: ResponseHead,
    /// Time from sending the request to reading the response header.
    pub header_latency: Duration,
    session: Option<HttpSession>,
    peer: Box<HttpPeer>,
    client: Arc<OriginClient>,
    deadline: tokio::time::Instant,
    /// Whether the body too must be in by `deadline`.
    whole_by_deadline: bool,
    max_bytes: usize,
    received: usize,
}

impl std::fmt::Debug for OriginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginResponse")
            .field("head", &self.head)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl OriginResponse {
    /// The next piece of the body as the origin sent it; `None` at its end. A body cut short by
    /// the origin, one over the size limit and one not complete by the deadline are errors.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        loop {
            let Some(session) = self.session.as_mut() else {
                return Ok(None);
            };
            let read = if self.whole_by_deadline {
                tokio::time::timeout_at(self.deadline, session.read_response_body())
                    .await
                    .map_err(|_| FetchError::Timeout)??
            } else {
                session.read_response_body().await?
            };
            match read {
                Some(chunk) if chunk.is_empty() => continue,
                Some(chunk) => {
                    self.received += chunk.len();
                    if self.received > self.max_bytes {
                        return Err(FetchError::TooLarge);
                    }
                    return Ok(Some(chunk));
                }
                None => {
                    if let Some(mut session) = self.session.take() {
                        if session.response_done() {
                            self.client
                                .connector
                                .release_http_session(
                                    session,
                                    &*self.peer,
                                    Some(self.client.idle_timeout),
                                )
                                .await;
                        }
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The origin's response header as it was received, every field included (for answers
    /// relayed to the viewer as the origin sent them).
    pub fn header(&self) -> Option<&pingora::http::ResponseHeader> {
        self.session.as_ref()?.response_header()
    }

    /// Holds the body to the fetch deadline too (for responses read whole before they are
    /// answered: nobody sees a byte of them until then).
    pub fn whole_by_deadline(mut self) -> OriginResponse {
        self.whole_by_deadline = true;
        self
    }

    /// Reads the rest of the body into one buffer, within the fetch deadline.
    pub async fn read_whole(mut self) -> Result<Fetched, FetchError> {
        self.whole_by_deadline = true;
        let mut body =
            BytesMut::with_capacity(self.head.content_length.unwrap_or(4096).min(self.max_bytes));
        while let Some(chunk) = self.next_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            head: self.head.clone(),
            body: body.freeze(),
            header_latency: self.header_latency,
        })
    }
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
        self: &Arc<Self>,
        addr: std::net::SocketAddr,
        request: RequestHeader,
        body: Bytes,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let peer = self.peer_at(HttpPeer::new(addr, false, String::new()));
        self.open_peer(peer, request, Some(body), max_bytes, self.fetch_timeout)
            .await?
            .read_whole()
            .await
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
    /// refusing bodies over `max_bytes`.
    pub async fn fetch(
        self: &Arc<Self>,
        origin: &Origin,
        request: RequestHeader,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        self.open(origin, request, max_bytes)
            .await?
            .read_whole()
            .await
    }

    /// Sends `request` to `origin` and returns once its response header is in, within
    /// `timeouts.fetch_ms`, with the body to be read as it arrives. The body may not exceed
    /// `max_bytes` (a declared larger one is refused at once). A pooled connection that turns
    /// out to have been closed by the origin is replaced and the request sent again.
    pub async fn open(
        self: &Arc<Self>,
        origin: &Origin,
        request: RequestHeader,
        max_bytes: usize,
    ) -> Result<OriginResponse, FetchError> {
        self.open_peer(
            self.peer(origin),
            request,
            None,
            max_bytes,
            self.fetch_timeout,
        )
        .await
    }

    /// Sends `request` to `origin` for a body of any size that is relayed as it arrives, and
    /// returns once its response header is in. The header may take as long as a proxied
    /// request's would: the connect timeouts and one read timeout, not the fetch deadline of a
    /// response that is answered only once it is whole.
    pub async fn open_relay(
        self: &Arc<Self>,
        origin: &Origin,
        request: RequestHeader,
    ) -> Result<OriginResponse, FetchError> {
        let header_within = self.connect_timeout * 2 + self.read_timeout;
        self.open_peer(self.peer(origin), request, None, usize::MAX, header_within)
            .await
    }

    async fn open_peer(
        self: &Arc<Self>,
        peer: Box<HttpPeer>,
        request: RequestHeader,
        body: Option<Bytes>,
        max_bytes: usize,
        header_within: Duration,
    ) -> Result<OriginResponse, FetchError> {
        let deadline = tokio::time::Instant::now() + header_within;
        let mut stale = 0;
        loop {
            let attempt = async {
                let (session, reused) = self.connector.get_http_session(&*peer).await?;
                let answer = self
                    .send_request(session, request.clone(), body.clone())
                    .await;
                Ok::<_, FetchError>((answer, reused))
            };
            let (answer, reused) = tokio::time::timeout_at(deadline, attempt)
                .await
                .map_err(|_| FetchError::Timeout)??;
            match answer {
                Err(FetchError::Origin(mut err)) if reused && stale < MAX_STALE_CONNECTIONS => {
                    // Errors on a reused connection leave the retry decision open until told
                    // whether the connection was reused; asking before deciding panics.
                    err.retry.decide_reuse(true);
                    if !err.retry() {
                        return Err(FetchError::Origin(err));
                    }
                    stale += 1;
                }
                Err(err) => return Err(err),
                Ok((session, head, header_latency)) => {
                    if head.content_length.is_some_and(|len| len > max_bytes) {
                        // Not worth draining: the connection is dropped instead of pooled.
                        return Err(FetchError::TooLarge);
                    }
                    return Ok(OriginResponse {
                        head,
                        header_latency,
                        session: Some(session),
                        peer,
                        client: self.clone(),
                        deadline,
                        whole_by_deadline: false,
                        max_bytes,
                        received: 0,
                    });
                }
            }
        }
    }

    /// Writes the request and reads the response header.
    async fn send_request(
        &self,
        mut session: HttpSession,
        request: RequestHeader,
        body: Option<Bytes>,
    ) -> Result<(HttpSession, ResponseHead, Duration), FetchError> {
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
        let head = session
            .response_header()
            .map(ResponseHead::from_header)
            .ok_or_else(|| {
                FetchError::Origin(pingora::Error::explain(
                    pingora::ErrorType::InvalidHTTPHeader,
                    "origin sent no response header",
                ))
            })?;
        Ok((session, head, header_latency))
    }
}
