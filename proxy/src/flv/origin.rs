//! The origin side of HTTP-FLV: one connection per stream pull, on hyper's HTTP/1 client
//! connection. hyper applies RFC 9112's framing rules (chunked, sized or close-delimited bodies;
//! conflicting `Content-Length`s refused; trailers bounded); a response framed both ways is
//! refused here, rather than guessing which framing the next hop would believe.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderName, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use pingora::http::ResponseHeader;
use tokio::net::TcpStream;

/// The origin connection's read buffer, and so the largest response head accepted.
pub const READ_CHUNK: usize = 16 * 1024;

/// Response headers not passed on: those that describe the origin connection, not the
/// content, and `Server`, which names the origin's software and version to anyone who asks
/// (as nginx's `proxy_pass` hides it).
const NOT_PASSED: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::SERVER,
];

/// Why the origin gave no (or no more) stream.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// Connecting to the origin failed.
    #[error("connecting to the origin: {0}")]
    Connect(std::io::Error),
    /// Connecting to the origin took longer than the connect timeout.
    #[error("connecting to the origin timed out")]
    ConnectTimeout,
    /// The origin sent nothing for longer than the read timeout (or did not take the request).
    #[error("the origin went silent")]
    Timeout,
    /// The origin's response is not valid HTTP/1, or its connection broke.
    #[error("invalid response from the origin: {0}")]
    Http(#[from] hyper::Error),
    /// The origin's response is valid HTTP/1 but not acceptable.
    #[error("invalid response from the origin: {0}")]
    Protocol(&'static str),
}

impl OriginError {
    /// Whether the origin was too slow (504) rather than broken or refusing (502).
    pub fn is_timeout(&self) -> bool {
        matches!(self, OriginError::ConnectTimeout | OriginError::Timeout)
    }
}

/// The request sent to the origin.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `GET`/`HEAD`.
    pub method: Method,
    /// Path and query, as the origin should see them.
    pub target: String,
    /// Headers to send (Host, …).
    pub headers: Vec<(HeaderName, String)>,
}

/// Timeouts of the origin connection.
#[derive(Debug, Clone, Copy)]
pub struct OriginTimeouts {
    /// Origin connect timeout.
    pub connect: Duration,
    /// Longest silence from the origin.
    pub read: Duration,
    /// Longest wait to send the request head to the origin.
    pub write: Duration,
}

type Connection = http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>;

/// An open origin response: its head was read, its body is read on demand.
pub struct OriginStream {
    // Drives the connection; it completes once the response is over.
    connection: Pin<Box<Connection>>,
    connection_done: bool,
    body: Incoming,
    empty: bool,
    read_timeout: Duration,
}

impl std::fmt::Debug for OriginStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginStream").finish_non_exhaustive()
    }
}

/// What [`OriginStream::open`] got.
#[derive(Debug)]
pub struct Opened {
    /// The response head (hop-by-hop headers removed).
    pub head: ResponseHeader,
    /// Time from sending the request to the complete head.
    pub latency: Duration,
    /// The body.
    pub stream: OriginStream,
}

impl OriginStream {
    /// Connects, sends `request` and reads the response head.
    pub async fn open(
        request: &OriginRequest,
        timeouts: OriginTimeouts,
    ) -> Result<Opened, OriginError> {
        let tcp = tokio::time::timeout(timeouts.connect, TcpStream::connect(request.addr))
            .await
            .map_err(|_| OriginError::ConnectTimeout)?
            .map_err(OriginError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) = http1::Builder::new()
            .read_buf_exact_size(Some(READ_CHUNK))
            .max_headers(64)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await?;
        let mut connection = Box::pin(connection);
        let mut origin_request = http::Request::builder()
            .method(request.method.clone())
            .uri(request.target.as_str());
        for (name, value) in &request.headers {
            origin_request = origin_request.header(name, value);
        }
        let origin_request = origin_request
            .header(header::CONNECTION, "close")
            .body(Empty::new())
            .map_err(|_| OriginError::Protocol("request target or header not valid"))?;

        let sent = Instant::now();
        let answer = async {
            let response = sender.send_request(origin_request);
            tokio::pin!(response);
            loop {
                tokio::select! {
                    response = &mut response => break response,
                    // The connection runs until the head is in; if it ends first, `response`
                    // reports why.
                    done = &mut connection => done?,
                }
            }
        };
        let response = tokio::time::timeout(timeouts.write + timeouts.read, answer)
            .await
            .map_err(|_| OriginError::Timeout)?
            .map_err(|err| {
                if err.is_incomplete_message() {
                    // SRS closes without a word when its on_play hook refuses the viewer.
                    OriginError::Protocol("origin closed the connection before the response head")
                } else {
                    OriginError::Http(err)
                }
            })?;
        let latency = sent.elapsed();
        let (parts, body) = response.into_parts();
        if parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            // A message framed two ways is how requests are smuggled (RFC 9112 §6.3).
            return Err(OriginError::Protocol(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        let mut head = ResponseHeader::build(parts.status, Some(parts.headers.len()))
            .map_err(|_| OriginError::Protocol("bad status"))?;
        for (name, value) in &parts.headers {
            if !NOT_PASSED.contains(name) {
                head.append_header(name.clone(), value.clone())
                    .map_err(|_| OriginError::Protocol("bad header"))?;
            }
        }
        let empty = request.method == Method::HEAD
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        Ok(Opened {
            head,
            latency,
            stream: OriginStream {
                connection,
                connection_done: false,
                body,
                empty,
                read_timeout: timeouts.read,
            },
        })
    }

    /// Whether the response has no body at all (HEAD, 204, 304).
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The next piece of body data; `None` once the body is complete (for a close-delimited
    /// body, when the origin closes). Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, OriginError> {
        loop {
            let frame = tokio::select! {
                frame = tokio::time::timeout(self.read_timeout, self.body.frame()) => {
                    frame.map_err(|_| OriginError::Timeout)?
                }
                done = &mut self.connection, if !self.connection_done => {
                    self.connection_done = true;
                    done?;
                    continue;
                }
            };
            match frame {
                None => return Ok(None),
                Some(frame) => {
                    // Trailers are dropped.
                    if let Ok(data) = frame?.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }
}
