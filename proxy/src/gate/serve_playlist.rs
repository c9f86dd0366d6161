//! HLS playlists: fetched whole from the origin, rewritten for the viewer, answered with an
//! exact length.

use bytes::Bytes;
use http::{header, Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::{debug, warn};

use livegate_core::Secret;

use super::{origin_failure, Gate, RequestCtx};
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
        let mut request = RequestHeader::build(
            Method::GET,
            session
                .req_header()
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .as_bytes(),
            Some(6),
        )?;
        self.settings
            .forwarding
            .apply(session, &mut request, &origin.authority)?;
        // The body is rewritten here, so it must arrive uncompressed.
        request.insert_header(header::ACCEPT_ENCODING, "identity")?;

        let fetch = self
            .origin
            .fetch(&origin, request, self.settings.playlist_max_bytes);
        let fetched = tokio::select! {
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
                if matches!(err, FetchError::TooLarge) {
                    self.metrics
                        .playlist_refused(PlaylistRefusal::InputTooLarge);
                }
                warn!(stream = %route.stream_key, error = %err, "playlist fetch failed");
                let (status, body) = match err {
                    FetchError::TooLarge => (StatusCode::BAD_GATEWAY, &b"playlist too large\n"[..]),
                    other => origin_failure(other.is_timeout()),
                };
                return self.respond(session, ctx, status, body).await;
            }
        };
        self.metrics
            .upstream_latency(Kind::Playlist, upstream.header_latency.as_secs_f64());

        let edge = &self.settings.edge;
        let token = TokenParam::new(&self.settings.token_param, token.expose());
        if upstream.status != StatusCode::OK {
            // Pass the origin's verdict (404 before the stream starts, say) without its body. A
            // redirect (SRS's `hls_ctx` session) keeps its target, with the token added so the
            // player's next request is admitted too.
            let mut response = ResponseHeader::build(upstream.status, Some(5))?;
            if upstream.status.is_redirection() {
                if let Some(location) = &upstream.location {
                    // The viewer must come back through the edge, never go to the origin itself.
                    let location = self.settings.forwarding.localize(location);
                    let location = playlist::with_token(location, &token, edge);
                    response.insert_header(header::LOCATION, location)?;
                }
            }
            response.insert_header(header::CONTENT_LENGTH, "0")?;
            response.insert_header(header::CACHE_CONTROL, "no-store")?;
            cors::apply(&mut response, ctx.allow_origin.as_deref())?;
            return self.write_local(session, ctx, response, Bytes::new()).await;
        }
        let rewritten = std::str::from_utf8(&upstream.body)
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
                .content_type
                .as_deref()
                .unwrap_or("application/vnd.apple.mpegurl"),
        )?;
        response.insert_header(header::CONTENT_LENGTH, rewritten.len().to_string())?;
        // Each copy carries one viewer's token: no shared or client cache may keep it.
        response.insert_header(header::CACHE_CONTROL, "private, no-store")?;
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        self.write_local(session, ctx, response, Bytes::from(rewritten))
            .await
    }
}
