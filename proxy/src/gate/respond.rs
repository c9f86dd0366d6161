//! Answers the proxy writes itself: refusals, preflights, rewritten playlists.

use bytes::Bytes;
use http::{header, Method, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, Result};

use super::{Gate, RequestCtx};
use crate::cors;
use crate::origin::ResponseHead;
use crate::playlist::{self, TokenParam};

impl Gate {
    /// Writes a short plain-text answer, keeping the connection open for the next request.
    pub(super) async fn respond(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: StatusCode,
        body: &'static [u8],
    ) -> Result<()> {
        self.respond_allowing(session, ctx, status, body, "GET, HEAD, OPTIONS")
            .await
    }

    /// [`Gate::respond`] on a path whose methods are `allow` (named by a 405).
    pub(super) async fn respond_allowing(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: StatusCode,
        body: &'static [u8],
        allow: &'static str,
    ) -> Result<()> {
        let mut response = ResponseHeader::build(status, Some(5))?;
        response.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
        response.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
        response.insert_header(header::CACHE_CONTROL, "no-store")?;
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.insert_header(header::ALLOW, allow)?;
        }
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        self.write_local(session, ctx, response, Bytes::from_static(body))
            .await
    }

    /// Passes on an origin answer other than 200 (404 before the stream starts, say) without
    /// its body. A redirect (SRS's `hls_ctx` session) keeps its target, brought back to the edge
    /// with the token added so that the player's next request is admitted too.
    pub(super) async fn pass_origin_status(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        upstream: &ResponseHead,
        token: &TokenParam,
    ) -> Result<()> {
        let mut response = ResponseHeader::build(upstream.status, Some(5))?;
        if upstream.status.is_redirection() {
            if let Some(location) = &upstream.location {
                let location = self.settings.forwarding.localize(location);
                if ctx.puller {
                    // The CDN adds its viewer's token itself.
                    response.insert_header(header::LOCATION, location)?;
                } else {
                    let location = playlist::with_token(location, token, &self.settings.edge);
                    response.insert_header(header::LOCATION, location)?;
                }
            }
        }
        response.insert_header(header::CONTENT_LENGTH, "0")?;
        response.insert_header(header::CACHE_CONTROL, "no-store")?;
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        self.write_local(session, ctx, response, Bytes::new()).await
    }

    /// Writes `response` and `body` (not for HEAD). A failure to write is the viewer's: it is
    /// marked so, and counted as a client abort rather than a server error.
    pub(super) async fn write_local(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        response: ResponseHeader,
        body: Bytes,
    ) -> Result<()> {
        let head = session.req_header().method == Method::HEAD;
        if head || body.is_empty() {
            return session
                .write_response_header(Box::new(response), true)
                .await
                .map_err(Error::into_down);
        }
        ctx.local_body_bytes = body.len() as u64;
        session
            .write_response_header(Box::new(response), false)
            .await
            .map_err(Error::into_down)?;
        session
            .write_response_body(Some(body), true)
            .await
            .map_err(Error::into_down)
    }
}
