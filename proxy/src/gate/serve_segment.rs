//! HLS segments through the cache: one origin request per segment however many viewers ask,
//! answered from memory afterwards. A segment still arriving from the origin is sent to every
//! viewer waiting for it as its bytes come in. Byte ranges, and segments larger than the cache
//! keeps, go through Pingora's proxy path instead. With the cache off, a plain GET is relayed
//! from the origin here, exactly as that path would pass it on but with fewer copies of the
//! body; anything else still takes that path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, StatusCode, Version};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::{error, warn};

use livegate_core::Secret;

use super::{origin_failure, Gate, RequestCtx, X_CACHE};
use crate::cache::{Answer, Arriving, Cached, Source};
use crate::cors;
use crate::downstream;
use crate::origin::{FetchError, ResponseHead};
use crate::playlist::TokenParam;
use crate::route::{Kind, Matched};
use crate::sendfile::{self, SealedResponse};

impl Gate {
    /// Answers a segment request from the cache (filling it on a miss), or with the cache off
    /// relays it. `Ok(false)`: to be proxied by Pingora.
    pub(super) async fn serve_segment(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
        token: &Secret,
    ) -> Result<bool> {
        if session.req_header().headers.contains_key(header::RANGE) {
            return Ok(false);
        }
        if self.cache.is_none() {
            if !relayable(session.req_header()) {
                return Ok(false);
            }
            return self
                .relay_uncached(session, ctx, route)
                .await
                .map(|()| true);
        }
        let Some(origin) = self.origin.select(&route.stream_key) else {
            warn!(stream = %route.stream_key, "no healthy origin");
            let (status, body) = origin_failure(false);
            self.respond(session, ctx, status, body).await?;
            return Ok(true);
        };
        let request = self.hls_request(session, ctx, route, &origin)?;
        let max_bytes = self.settings.cache_max_object_bytes;
        let fetch = self.fetch_hls(Kind::Segment, request, max_bytes);
        let (fetched, source) = tokio::select! {
            fetched = fetch => fetched,
            _ = session.read_body_or_idle(true) => {
                ctx.aborted = true;
                return Err(Error::explain(ErrorType::ConnectionClosed, "viewer left").into_down());
            }
        };
        let answer = match fetched {
            Ok(answer) => answer,
            // Too large to keep: relayed as it streams instead.
            Err(err) if matches!(*err, FetchError::TooLarge) => return Ok(false),
            Err(err) => {
                warn!(stream = %route.stream_key, error = %err, "segment fetch failed");
                let (status, body) = origin_failure(err.is_timeout());
                self.respond(session, ctx, status, body).await?;
                return Ok(true);
            }
        };
        if answer.head().status != StatusCode::OK {
            let token = TokenParam::new(&self.settings.token_param, token.expose());
            self.pass_origin_status(session, ctx, answer.head(), &token)
                .await?;
            return Ok(true);
        }
        match answer {
            Answer::Whole(cached) => {
                let now = Instant::now();
                let response = self.segment_header(
                    ctx,
                    &cached.head,
                    Some(cached.body.len()),
                    Duration::from_secs(cached.remaining_s(now)),
                    cached.age_s(now),
                    source,
                )?;
                if cached.body.sealed().is_some() && sendable_from_file(session) {
                    self.send_sealed(session, ctx, response, cached).await?;
                    return Ok(true);
                }
                // A HEAD is answered with the head alone: no need to read a sealed body.
                let body = if session.req_header().method == Method::HEAD {
                    Bytes::new()
                } else {
                    cached.body.bytes().map_err(|err| {
                        Error::because(ErrorType::InternalError, "reading a cached segment", err)
                    })?
                };
                self.write_local(session, ctx, response, body).await?;
            }
            Answer::Arriving(arriving) => {
                self.relay_arriving(session, ctx, route, arriving, source)
                    .await?;
            }
        }
        Ok(true)
    }

    /// Writes the head of a cached segment whose body is in a sealed file, then hands the
    /// connection to a [`SealedResponse`], which has the kernel send the file and gives the
    /// connection back for the viewer's next request.
    async fn send_sealed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        response: ResponseHeader,
        cached: Arc<Cached>,
    ) -> Result<()> {
        let keep_alive = !asks_to_close(session.req_header());
        session
            .write_response_header(Box::new(response), false)
            .await
            .map_err(|e| {
                ctx.aborted = true;
                e.into_down()
            })?;
        ctx.local_body_bytes = cached.body.len() as u64;
        let sealed = SealedResponse {
            cached,
            write_timeout: self.settings.downstream_write,
            keep_alive,
            metrics: self.metrics.clone(),
            class: ctx.class,
            path: session.req_header().uri.path().into(),
            in_flight: ctx.in_flight.take(),
        };
        // The connection is the response's from here on; it decides whether it is reused.
        session.set_keepalive(None);
        if let Err(refused) = downstream::hand_off(session.stream(), Box::new(sealed)) {
            drop(refused);
            error!("segment response not handed off after its head went out");
            return Err(Error::explain(
                ErrorType::InternalError,
                "segment connection could not be handed off",
            ));
        }
        ctx.handed_off = true;
        Ok(())
    }

    /// Sends a segment to this viewer as it arrives from the origin. An origin that fails or
    /// cuts the body short ends the response early, and the connection with it, so that the
    /// viewer sees an incomplete response rather than a short one that looks whole.
    async fn relay_arriving(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
        mut arriving: Arriving,
        source: Option<Source>,
    ) -> Result<()> {
        let head = arriving.head.clone();
        // Kept from now for as long as the cache will keep it, if it arrives whole.
        let ttl = self.settings.freshness.segment(&head);
        let mut response = self.segment_header(ctx, &head, head.content_length, ttl, 0, source)?;
        if head.content_length.is_none() && session.req_header().version >= Version::HTTP_11 {
            response.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        }
        if session.req_header().method == Method::HEAD {
            return session
                .write_response_header(Box::new(response), true)
                .await
                .map_err(Error::into_down);
        }
        session
            .write_response_header(Box::new(response), false)
            .await
            .map_err(Error::into_down)?;
        loop {
            match arriving.next().await {
                Ok(Some(piece)) => {
                    ctx.local_body_bytes += piece.len() as u64;
                    session
                        .write_response_body(Some(piece), false)
                        .await
                        .map_err(Error::into_down)?;
                }
                Ok(None) => break,
                Err(err) => {
                    warn!(stream = %route.stream_key, error = %err, "segment cut short by the origin");
                    return Err(
                        Error::explain(ErrorType::ReadError, "origin response cut short").into_up(),
                    );
                }
            }
        }
        session
            .write_response_body(None::<Bytes>, true)
            .await
            .map_err(Error::into_down)
    }

    /// Relays a segment from the origin as it arrives, with the cache off: the same exchange as
    /// Pingora's proxy path (the viewer's request with the hop-by-hop fields removed and the
    /// forwarding fields set; the origin's response header as it came), with each piece of the
    /// body written on as one write. Pingora's path copies every piece from its read buffer and
    /// then again into a buffer that joins the pieces that queued up while the last write was
    /// under way; here a piece is copied once, when it is read.
    async fn relay_uncached(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
    ) -> Result<()> {
        let Some(origin) = self.origin.select(&route.stream_key) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no healthy origin for stream",
            ));
        };
        let mut request = session.req_header().clone();
        request.remove_header(&header::CONNECTION);
        self.filter_origin_request(session, &mut request, &origin.authority)?;
        let opening = self.origin.open_relay(&origin, request);
        let opened = tokio::select! {
            opened = opening => opened,
            _ = session.read_body_or_idle(true) => {
                ctx.aborted = true;
                return Err(Error::explain(ErrorType::ConnectionClosed, "viewer left").into_down());
            }
        };
        let mut response = opened.map_err(relay_error)?;
        self.metrics
            .upstream_latency(Kind::Segment, response.header_latency.as_secs_f64());
        let Some(mut head) = response.header().cloned() else {
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "origin sent no response header",
            )
            .into_up());
        };
        // As Pingora's proxy path frames it: a body of unknown length goes out chunked, so
        // that the viewer's connection outlives it.
        let no_body = matches!(head.status.as_u16(), 204 | 304) || head.status.is_informational();
        let ends_here = no_body || response.head.content_length == Some(0);
        if !no_body
            && !head.headers.contains_key(header::TRANSFER_ENCODING)
            && !head.headers.contains_key(header::CONTENT_LENGTH)
        {
            head.set_version(Version::HTTP_11);
            head.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        }
        self.filter_origin_response(&mut head, ctx)?;
        session
            .write_response_header(Box::new(head), ends_here)
            .await
            .map_err(Error::into_down)?;
        let length = response.head.content_length.map(|length| length as u64);
        let mut sent = 0u64;
        loop {
            let next = if ends_here || length.is_some_and(|length| sent >= length) {
                // The viewer has the whole response and may already be sending its next
                // request, which must not be taken for leaving: the origin's side is only read
                // to its end (which puts its connection back in the pool).
                response.next_chunk().await
            } else {
                // A viewer that leaves while the origin is quiet is noticed at once, not at
                // the next write.
                tokio::select! {
                    next = response.next_chunk() => next,
                    _ = session.read_body_or_idle(true) => {
                        ctx.aborted = true;
                        return Err(Error::explain(ErrorType::ConnectionClosed, "viewer left").into_down());
                    }
                }
            };
            match next {
                Ok(Some(piece)) => {
                    sent += piece.len() as u64;
                    ctx.local_body_bytes += piece.len() as u64;
                    session
                        .write_response_body(Some(piece), false)
                        .await
                        .map_err(Error::into_down)?;
                }
                Ok(None) if ends_here => return Ok(()),
                Ok(None) => {
                    return session
                        .write_response_body(None::<Bytes>, true)
                        .await
                        .map_err(Error::into_down)
                }
                Err(err) => {
                    warn!(stream = %route.stream_key, error = %err, "segment cut short by the origin");
                    return Err(
                        Error::explain(ErrorType::ReadError, "origin response cut short").into_up(),
                    );
                }
            }
        }
    }

    /// The response header for a segment of `length` bytes (`None`: not known yet) that may be
    /// kept for `fresh_for`.
    fn segment_header(
        &self,
        ctx: &RequestCtx,
        head: &ResponseHead,
        length: Option<usize>,
        fresh_for: Duration,
        age_s: u64,
        source: Option<Source>,
    ) -> Result<ResponseHeader> {
        let mut response = ResponseHeader::build(StatusCode::OK, Some(7))?;
        response.insert_header(
            header::CONTENT_TYPE,
            head.content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )?;
        if let Some(length) = length {
            response.insert_header(header::CONTENT_LENGTH, length.to_string())?;
        }
        // A segment is the same bytes for every viewer: a CDN or player may keep it for as long
        // as this cache would.
        let cache_control = match (&self.settings.pullers, fresh_for.as_secs()) {
            (Some(pullers), _) if ctx.puller => pullers.segment_cache_control.clone(),
            (_, 0) => "no-store".to_owned(),
            (_, seconds) => format!("public, max-age={seconds}"),
        };
        response.insert_header(header::CACHE_CONTROL, cache_control)?;
        response.insert_header(header::AGE, age_s.to_string())?;
        if let Some(source) = source {
            response.insert_header(X_CACHE, source.as_str())?;
        }
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        Ok(response)
    }
}

/// Whether this request's cached segment can go out from its sealed file: a GET over plain
/// HTTP/1.1 on a connection that can be lent out and given back.
fn sendable_from_file(session: &Session) -> bool {
    let request = session.req_header();
    request.method == Method::GET
        && request.version == Version::HTTP_11
        && downstream::can_hand_off_one_response(session.stream(), sendfile::can_send_file)
}

/// Whether the viewer asked for the connection to close after this response.
fn asks_to_close(request: &pingora::http::RequestHeader) -> bool {
    request
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|value| {
            value.to_str().map_or(true, |value| {
                value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"))
            })
        })
}

/// Request fields Pingora's proxy path removes or rewrites on the way to the origin (hop-by-hop
/// fields, upgrades, bodies): a request with any of them is left to that path.
const PROXY_PATH_FIELDS: [&str; 10] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "content-length",
];

/// Whether an uncached segment request can be relayed by [`Gate::relay_uncached`] exactly as
/// Pingora's proxy path would send it: a plain HTTP/1.1 GET in origin form, without a body, a
/// range, or fields the proxy path treats specially; `Connection` only to say `keep-alive` or
/// `close` (and nothing it names).
fn relayable(request: &pingora::http::RequestHeader) -> bool {
    let connection_tokens_plain = request
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|value| {
                value.split(',').all(|token| {
                    let token = token.trim();
                    token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close")
                })
            })
        });
    request.method == Method::GET
        && request.version == Version::HTTP_11
        && request.uri.authority().is_none()
        && !request.headers.contains_key(header::RANGE)
        && !request.headers.contains_key("close")
        && PROXY_PATH_FIELDS
            .iter()
            .all(|name| !request.headers.contains_key(*name))
        && connection_tokens_plain
}

/// The error an origin failure before the response header becomes, as it would on Pingora's
/// proxy path: the origin's side (502), or its timeout (504).
fn relay_error(err: FetchError) -> Box<Error> {
    match err {
        FetchError::Origin(err) => err.into_up(),
        FetchError::Timeout => {
            Error::explain(ErrorType::ReadTimedout, "origin did not answer in time").into_up()
        }
        other @ (FetchError::TooLarge | FetchError::Abandoned | FetchError::CachedBody(_)) => {
            Error::explain(ErrorType::ConnectError, other.to_string()).into_up()
        }
    }
}
