//! The request path: Pingora's `ProxyHttp` phases wired to the admission checks, the origin
//! selection, the playlist rewriter and the FLV relay. Decisions live in those modules; the
//! phases here extract what they need from the request, call them and turn the answer into a
//! response.

mod admit;
mod hls_fetch;
mod respond;
mod serve_flv;
mod serve_playlist;
mod serve_segment;
mod serve_webrtc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::selection::Consistent;
use pingora::lb::LoadBalancer;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use tracing::debug;

use livegate_core::token::{Grant, Verifier};

use crate::cache::{Freshness, HlsCache, KeyParams};
use crate::cdn::Pullers;
use crate::config::Config;
use crate::cors::{self, Cors};
use crate::drain::{InFlight, InFlightGuard};
use crate::flv::hub::{HubSettings, Hubs};
use crate::flv::origin::OriginTimeouts;
use crate::flv::queue::QueueLimits;
use crate::forwarding::{strip_query_param, Forwarding};
use crate::metrics::{ActiveGauge, Metrics, RequestClass};
use crate::origin::{self, Origin, OriginClient};
use crate::playlist::{EdgeNames, RewriteLimits};
use crate::revocation::RevocationList;
use crate::route::{Kind, Matched, RouteTable};
use crate::viewers::ViewerCounts;
use crate::webrtc::sessions::WebrtcSessions;
use crate::webrtc::Signalling;

/// The status counted and logged for a viewer that went away before its response was complete
/// (nginx's convention): never a server error.
pub const CLIENT_CLOSED: u16 = 499;

/// How long a token the proxy mints for its own origin requests stays valid: the origin checks
/// it once, when the request arrives.
const PULL_TOKEN_TTL_S: u64 = 300;

/// Bytes from an FLV origin that go out to the viewers before their merge window ends: a
/// window's worth of any ordinary stream stays well below it.
const FLV_MERGE_MAX_BYTES: usize = 256 * 1024;

/// Says whether an HLS answer came from the cache (`HIT`), from this request's origin fetch
/// (`MISS`) or from another request's (`COALESCED`).
const X_CACHE: &str = "x-cache";

/// Settings the request path reads, taken from [`Config`] once at start.
#[derive(Debug, Clone)]
pub struct GateSettings {
    token_param: String,
    forward_token: bool,
    forwarding: Forwarding,
    edge: EdgeNames,
    downstream_write: Duration,
    playlist_max_bytes: usize,
    rewrite_limits: RewriteLimits,
    /// Seconds past a token's expiry at which its FLV response ends: leeway plus grace.
    flv_cutoff_after_expiry_s: Option<u64>,
    cors: Cors,
    freshness: Freshness,
    cache_max_object_bytes: usize,
    /// The query parameters a request through the cache keeps (`cache.key_query_params`).
    cache_key_params: KeyParams,
    pullers: Option<Pullers>,
    signalling: Option<Signalling>,
}

impl GateSettings {
    /// Extracts the request-path settings from the configuration.
    pub fn from_config(config: &Config) -> GateSettings {
        GateSettings {
            token_param: config.token.query_param.clone(),
            forward_token: config.token.forward_to_origin,
            forwarding: Forwarding::from_config(config),
            edge: EdgeNames::new(&config.server.hostnames),
            downstream_write: config.timeouts.downstream_write(),
            playlist_max_bytes: config.playlist.max_bytes,
            rewrite_limits: RewriteLimits {
                max_output_bytes: config.playlist.max_output_bytes,
                max_line_bytes: config.playlist.max_line_bytes,
            },
            flv_cutoff_after_expiry_s: config.flv.end_at_token_expiry.then_some(
                config
                    .token
                    .leeway_s
                    .saturating_add(config.flv.expiry_grace_s),
            ),
            cors: Cors::from_config(&config.cors),
            freshness: Freshness {
                playlist: config.cache.playlist_ttl_ms.map(Duration::from_millis),
                segment: Duration::from_secs(config.cache.segment_ttl_s),
                honor_no_cache: config.cache.honor_no_cache,
            },
            cache_max_object_bytes: config.cache.max_object_bytes,
            cache_key_params: KeyParams::new(
                &config.cache.key_query_params,
                &config.token.query_param,
            ),
            pullers: config.cdn.as_ref().and_then(Pullers::new),
            signalling: Signalling::new(&config.webrtc),
        }
    }
}

/// Per-request state, filled in as the phases run.
#[derive(Debug)]
pub struct RequestCtx {
    class: RequestClass,
    route: Option<Matched>,
    grant: Option<Grant>,
    allow_origin: Option<Bytes>,
    /// The origin chosen for a proxied segment request.
    origin: Option<Origin>,
    upstream_sent_at: Option<Instant>,
    flv: Option<ActiveGauge>,
    /// Unix second after which this FLV response is ended (when configured).
    flv_deadline: Option<u64>,
    /// The FLV response was ended because its token expired.
    flv_expired: bool,
    /// The viewer went away before its response was complete.
    aborted: bool,
    /// The request comes from a CDN puller (admitted without a token).
    puller: bool,
    local_body_bytes: u64,
    /// The FLV response's connection was handed off: its body, counting and log happen there.
    handed_off: bool,
    /// Counts the request as running; an FLV response handed off takes it along.
    in_flight: Option<InFlightGuard>,
}

/// The proxy: verifies play tokens and forwards what they allow to the origin.
pub struct Gate {
    verifier: Verifier,
    routes: RouteTable,
    origin: Arc<OriginClient>,
    metrics: Arc<Metrics>,
    settings: GateSettings,
    in_flight: Arc<InFlight>,
    hubs: Arc<Hubs>,
    cache: Option<Arc<HlsCache>>,
    revocations: Arc<RevocationList>,
    viewers: Arc<ViewerCounts>,
    webrtc_sessions: Arc<WebrtcSessions>,
}

impl Gate {
    /// Assembles the request path; `cache` is the HLS cache when it is on.
    #[allow(clippy::too_many_arguments, reason = "each is a distinct shared part")]
    pub fn new(
        verifier: Verifier,
        routes: RouteTable,
        origins: Arc<LoadBalancer<Consistent>>,
        config: &Config,
        metrics: Arc<Metrics>,
        in_flight: Arc<InFlight>,
        cache: Option<Arc<HlsCache>>,
        revocations: Arc<RevocationList>,
        viewers: Arc<ViewerCounts>,
        webrtc_sessions: Arc<WebrtcSessions>,
    ) -> Gate {
        let hubs = Arc::new(Hubs::new(
            HubSettings {
                linger: Duration::from_millis(config.flv.linger_ms),
                gop_max_bytes: config.flv.gop_cache_bytes,
                merge: Duration::from_millis(config.flv.merge_ms),
                merge_max_bytes: FLV_MERGE_MAX_BYTES,
                queue: QueueLimits {
                    max_bytes: config.flv.viewer_queue_bytes,
                    max_lag: Duration::from_millis(config.flv.max_lag_ms),
                },
                timeouts: OriginTimeouts {
                    connect: config.timeouts.connect(),
                    read: config.timeouts.upstream_read(),
                    write: config.timeouts.upstream_write(),
                },
            },
            metrics.clone(),
        ));
        Gate {
            verifier,
            routes,
            origin: Arc::new(OriginClient::new(origins, &config.timeouts)),
            metrics,
            settings: GateSettings::from_config(config),
            in_flight,
            hubs,
            cache,
            revocations,
            viewers,
            webrtc_sessions,
        }
    }

    /// Removes the token from the request before it goes to the origin, unless configured to
    /// forward it.
    fn strip_token(&self, session: &mut Session) -> Result<()> {
        if self.settings.forward_token {
            return Ok(());
        }
        let uri = &session.req_header().uri;
        let stripped = uri
            .query()
            .and_then(|q| strip_query_param(q, &self.settings.token_param));
        let path_and_query = match stripped {
            Some(query) => format!("{}?{query}", uri.path()),
            None => uri.path().to_owned(),
        };
        let uri = path_and_query
            .parse::<http::Uri>()
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rebuilding URI", e))?;
        session.req_header_mut().set_uri(uri);
        Ok(())
    }
}

impl Gate {
    /// What a viewer's request passed on to the origin gets on its way there, whether Pingora
    /// proxies it or the request path relays it.
    fn filter_origin_request(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
        authority: &str,
    ) -> Result<()> {
        self.settings
            .forwarding
            .apply(session, upstream_request, authority)?;
        if let Some(pullers) = &self.settings.pullers {
            upstream_request.remove_header(pullers.header());
        }
        Ok(())
    }

    /// What an origin response passed on as the origin sent it gets on its way to the viewer,
    /// whether Pingora proxies it or the request path relays it.
    fn filter_origin_response(
        &self,
        upstream_response: &mut ResponseHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        // The origin's software and version are nobody's business (nginx hides them too).
        upstream_response.remove_header(&header::SERVER);
        if let (true, Some(pullers)) = (ctx.puller, &self.settings.pullers) {
            if upstream_response.status == StatusCode::OK {
                upstream_response.insert_header(
                    header::CACHE_CONTROL,
                    pullers.segment_cache_control.as_str(),
                )?;
            }
        }
        cors::apply(upstream_response, ctx.allow_origin.as_deref())
    }
}

/// Whether `error` means the viewer went away (rather than the origin or the proxy failing).
fn is_viewer_gone(error: &Error) -> bool {
    error.esource() == &ErrorSource::Downstream
        && matches!(
            error.etype(),
            ErrorType::WriteError
                | ErrorType::ReadError
                | ErrorType::ConnectionClosed
                | ErrorType::WriteTimedout
                | ErrorType::ReadTimedout
        )
}

#[async_trait]
impl ProxyHttp for Gate {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            class: RequestClass::Other,
            route: None,
            grant: None,
            allow_origin: None,
            origin: None,
            upstream_sent_at: None,
            flv: None,
            flv_deadline: None,
            flv_expired: false,
            aborted: false,
            puller: false,
            local_body_bytes: 0,
            handed_off: false,
            in_flight: Some(self.in_flight.start()),
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A request pipelined behind this one is answered after it (RFC 9112 §9.3.2) rather than
        // dropped with the connection: the head guard hands Pingora one request at a time, and
        // a session that reads into the next one keeps it for the session after it.
        session.set_pipelining_enabled(true);
        // Pingora (0.9.1) sets up a request's body reader on the first look at its body, and
        // setting it up drops what a look for the viewer leaving (`read_body_or_idle(true)`,
        // which skips that step) kept of the next request: the first bytes of its head. Set up
        // now, before any such look, the reader keeps them for the next session.
        let _ = session.is_body_done();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.allow_origin = self.settings.cors.allow(
            session
                .req_header()
                .headers
                .get(header::ORIGIN)
                .map(|v| v.as_bytes()),
        );
        if let Some(signalling) = &self.settings.signalling {
            if signalling.handles(session.req_header().uri.path()) {
                let signalling = signalling.clone();
                self.serve_webrtc(session, ctx, &signalling).await?;
                return Ok(true);
            }
        }
        let Some((route, token)) = self.admit(session, ctx).await? else {
            return Ok(true);
        };
        session.set_write_timeout(Some(self.settings.downstream_write));
        self.strip_token(session)?;
        match route.kind {
            Kind::Playlist => {
                if let Some(grant) = ctx.grant {
                    self.viewers.hls_seen(grant.room_id, token.expose());
                }
                self.serve_playlist(session, ctx, &route, &token).await?;
                Ok(true)
            }
            Kind::Flv => {
                ctx.flv = Some(ActiveGauge::start(&self.metrics.flv_sessions_active));
                ctx.flv_deadline = self
                    .settings
                    .flv_cutoff_after_expiry_s
                    .zip(ctx.grant)
                    .map(|(after, grant)| grant.expires_at.saturating_add(after));
                ctx.route = Some(route.clone());
                self.serve_flv(session, ctx, &route).await?;
                Ok(true)
            }
            Kind::Segment => {
                if self.serve_segment(session, ctx, &route, &token).await? {
                    return Ok(true);
                }
                ctx.route = Some(route);
                Ok(false)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let key = ctx.route.as_ref().map_or("", |r| r.stream_key.as_str());
        let origin = self.origin.select(key).ok_or_else(|| {
            Error::explain(ErrorType::HTTPStatus(502), "no healthy origin for stream")
        })?;
        let peer = self.origin.peer(&origin);
        ctx.origin = Some(origin);
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let authority = ctx.origin.as_ref().map_or("", |o| o.authority.as_str());
        self.filter_origin_request(session, upstream_request, authority)?;
        ctx.upstream_sent_at = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(sent), Some(route)) = (ctx.upstream_sent_at, &ctx.route) {
            self.metrics
                .upstream_latency(route.kind, sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.filter_origin_response(upstream_response, ctx)
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.handed_off {
            // The response is still running on its own; it counts and logs itself at its end.
            return;
        }
        let written = session
            .response_written()
            .map_or(0, |response| response.status.as_u16());
        let viewer_gone = ctx.aborted || error.is_some_and(is_viewer_gone);
        // A response that went out whole keeps its status even if the viewer then left; one
        // cut short (or never sent) by the viewer leaving is the viewer's doing.
        let status = if viewer_gone && !ctx.flv_expired && (written == 0 || error.is_some()) {
            CLIENT_CLOSED
        } else {
            written
        };
        let body_bytes = (session.body_bytes_sent() as u64).max(ctx.local_body_bytes);
        if (200..300).contains(&written) && !viewer_gone && error.is_some() {
            // The head went out, then the body failed on the origin's side.
            self.metrics.cut_short(ctx.class);
        }
        self.metrics.request_done(ctx.class, status, body_bytes);
        // Dropping the guard now, not when the context is freed, keeps the gauge exact.
        ctx.flv = None;
        debug!(
            method = %session.req_header().method,
            path = session.req_header().uri.path(),
            status,
            body_bytes,
            room = ctx.grant.map(|g| g.room_id),
            error = error.map(|e| e.to_string()),
            "request done"
        );
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        // Pingora's default summary includes the query string, which holds the play token.
        format!(
            "{} {}",
            session.req_header().method,
            session.req_header().uri.path()
        )
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        // Viewers leaving, or an FLV token running out, are normal ends: `logging` records them
        // (as 499) without an error line per closed tab.
        ctx.flv_expired || ctx.aborted || is_viewer_gone(error)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let error_code = if ctx.flv_expired {
            // The response header went out long ago: nothing more to write.
            0
        } else if ctx.aborted || is_viewer_gone(error) {
            CLIENT_CLOSED
        } else {
            match error.etype() {
                ErrorType::HTTPStatus(code) => *code,
                etype => match error.esource() {
                    ErrorSource::Upstream if origin::is_timeout(etype) => 504,
                    ErrorSource::Upstream => 502,
                    ErrorSource::Downstream => 400,
                    ErrorSource::Internal | ErrorSource::Unset => 500,
                },
            }
        };
        // Nobody is listening for a 499.
        if error_code > 0 && error_code != CLIENT_CLOSED && session.response_written().is_none() {
            let _ = session.respond_error(error_code).await;
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }
}

/// Writes a status line for an origin failure that happened before any response header.
fn origin_failure(timed_out: bool) -> (StatusCode, &'static [u8]) {
    if timed_out {
        (StatusCode::GATEWAY_TIMEOUT, b"origin timed out\n")
    } else {
        (StatusCode::BAD_GATEWAY, b"origin unavailable\n")
    }
}
