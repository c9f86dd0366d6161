//! Admission: method, Host, path, route and play token, checked in that order before anything
//! reaches the origin.

use http::{header, Method, StatusCode, Version};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use tracing::{debug, info};

use livegate_core::token::{token_from_query, Rejection};
use livegate_core::{unix_now, Secret};

use super::{Gate, RequestCtx};
use crate::forwarding::client_ip;
use crate::metrics::RequestClass;
use crate::path::check_path;
use crate::route::Matched;

/// Body of every 403: the reason stays in the log and the metrics.
pub(super) const FORBIDDEN_BODY: &[u8] = b"forbidden\n";

impl Gate {
    /// Checks method, Host, path and token, returning the route and the verified token.
    /// `Ok(None)` means a response was already written.
    pub(super) async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Option<(Matched, Secret)>> {
        let request = session.req_header();
        let hosts = request.headers.get_all(header::HOST).iter().count();
        // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is answered 400.
        if hosts > 1 || (hosts == 0 && request.version == Version::HTTP_11) {
            self.respond(
                session,
                ctx,
                StatusCode::BAD_REQUEST,
                b"one Host header required\n",
            )
            .await?;
            return Ok(None);
        }
        let method = request.method.clone();
        if method == Method::OPTIONS {
            self.preflight(session, ctx, "GET, HEAD, OPTIONS").await?;
            return Ok(None);
        }
        if method != Method::GET && method != Method::HEAD {
            self.respond(
                session,
                ctx,
                StatusCode::METHOD_NOT_ALLOWED,
                b"method not allowed\n",
            )
            .await?;
            return Ok(None);
        }
        if session.is_upgrade_req() {
            // SRS answers WebSocket-FLV with a 101; a tunnel would bypass everything below.
            self.respond(
                session,
                ctx,
                StatusCode::BAD_REQUEST,
                b"upgrade not supported\n",
            )
            .await?;
            return Ok(None);
        }
        let path = match check_path(session.req_header().uri.path()) {
            Ok(path) => path,
            Err(problem) => {
                debug!(%problem, "refused unsafe path");
                self.respond(session, ctx, StatusCode::BAD_REQUEST, b"bad request path\n")
                    .await?;
                return Ok(None);
            }
        };
        let Some(route) = self.routes.find(&path) else {
            self.respond(session, ctx, StatusCode::NOT_FOUND, b"not found\n")
                .await?;
            return Ok(None);
        };
        ctx.class = RequestClass::Routed(route.kind);

        if let Some(pullers) = &self.settings.pullers {
            let client = session
                .client_addr()
                .and_then(|addr| addr.as_inet())
                .map(|addr| addr.ip());
            if pullers.is_puller(client, &session.req_header().headers) {
                // The CDN verified its viewer's token at its own edge.
                ctx.puller = true;
                return Ok(Some((route, Secret::new(String::new()))));
            }
        }

        let query = session.req_header().uri.query();
        let token = query.and_then(|q| token_from_query(q, &self.settings.token_param));
        let now = unix_now();
        let verdict = match route.room_id {
            Some(room_id) => self
                .verifier
                .verify_for_room(token.as_deref(), room_id, now),
            // A stream that is not a room id: no valid token can name it, but a token that is
            // bad in itself is reported as such.
            None => match token.as_deref() {
                None => Err(Rejection::Missing),
                Some(token) => self
                    .verifier
                    .keys()
                    .verify(token, now, self.verifier.leeway())
                    .and(Err(Rejection::WrongRoom)),
            },
        };
        match verdict {
            Ok(grant) if self.revocations.is_revoked(grant.room_id, grant.expires_at) => {
                self.metrics.revoked();
                info!(
                    kind = route.kind.as_str(),
                    room = grant.room_id,
                    client = %client_ip(session).unwrap_or_default(),
                    "play token refused: the room revoked it"
                );
                self.respond(session, ctx, StatusCode::FORBIDDEN, FORBIDDEN_BODY)
                    .await?;
                Ok(None)
            }
            Ok(grant) => {
                ctx.grant = Some(grant);
                Ok(Some((route, Secret::new(token.unwrap_or_default()))))
            }
            Err(reason) => {
                self.metrics.rejected(reason);
                info!(
                    reason = reason.as_str(),
                    kind = route.kind.as_str(),
                    stream = %route.stream_key,
                    client = %client_ip(session).unwrap_or_default(),
                    "play token refused"
                );
                self.respond(session, ctx, StatusCode::FORBIDDEN, FORBIDDEN_BODY)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Answers a CORS preflight locally, allowing `methods`.
    pub(super) async fn preflight(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        methods: &'static str,
    ) -> Result<()> {
        let Some(allow_origin) = ctx.allow_origin.clone() else {
            return self
                .respond(session, ctx, StatusCode::FORBIDDEN, FORBIDDEN_BODY)
                .await;
        };
        let mut response = ResponseHeader::build(StatusCode::NO_CONTENT, Some(6))?;
        response.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin.as_ref())?;
        response.insert_header(header::ACCESS_CONTROL_ALLOW_METHODS, methods)?;
        if let Some(requested) = session
            .req_header()
            .headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
        {
            response.insert_header(header::ACCESS_CONTROL_ALLOW_HEADERS, requested)?;
        }
        response.insert_header(
            header::ACCESS_CONTROL_MAX_AGE,
            self.settings.cors.max_age.as_str(),
        )?;
        response.insert_header(header::VARY, "Origin")?;
        response.insert_header(header::CONTENT_LENGTH, "0")?;
        self.write_local(session, ctx, response, bytes::Bytes::new())
            .await
    }
}
