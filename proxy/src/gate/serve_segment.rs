//! HLS segments through the cache: one origin request per segment however many viewers ask,
//! answered from memory afterwards. A segment still arriving from the origin is sent to every
//! viewer waiting for it as its bytes come in. Byte ranges, and segments larger than the cache
//! keeps, go through Pingora's proxy path instead.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, StatusCode, Version};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::warn;

use livegate_core::Secret;

use super::{origin_failure, Gate, RequestCtx, X_CACHE};
use crate::cache::{Answer, Arriving, Source};
use crate::cors;
use crate::origin::{FetchError, ResponseHead};
use crate::playlist::TokenParam;
use crate::route::{Kind, Matched};

impl Gate {
    /// Answers a segment request from the cache (filling it on a miss). `Ok(false)`: not for
    /// the cache, to be proxied.
    pub(super) async fn serve_segment(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
        token: &Secret,
    ) -> Result<bool> {
        if self.cache.is_none() || session.req_header().headers.contains_key(header::RANGE) {
            return Ok(false);
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
                self.write_local(session, ctx, response, cached.body.clone())
                    .await?;
            }
            Answer::Arriving(arriving) => {
                self.relay_arriving(session, ctx, route, arriving, source)
                    .await?;
            }
        }
        Ok(true)
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
