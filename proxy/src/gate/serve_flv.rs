//! HTTP-FLV: the relay (see [`crate::flv`]) started for an admitted viewer.

use http::{header, HeaderName, Method};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::{debug, info, warn};

use super::{origin_failure, Gate, RequestCtx};
use crate::cors;
use crate::flv::{self, RelayError};
use crate::route::{Kind, Matched};

impl Gate {
    /// Relays an HTTP-FLV response from the origin to the viewer.
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
        let mut forwarding = RequestHeader::build(Method::GET, b"/", Some(4))?;
        self.settings
            .forwarding
            .apply(session, &mut forwarding, &origin.authority)?;
        let mut headers: Vec<(HeaderName, String)> = forwarding
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.to_str().ok()?.to_owned())))
            .collect();
        if let Some(agent) = session
            .req_header()
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            headers.push((header::USER_AGENT, agent.to_owned()));
        }
        let method = session.req_header().method.clone();
        let target = session
            .req_header()
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        let (connect, read, write) = self.origin.relay_timeouts();
        let limits = flv::RelayLimits {
            connect,
            read,
            write,
            deadline: ctx.flv_deadline,
        };
        let allow_origin = ctx.allow_origin.clone();
        let mut report = flv::RelayReport::default();
        let result = flv::relay(
            session,
            flv::OriginRequest {
                addr: origin.addr,
                method: &method,
                target: &target,
                headers,
            },
            limits,
            &mut report,
            |response| cors::apply(response, allow_origin.as_deref()),
        )
        .await;
        if let Some(latency) = report.header_latency {
            self.metrics
                .upstream_latency(Kind::Flv, latency.as_secs_f64());
        }
        let err = match result {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        match &err {
            RelayError::Viewer(cause) => {
                debug!(error = %cause, "FLV viewer left");
                ctx.aborted = true;
            }
            RelayError::TokenExpired => {
                ctx.flv_expired = true;
                info!(
                    room = ctx.grant.map(|g| g.room_id),
                    "ending FLV response: play token expired"
                );
            }
            other if !report.header_sent => {
                warn!(stream = %route.stream_key, error = %other, "FLV origin request failed");
                let (status, body) = origin_failure(other.is_timeout());
                return self.respond(session, ctx, status, body).await;
            }
            other => {
                warn!(stream = %route.stream_key, error = %other, "FLV relay ended by the origin")
            }
        }
        // The body is incomplete: the connection cannot carry another request.
        let ended = Error::explain(ErrorType::ConnectionClosed, "FLV relay ended");
        Err(if ctx.aborted {
            ended.into_down()
        } else {
            ended.into_up()
        })
    }
}
