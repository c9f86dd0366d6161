//! HTTP-FLV relay: one origin connection per viewer, one small buffer per viewer.
//!
//! A live FLV response runs for hours, and an edge carries thousands of them, so memory per
//! viewer is what counts. Pingora's generic proxy path keeps a 64 KiB read buffer per upstream
//! plus queued body chunks per viewer (measured: over 200 MB for 1,000 viewers of a 2 Mbit/s
//! stream). This relay reads the origin into one [`READ_CHUNK`] buffer and writes each piece to
//! the viewer before reading the next, so a slow viewer slows the origin read (TCP
//! backpressure) and a viewer never costs more than one chunk in flight.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderName, Method, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read from the origin at a time, and so the most a viewer holds in memory.
pub const READ_CHUNK: usize = 16 * 1024;

/// Largest response head accepted from the origin.
const MAX_HEAD: usize = 16 * 1024;

/// Largest trailer section accepted after a chunked body (the trailers are dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// Response headers that describe the origin connection, not the content.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Why a relay ended early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Connecting to the origin failed.
    #[error("connecting to the origin: {0}")]
    Connect(std::io::Error),
    /// Connecting to the origin took longer than the connect timeout.
    #[error("connecting to the origin timed out")]
    ConnectTimeout,
    /// The origin sent nothing for longer than the read timeout.
    #[error("the origin went silent")]
    OriginTimeout,
    /// Reading from or writing to the origin failed.
    #[error("origin I/O: {0}")]
    OriginIo(#[from] std::io::Error),
    /// The origin's response is not valid HTTP/1.
    #[error("invalid response from the origin: {0}")]
    OriginProtocol(&'static str),
    /// Writing to the viewer failed (it left, or stalled past the write timeout).
    #[error("viewer: {0}")]
    Viewer(Box<pingora::Error>),
    /// The play token expired (with `flv.end_at_token_expiry`).
    #[error("play token expired")]
    TokenExpired,
}

impl RelayError {
    /// Whether the origin was too slow (504) rather than broken or refusing (502).
    pub fn is_timeout(&self) -> bool {
        matches!(self, RelayError::ConnectTimeout | RelayError::OriginTimeout)
    }
}

/// The request sent to the origin.
#[derive(Debug)]
pub struct OriginRequest<'a> {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `GET`/`HEAD`.
    pub method: &'a Method,
    /// Path and query, token already removed.
    pub target: &'a str,
    /// Headers to send (Host, forwarding headers, …).
    pub headers: Vec<(HeaderName, String)>,
}

/// Limits of one relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Origin connect timeout.
    pub connect: Duration,
    /// Longest silence from the origin.
    pub read: Duration,
    /// Longest wait to send the request head to the origin.
    pub write: Duration,
    /// Unix second after which the response is ended, if any.
    pub deadline: Option<u64>,
}

/// What the origin answered, for metrics.
#[derive(Debug, Default)]
pub struct RelayReport {
    /// Time from sending the request to the response head.
    pub header_latency: Option<Duration>,
    /// Whether a response header reached the viewer.
    pub header_sent: bool,
}

/// Relays one FLV response from the origin to the viewer. `prepare` may adjust the response
/// header (CORS) before it is sent.
pub async fn relay(
    session: &mut Session,
    request: OriginRequest<'_>,
    limits: RelayLimits,
    report: &mut RelayReport,
    prepare: impl FnOnce(&mut ResponseHeader) -> pingora::Result<()>,
) -> Result<(), RelayError> {
    let mut origin = tokio::time::timeout(limits.connect, TcpStream::connect(request.addr))
        .await
        .map_err(|_| RelayError::ConnectTimeout)?
        .map_err(RelayError::Connect)?;
    let _ = origin.set_nodelay(true);

    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let sent = Instant::now();
    tokio::time::timeout(limits.write, origin.write_all(head.as_bytes()))
        .await
        .map_err(|_| RelayError::OriginTimeout)??;

    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let (response, mut body) = loop {
        let read = tokio::select! {
            read = read_some(&mut origin, &mut buf, limits.read) => read?,
            // A viewer that gives up while the origin thinks is gone; the origin is let go.
            gone = session.read_body_or_idle(true) => return Err(viewer_gone(gone)),
        };
        if read == 0 {
            // SRS closes without a word when its on_play hook refuses the viewer.
            return Err(RelayError::OriginProtocol(
                "origin closed the connection before the response head",
            ));
        }
        if let Some(parsed) = parse_head(&mut buf, request.method == Method::HEAD)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(RelayError::OriginProtocol("response head too large"));
        }
    };
    report.header_latency = Some(sent.elapsed());

    let mut response = response;
    prepare(&mut response).map_err(RelayError::Viewer)?;
    let no_body = matches!(body, Body::Empty);
    session
        .write_response_header(Box::new(response), no_body)
        .await
        .map_err(RelayError::Viewer)?;
    report.header_sent = true;
    if no_body {
        return Ok(());
    }

    loop {
        while let Some(data) = body.next(&mut buf)? {
            if limits
                .deadline
                .is_some_and(|deadline| livegate_core::unix_now() > deadline)
            {
                return Err(RelayError::TokenExpired);
            }
            session
                .write_response_body(Some(data), false)
                .await
                .map_err(RelayError::Viewer)?;
        }
        if body.is_done() {
            break;
        }
        let read = tokio::select! {
            read = read_some(&mut origin, &mut buf, limits.read) => read?,
            // A viewer that closes its side ends the relay now, not at the next write.
            gone = session.read_body_or_idle(true) => return Err(viewer_gone(gone)),
        };
        if read == 0 {
            if body.ends_at_close() {
                break;
            }
            return Err(RelayError::OriginProtocol("origin closed mid-body"));
        }
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(RelayError::Viewer)?;
    Ok(())
}

/// The relay's error for a viewer whose side of the connection ended (or sent data, which an
/// FLV viewer never does).
fn viewer_gone(read: pingora::Result<Option<Bytes>>) -> RelayError {
    RelayError::Viewer(match read {
        Err(e) => e,
        Ok(_) => pingora::Error::explain(
            pingora::ErrorType::ConnectionClosed,
            "viewer closed or sent data on an FLV response",
        ),
    })
}

/// Reads at most [`READ_CHUNK`] more bytes, within the read timeout. `Ok(0)` is end of stream.
async fn read_some(
    origin: &mut TcpStream,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<usize, RelayError> {
    buf.reserve(READ_CHUNK);
    let mut limited = (&mut *origin).take(READ_CHUNK as u64);
    match tokio::time::timeout(timeout, limited.read_buf(buf)).await {
        Ok(read) => Ok(read?),
        Err(_) => Err(RelayError::OriginTimeout),
    }
}

/// Parses a response head at the front of `buf`, consuming it. `None`: not complete yet.
fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<(ResponseHeader, Body)>, RelayError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let consumed = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(RelayError::OriginProtocol("malformed response head")),
    };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(RelayError::OriginProtocol("bad status"))?;
    let mut response = ResponseHeader::build(status, Some(parsed.headers.len()))
        .map_err(|_| RelayError::OriginProtocol("bad status"))?;
    let mut transfer_coding: Option<Framing> = None;
    let mut length: Option<u64> = None;
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Err(RelayError::OriginProtocol("bad header name"));
        };
        if name == header::TRANSFER_ENCODING {
            // The final coding decides (RFC 9112 §6.3): chunked, or read until close.
            let last = h
                .value
                .split(|b| *b == b',')
                .next_back()
                .unwrap_or_default();
            transfer_coding = Some(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        if name == header::CONTENT_LENGTH {
            for value in h.value.split(|b| *b == b',') {
                let value = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(RelayError::OriginProtocol("bad Content-Length"))?;
                if length.is_some_and(|seen| seen != value) {
                    return Err(RelayError::OriginProtocol("conflicting Content-Length"));
                }
                length = Some(value);
            }
        }
        if HOP_BY_HOP.contains(&name) {
            continue;
        }
        response
            .append_header(name, h.value)
            .map_err(|_| RelayError::OriginProtocol("bad header value"))?;
    }
    if transfer_coding.is_some() && length.is_some() {
        // A message framed two ways is how requests are smuggled (RFC 9112 §6.3): refuse it
        // rather than guess which framing the next hop would believe.
        return Err(RelayError::OriginProtocol(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    buf.advance(consumed);
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = match (no_body, transfer_coding, length) {
        (true, _, _) => Body::Empty,
        (false, Some(Framing::Chunked), _) => Body::Chunked(ChunkState::Size),
        (false, Some(Framing::UntilClose), _) | (false, None, None) => Body::UntilClose,
        (false, None, Some(length)) => Body::Length(length),
    };
    Ok(Some((response, body)))
}

/// What a `Transfer-Encoding` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    UntilClose,
}

/// How the origin frames its body.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Empty,
    Length(u64),
    UntilClose,
    Chunked(ChunkState),
}

#[derive(Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    /// Trailer lines, with the bytes of them seen so far.
    Trailers(usize),
    Done,
}

impl Body {
    /// Takes the next piece of body data out of `buf`; `None` when more input is needed (or
    /// the body is complete).
    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, RelayError> {
        match self {
            Body::Empty => Ok(None),
            Body::UntilClose => Ok((!buf.is_empty()).then(|| buf.split().freeze())),
            Body::Length(remaining) => {
                if *remaining == 0 || buf.is_empty() {
                    return Ok(None);
                }
                let take = (*remaining).min(buf.len() as u64) as usize;
                *remaining -= take as u64;
                Ok(Some(buf.split_to(take).freeze()))
            }
            Body::Chunked(state) => loop {
                match state {
                    ChunkState::Size => {
                        let Some(line_end) = find_crlf(buf) else {
                            if buf.len() > 1024 {
                                return Err(RelayError::OriginProtocol("chunk size line too long"));
                            }
                            return Ok(None);
                        };
                        let line = &buf[..line_end];
                        let digits = line.split(|b| *b == b';').next().unwrap_or(line);
                        let size = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|d| u64::from_str_radix(d.trim(), 16).ok())
                            .ok_or(RelayError::OriginProtocol("bad chunk size"))?;
                        buf.advance(line_end + 2);
                        *state = if size == 0 {
                            ChunkState::Trailers(0)
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    ChunkState::Data(remaining) => {
                        if buf.is_empty() {
                            return Ok(None);
                        }
                        let take = (*remaining).min(buf.len() as u64) as usize;
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            *state = ChunkState::DataEnd;
                        }
                        return Ok(Some(buf.split_to(take).freeze()));
                    }
                    ChunkState::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(None);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(RelayError::OriginProtocol("chunk not followed by CRLF"));
                        }
                        buf.advance(2);
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers(seen) => {
                        let Some(line_end) = find_crlf(buf) else {
                            if *seen + buf.len() > MAX_TRAILERS {
                                return Err(RelayError::OriginProtocol("trailers too large"));
                            }
                            return Ok(None);
                        };
                        *seen += line_end + 2;
                        if *seen > MAX_TRAILERS {
                            return Err(RelayError::OriginProtocol("trailers too large"));
                        }
                        buf.advance(line_end + 2);
                        if line_end == 0 {
                            *state = ChunkState::Done;
                        }
                    }
                    ChunkState::Done => return Ok(None),
                }
            },
        }
    }

    fn is_done(&self) -> bool {
        matches!(
            self,
            Body::Empty | Body::Length(0) | Body::Chunked(ChunkState::Done)
        )
    }

    fn ends_at_close(&self) -> bool {
        matches!(self, Body::UntilClose)
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(body: &mut Body, input: &[u8], split_at: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = BytesMut::new();
        for piece in input.chunks(split_at.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(data) = body.next(&mut buf).unwrap() {
                out.extend_from_slice(&data);
            }
        }
        out
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: a\r\n\r\n";
        for split in 1..input.len() {
            let mut body = Body::Chunked(ChunkState::Size);
            assert_eq!(
                drain(&mut body, input, split),
                b"hello, world",
                "split {split}"
            );
            assert!(body.is_done());
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let mut body = Body::Chunked(ChunkState::Size);
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(body.next(&mut buf).is_err());
        let mut body = Body::Chunked(ChunkState::Size);
        let mut buf = BytesMut::from(&b"1\r\naXX"[..]);
        assert_eq!(body.next(&mut buf).unwrap().as_deref(), Some(&b"a"[..]));
        assert!(body.next(&mut buf).is_err());
    }

    #[test]
    fn sized_and_close_delimited_bodies() {
        let mut body = Body::Length(4);
        assert_eq!(drain(&mut body, b"abcdef", 3), b"abcd");
        assert!(body.is_done());
        let mut body = Body::UntilClose;
        assert_eq!(drain(&mut body, b"abcdef", 2), b"abcdef");
        assert!(!body.is_done());
    }

    #[test]
    fn response_heads_drop_hop_by_hop_headers() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\n"[..],
        );
        let (response, body) = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["content-type"], "video/x-flv");
        assert!(!response.headers.contains_key("transfer-encoding"));
        assert!(!response.headers.contains_key("connection"));
        assert_eq!(body, Body::Chunked(ChunkState::Size));
        assert_eq!(&buf[..], b"5\r\n");
    }

    #[test]
    fn contradictory_framing_is_refused() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(head);
            assert!(
                parse_head(&mut buf, false).is_err(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        // The same length repeated is one length.
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n"[..],
        );
        let (_, body) = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(body, Body::Length(5));
        // A final coding other than chunked is read until the origin closes.
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"[..]);
        let (_, body) = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(body, Body::UntilClose);
    }

    #[test]
    fn trailers_are_bounded() {
        let mut body = Body::Chunked(ChunkState::Size);
        let mut buf = BytesMut::from(&b"1\r\na\r\n0\r\n"[..]);
        assert_eq!(body.next(&mut buf).unwrap().as_deref(), Some(&b"a"[..]));
        let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
        let mut failed = false;
        for _ in 0..(MAX_TRAILERS / line.len() + 2) {
            buf.extend_from_slice(line.as_bytes());
            match body.next(&mut buf) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("trailers are not body data"),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "endless trailers must be refused");
        // One unterminated trailer line grows no further than the limit either.
        let mut body = Body::Chunked(ChunkState::Trailers(0));
        let mut buf = BytesMut::from("x".repeat(MAX_TRAILERS + 1).as_str());
        assert!(body.next(&mut buf).is_err());
    }

    #[test]
    fn partial_and_bad_heads() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Ty"[..]);
        assert!(parse_head(&mut buf, false).unwrap().is_none());
        let mut buf = BytesMut::from(&b"NOT HTTP\r\n\r\n"[..]);
        assert!(parse_head(&mut buf, false).is_err());
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..]);
        assert!(parse_head(&mut buf, false).is_err());
        let mut buf = BytesMut::from(&b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"[..]);
        let (_, body) = parse_head(&mut buf, false).unwrap().unwrap();
        assert!(body.is_done());
    }
}
