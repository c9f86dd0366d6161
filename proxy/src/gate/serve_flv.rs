//! HTTP-FLV for an admitted viewer: join the stream's hub and write what it hands over.

use std::time::Duration;

use http::{header, HeaderName, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::{debug, info, warn};

use livegate_core::unix_now;

use super::{origin_failure, Gate, RequestCtx, PULL_TOKEN_TTL_S};
use crate::cors;
use crate::flv::hub::JoinError;
use crate::flv::origin::OriginRequest;
use crate::flv::queue::{End, Next};
use crate::forwarding::strip_query_param;
use crate::route::Matched;

/// How an FLV response ended before its stream did.
enum Cut {
    Viewer(Box<Error>),
    Expired,
    Revoked,
    Lagged,
    Origin,
}

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

        let _counted = ctx
            .grant
            .map(|grant| self.viewers.flv_viewer(grant.room_id));
        let deadline = ctx.flv_deadline.map(instant_after_second);
        let mut revocations = self.revocations.watch();
        let grant = ctx.grant;
        let cut = loop {
            let next = tokio::select! {
                next = subscription.next() => next,
                // A viewer that closes its side ends the response now, not at the next write.
                gone = session.read_body_or_idle(true) => break Cut::Viewer(viewer_gone(gone)),
                () = sleep_until(deadline) => break Cut::Expired,
                Ok(()) = revocations.changed() => {
                    let revoked = grant.is_some_and(|grant| {
                        self.revocations.is_revoked(grant.room_id, grant.expires_at)
                    });
                    if revoked {
                        break Cut::Revoked;
                    }
                    continue;
                }
            };
            match next {
                Next::Data(bytes) => {
                    if let Err(err) = session.write_response_body(Some(bytes), false).await {
                        break Cut::Viewer(err);
                    }
                }
                Next::End(End::Finished) => {
                    return session.write_response_body(None, true).await.map_err(|e| {
                        ctx.aborted = true;
                        e.into_down()
                    });
                }
                Next::End(End::Lagged) => break Cut::Lagged,
                Next::End(End::OriginFailed) => break Cut::Origin,
            }
        };
        drop(subscription);
        let ended = Error::explain(ErrorType::ConnectionClosed, "FLV response ended");
        // The body is incomplete: the connection cannot carry another request.
        Err(match cut {
            Cut::Viewer(cause) => {
                debug!(error = %cause, "FLV viewer left");
                ctx.aborted = true;
                ended.into_down()
            }
            Cut::Expired => {
                ctx.flv_expired = true;
                info!(
                    room = ctx.grant.map(|g| g.room_id),
                    "ending FLV response: play token expired"
                );
                ended
            }
            Cut::Revoked => {
                // Like an expired token: the proxy's decision, not a failure.
                ctx.flv_expired = true;
                self.metrics.flv_viewers_revoked.inc();
                info!(
                    room = ctx.grant.map(|g| g.room_id),
                    "ending FLV response: the room revoked its token"
                );
                ended
            }
            Cut::Lagged => {
                info!(stream = %route.stream_key, "FLV viewer cut: it stayed behind the stream");
                ended.into_down()
            }
            Cut::Origin => ended.into_up(),
        })
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
