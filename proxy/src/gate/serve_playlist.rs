//! HLS playlists: fetched whole from the origin, rewritten for the viewer, answered with an
//! exact length.

use bytes::Bytes;
use http::{header, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::{debug, warn};

use livegate_core::Secret;

use super::{origin_failure, Gate, RequestCtx, X_CACHE};
use crate::cache::Cached;
use crate::cors;
use crate::metrics::PlaylistRefusal;
use crate::origin::FetchError;
use crate::playlist::{self, RewriteError, TokenParam};
use crate::route::{Kind, Matched};

impl Gate {
    /// Fetches the playlist from the origin, rewrites it for this viewer and answers with an
    /// exact `Content-Length`.
    pub(super) async fn serve_playlist(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
        token: &Secret,
    ) -> Result<()> {
        let Some(origin) = self.origin.select(&route.stream_key) else {
            warn!(stream = %route.stream_key, "no healthy origin");
            let (status, body) = origin_failure(false);
            return self.respond(session, ctx, status, body).await;
        };
        let request = self.hls_request(session, ctx, route, &origin)?;
        let max_bytes = self.settings.playlist_max_bytes;
        // A playlist is rewritten whole: its answer is waited for to the end.
        let fetch = async {
            let (answer, source) = self.fetch_hls(Kind::Playlist, request, max_bytes).await;
            let whole = match answer {
                Ok(answer) => answer.whole().await,
                Err(err) => Err(err),
            };
            (whole, source)
        };
        let (fetched, source) = tokio::select! {
            fetched = fetch => fetched,
            // A viewer that leaves while the origin is asked need not wait for the answer.
            _ = session.read_body_or_idle(true) => {
                ctx.aborted = true;
                return Err(Error::explain(ErrorType::ConnectionClosed, "viewer left").into_down());
            }
        };
        let upstream = match fetched {
            Ok(upstream) => upstream,
            Err(err) => {
                if matches!(*err, FetchError::TooLarge) {
                    self.metrics
                        .playlist_refused(PlaylistRefusal::InputTooLarge);
                }
                warn!(stream = %route.stream_key, error = %err, "playlist fetch failed");
                let (status, body) = match *err {
                    FetchError::TooLarge => (StatusCode::BAD_GATEWAY, &b"playlist too large\n"[..]),
                    ref other => origin_failure(other.is_timeout()),
                };
                return self.respond(session, ctx, status, body).await;
            }
        };

        let edge = &self.settings.edge;
        let token = TokenParam::new(&self.settings.token_param, token.expose());
        if upstream.head.status != StatusCode::OK {
            return self
                .pass_origin_status(session, ctx, &upstream.head, &token)
                .await;
        }
        if let (true, Some(pullers)) = (ctx.puller, &self.settings.pullers) {
            return self
                .serve_to_puller(
                    session,
                    ctx,
                    &upstream,
                    pullers.playlist_cache_control.clone(),
                )
                .await;
        }
        let body = cached_bytes(&upstream)?;
        let rewritten = std::str::from_utf8(&body)
            .map_err(|_| PlaylistRefusal::NotUtf8)
            .and_then(|text| {
                playlist::rewrite(text, &token, edge, self.settings.rewrite_limits).map_err(|err| {
                    match err {
                        RewriteError::TooLarge => PlaylistRefusal::OutputTooLarge,
                        RewriteError::LineTooLong => PlaylistRefusal::LineTooLong,
                    }
                })
            });
        let rewritten = match rewritten {
            Ok(rewritten) => rewritten,
            Err(refusal) => {
                self.metrics.playlist_refused(refusal);
                warn!(stream = %route.stream_key, reason = refusal.label(), "playlist refused");
                return self
                    .respond(session, ctx, StatusCode::BAD_GATEWAY, b"invalid playlist\n")
                    .await;
            }
        };
        debug!(stream = %route.stream_key, bytes = rewritten.len(), "playlist rewritten");

        let mut response = ResponseHeader::build(StatusCode::OK, Some(6))?;
        response.insert_header(
            header::CONTENT_TYPE,
            upstream
                .head
                .content_type
                .as_deref()
                .unwrap_or("application/vnd.apple.mpegurl"),
        )?;
        response.insert_header(header::CONTENT_LENGTH, rewritten.len().to_string())?;
        // Each copy carries one viewer's token: no shared or client cache may keep it.
        response.insert_header(header::CACHE_CONTROL, "private, no-store")?;
        if let Some(source) = source {
            response.insert_header(X_CACHE, source.as_str())?;
        }
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        self.write_local(session, ctx, response, Bytes::from(rewritten))
            .await
    }
}

impl Gate {
    /// Answers a CDN puller with the origin's playlist as it is: the same for every viewer, so
    /// the CDN may keep it for its short `max-age` and add each viewer's token itself.
    async fn serve_to_puller(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        upstream: &Cached,
        cache_control: String,
    ) -> Result<()> {
        let mut response = ResponseHeader::build(StatusCode::OK, Some(5))?;
        response.insert_header(
            header::CONTENT_TYPE,
            upstream
                .head
                .content_type
                .as_deref()
                .unwrap_or("application/vnd.apple.mpegurl"),
        )?;
        response.insert_header(header::CONTENT_LENGTH, upstream.body.len().to_string())?;
        response.insert_header(header::CACHE_CONTROL, cache_control)?;
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        self.write_local(session, ctx, response, cached_bytes(upstream)?)
            .await
    }
}

/// A cached playlist's bytes (a copy when so large a playlist was kept in a sealed file).
fn cached_bytes(cached: &Cached) -> Result<Bytes> {
    cached
        .body
        .bytes()
        .map_err(|err| Error::because(ErrorType::InternalError, "reading a cached playlist", err))
}
