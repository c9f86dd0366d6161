//! HTTP-FLV for an admitted viewer: join the stream's hub and write what it hands over.

use std::time::Duration;

use http::{header, HeaderName, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::{debug, error, warn};

use livegate_core::unix_now;

use super::{origin_failure, Gate, RequestCtx, PULL_TOKEN_TTL_S};
use crate::cors;
use crate::downstream;
use crate::flv::hub::JoinError;
use crate::flv::origin::OriginRequest;
use crate::flv::response::FlvResponse;
use crate::forwarding::strip_query_param;
use crate::route::Matched;

impl Gate {
    /// Serves an HTTP-FLV response from the stream's hub.
    pub(super) async fn serve_flv(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
    ) -> Result<()> {
        let Some(origin) = self.origin.select(&route.stream_key) else {
            warn!(stream = %route.stream_key, "no healthy origin");
            let (status, body) = origin_failure(false);
            return self.respond(session, ctx, status, body).await;
        };
        let request = self.pull_request(session, route, origin.addr, &origin.authority)?;
        let key = hub_key(session, &self.settings.token_param, &request);
        let joined = tokio::select! {
            joined = self.hubs.join(&key, request) => joined,
            // A viewer that gives up while the origin is asked is gone.
            gone = session.read_body_or_idle(true) => {
                ctx.aborted = true;
                return Err(viewer_gone(gone).into_down());
            }
        };
        let subscription = match joined {
            Ok(subscription) => subscription,
            Err(JoinError::Status(status)) => {
                // The origin's own verdict: 404 while the stream is off, say.
                debug!(stream = %route.stream_key, %status, "origin has no such stream");
                let mut response = ResponseHeader::build(status, Some(3))?;
                response.insert_header(header::CONTENT_LENGTH, "0")?;
                response.insert_header(header::CACHE_CONTROL, "no-store")?;
                cors::apply(&mut response, ctx.allow_origin.as_deref())?;
                return self
                    .write_local(session, ctx, response, bytes::Bytes::new())
                    .await;
            }
            Err(JoinError::Origin { timed_out, reason }) => {
                warn!(stream = %route.stream_key, error = %reason, "FLV origin request failed");
                let (status, body) = origin_failure(timed_out);
                return self.respond(session, ctx, status, body).await;
            }
        };

        let mut head = (*subscription.head).clone();
        cors::apply(&mut head, ctx.allow_origin.as_deref())?;
        let head_only = session.req_header().method == Method::HEAD;
        session
            .write_response_header(Box::new(head), head_only)
            .await
            .map_err(|e| {
                ctx.aborted = true;
                e.into_down()
            })?;
        if head_only {
            return Ok(());
        }

        // From here on the body runs on the connection alone, outside this HTTP session.
        let response = FlvResponse {
            subscription,
            grant: ctx.grant,
            deadline: ctx.flv_deadline.map(instant_after_second),
            write_timeout: self.settings.downstream_write,
            revocations: self.revocations.clone(),
            metrics: self.metrics.clone(),
            class: ctx.class,
            path: session.req_header().uri.path().into(),
            stream_key: route.stream_key.as_str().into(),
            counted: ctx
                .grant
                .map(|grant| self.viewers.flv_viewer(grant.room_id)),
            active: ctx.flv.take(),
            in_flight: ctx.in_flight.take(),
        };
        // The body is close-delimited: the connection carries nothing after it.
        session.set_keepalive(None);
        if let Err(refused) = downstream::hand_off(session.stream(), Box::new(response)) {
            drop(refused);
            error!(
                "FLV response not handed off: the connection did not come through the head guard"
            );
            return Err(Error::explain(
                ErrorType::InternalError,
                "FLV connection could not be handed off",
            ));
        }
        ctx.handed_off = true;
        Ok(())
    }

    /// The request the stream's pull sends the origin: the viewer's path and query without
    /// its token, and — when tokens go on to the origin — one the proxy mints for the pull, so
    /// that the origin's play hook admits it whoever started it.
    fn pull_request(
        &self,
        session: &Session,
        route: &Matched,
        addr: std::net::SocketAddr,
        authority: &str,
    ) -> Result<OriginRequest> {
        let uri = &session.req_header().uri;
        let param = &self.settings.token_param;
        let mut query = uri.query().and_then(|q| strip_query_param(q, param));
        if self.settings.forward_token {
            if let Some(room) = route.room_id {
                let token = self
                    .verifier
                    .keys()
                    .mint(room, unix_now() + PULL_TOKEN_TTL_S);
                let pair = format!("{param}={token}");
                query = Some(match query {
                    Some(rest) => format!("{rest}&{pair}"),
                    None => pair,
                });
            }
        }
        let target = match query {
            Some(query) => format!("{}?{query}", uri.path()),
            None => uri.path().to_owned(),
        };
        let mut forwarding = RequestHeader::build(Method::GET, b"/", Some(2))?;
        self.settings
            .forwarding
            .apply_to_pull(session, &mut forwarding, authority)?;
        let headers: Vec<(HeaderName, String)> = forwarding
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.to_str().ok()?.to_owned())))
            .collect();
        Ok(OriginRequest {
            addr,
            method: Method::GET,
            target,
            headers,
        })
    }
}

/// Which hub a viewer joins: the origin, the path and the query without any token, and the
/// `Host` sent — never the token the proxy mints for the pull, which changes every second and
/// would give viewers arriving in different seconds pulls of their own.
fn hub_key(session: &Session, token_param: &str, request: &OriginRequest) -> String {
    let uri = &session.req_header().uri;
    let query = uri.query().and_then(|q| strip_query_param(q, token_param));
    let host = request
        .headers
        .iter()
        .find(|(name, _)| name == header::HOST)
        .map_or("", |(_, host)| host.as_str());
    format!(
        "{} {}?{} {host}",
        request.addr,
        uri.path(),
        query.as_deref().unwrap_or_default()
    )
}

/// The moment unix second `at` is over (a token is valid through its `exp` second).
fn instant_after_second(at: u64) -> tokio::time::Instant {
    let end = std::time::UNIX_EPOCH + Duration::from_secs(at.saturating_add(1));
    let left = end
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::Instant::now() + left
}

fn viewer_gone(read: Result<Option<bytes::Bytes>>) -> Box<Error> {
    match read {
        Err(e) => e,
        Ok(_) => Error::explain(
            ErrorType::ConnectionClosed,
            "viewer closed or sent data on an FLV response",
        ),
    }
}
