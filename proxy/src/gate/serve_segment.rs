//! HLS segments through the cache: one origin request per segment however many viewers ask,
//! answered from memory afterwards. Byte ranges, and segments larger than the cache keeps, go
//! through Pingora's proxy path instead.

use std::time::Instant;

use http::{header, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::warn;

use livegate_core::Secret;

use super::{origin_failure, Gate, RequestCtx, X_CACHE};
use crate::cors;
use crate::origin::FetchError;
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
        let cached = match fetched {
            Ok(cached) => cached,
            // Too large to keep: relayed as it streams instead.
            Err(err) if matches!(*err, FetchError::TooLarge) => return Ok(false),
            Err(err) => {
                warn!(stream = %route.stream_key, error = %err, "segment fetch failed");
                let (status, body) = origin_failure(err.is_timeout());
                self.respond(session, ctx, status, body).await?;
                return Ok(true);
            }
        };
        if cached.status != StatusCode::OK {
            let token = TokenParam::new(&self.settings.token_param, token.expose());
            self.pass_origin_status(session, ctx, &cached, &token)
                .await?;
            return Ok(true);
        }
        let now = Instant::now();
        let mut response = ResponseHeader::build(StatusCode::OK, Some(7))?;
        response.insert_header(
            header::CONTENT_TYPE,
            cached
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )?;
        response.insert_header(header::CONTENT_LENGTH, cached.body.len().to_string())?;
        // A segment is the same bytes for every viewer: a CDN or player may keep it for as long
        // as this cache would.
        let cache_control = match (&self.settings.pullers, cached.remaining_s(now)) {
            (Some(pullers), _) if ctx.puller => pullers.segment_cache_control.clone(),
            (_, 0) => "no-store".to_owned(),
            (_, seconds) => format!("public, max-age={seconds}"),
        };
        response.insert_header(header::CACHE_CONTROL, cache_control)?;
        response.insert_header(header::AGE, cached.age_s(now).to_string())?;
        if let Some(source) = source {
            response.insert_header(X_CACHE, source.as_str())?;
        }
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        self.write_local(session, ctx, response, cached.body.clone())
            .await?;
        Ok(true)
    }
}
