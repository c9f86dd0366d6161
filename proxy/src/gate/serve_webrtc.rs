//! WebRTC signalling (WHEP and SRS's play API): offers admitted with a token for their room,
//! capped, and relayed to the API port of the origin that serves the stream; session teardown
//! and ICE updates passed on as they are (the origin names those sessions with ids of its own).
//! Opened WHEP sessions are followed, so that a revocation of their token ends them.

use bytes::{Bytes, BytesMut};
use http::{header, Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, Result};
use tracing::{info, warn};

use livegate_core::unix_now;

use super::admit::FORBIDDEN_BODY;
use super::{origin_failure, Gate, RequestCtx};
use crate::cors;
use crate::forwarding::client_ip;
use crate::webrtc::{self, Signalling};

/// Methods signalling uses: the offer, the session's teardown and ICE updates.
const METHODS: &str = "POST, DELETE, PATCH, OPTIONS";

impl Gate {
    /// Answers a signalling request.
    pub(super) async fn serve_webrtc(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        signalling: &Signalling,
    ) -> Result<()> {
        let request = session.req_header();
        let method = request.method.clone();
        if method == Method::OPTIONS {
            return self.preflight(session, ctx, METHODS).await;
        }
        if !matches!(method, Method::POST | Method::DELETE | Method::PATCH) {
            return self
                .respond_allowing(
                    session,
                    ctx,
                    StatusCode::METHOD_NOT_ALLOWED,
                    b"method not allowed\n",
                    METHODS,
                )
                .await;
        }
        let authorization = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let query = request.uri.query().map(str::to_owned);
        let Some(body) = read_capped(session, signalling.max_offer_bytes).await? else {
            // The rest of the body is never read: the connection cannot carry another request.
            session.set_keepalive(None);
            return self
                .respond(
                    session,
                    ctx,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    b"offer too large\n",
                )
                .await;
        };
        let token_param = &self.settings.token_param;
        let (offer, upstream) = if method == Method::POST {
            let offer = match webrtc::offer(
                query.as_deref(),
                authorization.as_deref(),
                &body,
                token_param,
            ) {
                Ok(offer) => offer,
                Err(bad) => {
                    return self
                        .respond(session, ctx, StatusCode::BAD_REQUEST, bad.body())
                        .await
                }
            };
            let room = offer.room.unwrap_or_default();
            let verdict = self
                .verifier
                .verify_for_room(offer.token.as_deref(), room, unix_now());
            let refused = match verdict {
                Err(reason) => {
                    self.metrics.rejected(reason);
                    Some(reason.as_str())
                }
                Ok(grant) if self.revocations.is_revoked(grant.room_id, grant.expires_at) => {
                    self.metrics.revoked();
                    Some("revoked")
                }
                Ok(grant) => {
                    ctx.grant = Some(grant);
                    None
                }
            };
            if let Some(reason) = refused {
                info!(
                    reason,
                    room,
                    client = %client_ip(session).unwrap_or_default(),
                    "WebRTC offer refused"
                );
                return self
                    .respond(session, ctx, StatusCode::FORBIDDEN, FORBIDDEN_BODY)
                    .await;
            }
            let upstream = offer.upstream(
                query.as_deref(),
                body,
                token_param,
                self.settings.forward_token,
            );
            (offer, upstream)
        } else {
            // A session's teardown or ICE update, at the address its answer gave: its query
            // is the origin's (SRS's own session `token` among it) and goes on as it is.
            let offer = webrtc::session(query.as_deref(), authorization.as_deref(), token_param);
            let upstream = webrtc::Upstream {
                query: query.clone(),
                body,
            };
            (offer, upstream)
        };
        let Some(origin) = self.origin.select(&offer.stream_key) else {
            let (status, body) = origin_failure(false);
            return self.respond(session, ctx, status, body).await;
        };

        let api = std::net::SocketAddr::new(origin.addr.ip(), signalling.api_port);
        let request = self.signalling_request(
            session,
            &method,
            api,
            upstream.query.as_deref(),
            upstream.body.len(),
        )?;
        let answer = tokio::select! {
            answer = self.origin.send_to(api, request, upstream.body, signalling.max_answer_bytes) => answer,
            _ = session.read_body_or_idle(true) => {
                ctx.aborted = true;
                return Err(Error::explain(pingora::ErrorType::ConnectionClosed, "viewer left").into_down());
            }
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => {
                warn!(stream = %offer.stream_key, error = %err, "WebRTC signalling failed");
                let (status, body) = origin_failure(err.is_timeout());
                return self.respond(session, ctx, status, body).await;
            }
        };
        let mut response = ResponseHeader::build(answer.head.status, Some(6))?;
        if let Some(content_type) = &answer.head.content_type {
            response.insert_header(header::CONTENT_TYPE, content_type.as_str())?;
        }
        if let Some(location) = &answer.head.location {
            if let (Some(grant), true, Some(teardown)) = (
                ctx.grant,
                answer.head.status.is_success(),
                webrtc::origin_session_path(location, api),
            ) {
                // A session opened: followed, so that a revocation can end it.
                self.webrtc_sessions.track(grant, api, teardown);
            }
            let location = webrtc::session_location(location, api, session.req_header().uri.path());
            response.insert_header(header::LOCATION, location)?;
        }
        if method == Method::DELETE && answer.head.status.is_success() {
            let target = match &query {
                Some(query) => format!("{}?{query}", session.req_header().uri.path()),
                None => session.req_header().uri.path().to_owned(),
            };
            self.webrtc_sessions.forget(api, &target);
        }
        response.insert_header(header::CONTENT_LENGTH, answer.body.len().to_string())?;
        response.insert_header(header::CACHE_CONTROL, "no-store")?;
        cors::apply(&mut response, ctx.allow_origin.as_deref())?;
        if ctx.allow_origin.is_some() {
            response.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, "Location")?;
        }
        self.write_local(session, ctx, response, answer.body).await
    }

    /// The request for the origin's API: the viewer's method and path, `query`, its body's
    /// type, and who the viewer is.
    fn signalling_request(
        &self,
        session: &Session,
        method: &Method,
        api: std::net::SocketAddr,
        query: Option<&str>,
        body_len: usize,
    ) -> Result<RequestHeader> {
        let viewer = session.req_header();
        let uri = &viewer.uri;
        let target = match query {
            Some(query) => format!("{}?{query}", uri.path()),
            None => uri.path().to_owned(),
        };
        let mut request = RequestHeader::build(method.clone(), target.as_bytes(), Some(6))?;
        request.insert_header(header::HOST, api.to_string())?;
        for name in [header::CONTENT_TYPE, header::ACCEPT] {
            if let Some(value) = viewer.headers.get(&name) {
                request.insert_header(name, value.clone())?;
            }
        }
        if self.settings.forward_token {
            if let Some(value) = viewer.headers.get(header::AUTHORIZATION) {
                request.insert_header(header::AUTHORIZATION, value.clone())?;
            }
        }
        request.insert_header(header::CONTENT_LENGTH, body_len.to_string())?;
        if let Some(ip) = client_ip(session) {
            request.insert_header("X-Forwarded-For", ip.as_str())?;
            request.insert_header("X-Real-IP", ip)?;
        }
        Ok(request)
    }
}

/// The request body, or `None` when it is over `max_bytes`.
async fn read_capped(session: &mut Session, max_bytes: usize) -> Result<Option<Bytes>> {
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Ok(None);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(Error::into_down)?
    {
        if body.len() + chunk.len() > max_bytes {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}
