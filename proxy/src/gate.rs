//! The request path: Pingora's `ProxyHttp` phases wired to the token check, the route table,
//! the origin selection and the playlist rewriter. Decisions live in those modules; this one
//! extracts what they need from the request, calls them and turns the answer into a response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::selection::Consistent;
use pingora::lb::LoadBalancer;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use tracing::{debug, info, warn};

use livegate_core::token::{Grant, Rejection, Verifier};
use livegate_core::{unix_now, Secret};

use crate::config::{Config, CorsConfig};
use crate::flv;
use crate::metrics::{ActiveFlv, Metrics, RequestClass};
use crate::origin::{FetchError, OriginClient};
use crate::playlist::{self, TokenParam};
use crate::route::{check_path, Kind, Matched, RouteTable};

/// Body of every 403: the reason stays in the log and the metrics.
const FORBIDDEN_BODY: &[u8] = b"forbidden\n";

/// Settings the request path reads, taken from [`Config`] once at start.
#[derive(Debug, Clone)]
pub struct GateSettings {
    token_param: String,
    forward_token: bool,
    origin_host: Option<String>,
    /// `host:port` names under which the origin may refer to itself in a redirect.
    origin_authorities: Vec<String>,
    downstream_write: Duration,
    playlist_max_bytes: usize,
    /// Seconds past a token's expiry at which its FLV response ends: leeway plus grace.
    flv_cutoff_after_expiry_s: Option<u64>,
    cors: Cors,
}

impl GateSettings {
    /// Extracts the request-path settings from the configuration.
    pub fn from_config(config: &Config) -> GateSettings {
        GateSettings {
            token_param: config.token.query_param.clone(),
            forward_token: config.token.forward_to_origin,
            origin_host: config.origin.host.clone(),
            origin_authorities: config
                .origin
                .addresses
                .iter()
                .chain(config.origin.host.iter())
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            downstream_write: config.timeouts.downstream_write(),
            playlist_max_bytes: config.playlist.max_bytes,
            flv_cutoff_after_expiry_s: config.flv.end_at_token_expiry.then_some(
                config
                    .token
                    .leeway_s
                    .saturating_add(config.flv.expiry_grace_s),
            ),
            cors: Cors::from_config(&config.cors),
        }
    }
}

/// CORS policy for web players.
#[derive(Debug, Clone)]
struct Cors {
    any: bool,
    allowed: Vec<String>,
    max_age: String,
}

impl Cors {
    fn from_config(config: &CorsConfig) -> Cors {
        Cors {
            any: config.allowed_origins.iter().any(|o| o == "*"),
            allowed: config.allowed_origins.clone(),
            max_age: config.max_age_s.to_string(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    fn allow(&self, origin: Option<&[u8]>) -> Option<Bytes> {
        let origin = origin?;
        if self.any {
            return Some(Bytes::from_static(b"*"));
        }
        self.allowed
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin))
            .then(|| Bytes::copy_from_slice(origin))
    }
}

/// Per-request state, filled in as the phases run.
#[derive(Debug)]
pub struct RequestCtx {
    class: RequestClass,
    route: Option<Matched>,
    grant: Option<Grant>,
    allow_origin: Option<Bytes>,
    upstream_sent_at: Option<Instant>,
    flv: Option<ActiveFlv>,
    /// Unix second after which this FLV response is ended (when configured).
    flv_deadline: Option<u64>,
    /// The FLV response was ended because its token expired.
    flv_expired: bool,
    local_body_bytes: u64,
}

/// The proxy: verifies play tokens and forwards what they allow to the origin.
pub struct Gate {
    verifier: Verifier,
    routes: RouteTable,
    origin: OriginClient,
    metrics: Arc<Metrics>,
    settings: GateSettings,
}

impl Gate {
    /// Assembles the request path.
    pub fn new(
        verifier: Verifier,
        routes: RouteTable,
        origins: Arc<LoadBalancer<Consistent>>,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Gate {
        Gate {
            verifier,
            routes,
            origin: OriginClient::new(origins, &config.timeouts),
            metrics,
            settings: GateSettings::from_config(config),
        }
    }

    /// Checks method, path and token, returning the route and the verified token.
    /// `Ok(None)` means a response was already written.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Option<(Matched, Secret)>> {
        let method = session.req_header().method.clone();
        if method == Method::OPTIONS {
            self.preflight(session, ctx).await?;
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

        let query = session.req_header().uri.query();
        let token = query.and_then(|q| query_param(q, &self.settings.token_param));
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

    /// Answers a CORS preflight locally.
    async fn preflight(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(allow_origin) = ctx.allow_origin.clone() else {
            return self
                .respond(session, ctx, StatusCode::FORBIDDEN, FORBIDDEN_BODY)
                .await;
        };
        let mut response = ResponseHeader::build(StatusCode::NO_CONTENT, Some(6))?;
        response.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin.as_ref())?;
        response.insert_header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")?;
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
        session
            .write_response_header(Box::new(response), true)
            .await
    }

    /// Writes a short plain-text answer, keeping the connection open for the next request.
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: StatusCode,
        body: &'static [u8],
    ) -> Result<()> {
        let mut response = ResponseHeader::build(status, Some(5))?;
        response.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
        response.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
        response.insert_header(header::CACHE_CONTROL, "no-store")?;
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.insert_header(header::ALLOW, "GET, HEAD, OPTIONS")?;
        }
        self.add_cors(&mut response, ctx)?;
        self.write_local(session, ctx, response, Bytes::from_static(body))
            .await
    }

    async fn write_local(
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
                .await;
        }
        ctx.local_body_bytes = body.len() as u64;
        session
            .write_response_header(Box::new(response), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }

    fn add_cors(&self, response: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
        apply_cors(response, ctx.allow_origin.as_deref())
    }

    /// Fetches the playlist from the origin, rewrites it for this viewer and answers with an
    /// exact `Content-Length`.
    async fn serve_playlist(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
        token: &Secret,
    ) -> Result<()> {
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
        self.add_forwarding_headers(session, &mut request)?;
        // The body is rewritten here, so it must arrive uncompressed.
        request.insert_header(header::ACCEPT_ENCODING, "identity")?;

        let started = Instant::now();
        let fetched = self
            .origin
            .fetch(&route.stream_key, request, self.settings.playlist_max_bytes)
            .await;
        let upstream = match fetched {
            Ok(upstream) => upstream,
            Err(err) => {
                if matches!(err, FetchError::TooLarge) {
                    self.metrics.playlists_too_large.inc();
                }
                warn!(stream = %route.stream_key, error = %err, "playlist fetch failed");
                let (status, body) = fetch_failure_response(&err);
                return self.respond(session, ctx, status, body).await;
            }
        };
        self.metrics
            .upstream_latency(Kind::Playlist, upstream.header_latency.as_secs_f64());
        debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "playlist fetched"
        );

        let host = session
            .req_header()
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let token = TokenParam::new(&self.settings.token_param, token.expose());
        if upstream.status != StatusCode::OK {
            // Pass the origin's verdict (404 before the stream starts, say) without its body. A
            // redirect (SRS's `hls_ctx` session) keeps its target, with the token added so the
            // player's next request is admitted too.
            let mut response = ResponseHeader::build(upstream.status, Some(5))?;
            if upstream.status.is_redirection() {
                if let Some(location) = &upstream.location {
                    // The viewer must come back through the edge, never go to the origin itself.
                    let location = self.localize(location, host.as_deref());
                    let location = playlist::with_token(location, &token, host.as_deref());
                    response.insert_header(header::LOCATION, location)?;
                }
            }
            response.insert_header(header::CONTENT_LENGTH, "0")?;
            response.insert_header(header::CACHE_CONTROL, "no-store")?;
            self.add_cors(&mut response, ctx)?;
            return self.write_local(session, ctx, response, Bytes::new()).await;
        }
        let Ok(text) = std::str::from_utf8(&upstream.body) else {
            warn!(stream = %route.stream_key, "playlist is not UTF-8");
            return self
                .respond(session, ctx, StatusCode::BAD_GATEWAY, b"invalid playlist\n")
                .await;
        };
        let rewritten = playlist::rewrite(text, &token, host.as_deref());

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
        self.add_cors(&mut response, ctx)?;
        self.write_local(session, ctx, response, Bytes::from(rewritten))
            .await
    }

    /// Relays an HTTP-FLV response from the origin (see [`crate::flv`]).
    async fn serve_flv(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Matched,
    ) -> Result<()> {
        let Some(addr) = self.origin.address_for(&route.stream_key) else {
            warn!(stream = %route.stream_key, "no healthy origin");
            return self
                .respond(
                    session,
                    ctx,
                    StatusCode::BAD_GATEWAY,
                    b"origin unavailable\n",
                )
                .await;
        };
        let mut forwarding = RequestHeader::build(Method::GET, b"/", Some(4))?;
        self.add_forwarding_headers(session, &mut forwarding)?;
        let mut headers: Vec<(http::HeaderName, String)> = forwarding
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
                addr,
                method: &method,
                target: &target,
                headers,
            },
            limits,
            &mut report,
            |response| apply_cors(response, allow_origin.as_deref()),
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
        if !report.header_sent {
            warn!(stream = %route.stream_key, error = %err, "FLV origin request failed");
            let (status, body): (StatusCode, &'static [u8]) = match err {
                flv::RelayError::OriginTimeout => {
                    (StatusCode::GATEWAY_TIMEOUT, b"origin timed out\n")
                }
                _ => (StatusCode::BAD_GATEWAY, b"origin unavailable\n"),
            };
            return self.respond(session, ctx, status, body).await;
        }
        match &err {
            flv::RelayError::TokenExpired => {
                ctx.flv_expired = true;
                info!(
                    room = ctx.grant.map(|g| g.room_id),
                    "ending FLV response: play token expired"
                );
            }
            flv::RelayError::Viewer(cause) => debug!(error = %cause, "FLV viewer left"),
            other => {
                warn!(stream = %route.stream_key, error = %other, "FLV relay ended by the origin")
            }
        }
        // The body is incomplete: the connection cannot carry another request.
        Err(Error::explain(
            ErrorType::ConnectionClosed,
            "FLV relay ended",
        ))
    }

    /// An absolute URL that points at the origin (or at the viewer's own edge host) becomes a
    /// path on this edge; anything else is returned unchanged.
    fn localize<'l>(&self, location: &'l str, viewer_host: Option<&str>) -> &'l str {
        let Some(rest) = location
            .strip_prefix("http://")
            .or_else(|| location.strip_prefix("https://"))
        else {
            return location;
        };
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = rest[..path_start].to_ascii_lowercase();
        let ours = self.settings.origin_authorities.contains(&authority)
            || viewer_host.is_some_and(|h| h.eq_ignore_ascii_case(&authority));
        match &rest[path_start..] {
            path if ours && path.starts_with('/') => path,
            _ => location,
        }
    }

    fn add_forwarding_headers(&self, session: &Session, request: &mut RequestHeader) -> Result<()> {
        if let Some(host) = &self.settings.origin_host {
            request.insert_header(header::HOST, host.as_str())?;
        } else if let Some(host) = session.req_header().headers.get(header::HOST).cloned() {
            request.insert_header(header::HOST, host)?;
        }
        if let Some(ip) = client_ip(session) {
            let forwarded_for = match session
                .req_header()
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(previous) => format!("{previous}, {ip}"),
                None => ip.clone(),
            };
            request.insert_header("X-Forwarded-For", forwarded_for)?;
            request.insert_header("X-Real-IP", ip)?;
        } else {
            // Never pass on a client's own claim about its address.
            request.remove_header("X-Real-IP");
        }
        Ok(())
    }
}

/// What the viewer is told when a playlist cannot be fetched.
fn fetch_failure_response(err: &FetchError) -> (StatusCode, &'static [u8]) {
    match err {
        FetchError::TooLarge => (StatusCode::BAD_GATEWAY, b"playlist too large\n"),
        FetchError::Timeout => (StatusCode::GATEWAY_TIMEOUT, b"origin timed out\n"),
        FetchError::NoOrigin | FetchError::Origin(_) => {
            (StatusCode::BAD_GATEWAY, b"origin unavailable\n")
        }
    }
}

/// Applies the proxy's CORS policy: the origin's own CORS headers are dropped (SRS's
/// `crossdomain` must not widen the policy) and ours are added for an allowed origin.
fn apply_cors(response: &mut ResponseHeader, allow_origin: Option<&[u8]>) -> Result<()> {
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_MAX_AGE,
    ] {
        response.remove_header(&name);
    }
    if let Some(origin) = allow_origin {
        response.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        response.append_header(header::VARY, "Origin")?;
    }
    Ok(())
}

fn client_ip(session: &Session) -> Option<String> {
    session
        .client_addr()
        .and_then(|addr| addr.as_inet())
        .map(|addr| addr.ip().to_string())
}

/// The percent-decoded value of the first `name` parameter in `query`.
///
/// `+` stays `+`: tokens are base64, and a standard-alphabet token pasted into a URL unencoded
/// must still verify.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// `query` without any `name` parameter; `None` when nothing is left.
pub fn strip_query_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
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
            upstream_sent_at: None,
            flv: None,
            flv_deadline: None,
            flv_expired: false,
            local_body_bytes: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.allow_origin = self.settings.cors.allow(
            session
                .req_header()
                .headers
                .get(header::ORIGIN)
                .map(|v| v.as_bytes()),
        );
        let Some((route, token)) = self.admit(session, ctx).await? else {
            return Ok(true);
        };
        session.set_write_timeout(Some(self.settings.downstream_write));

        if !self.settings.forward_token {
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
        }
        if route.kind == Kind::Playlist {
            self.serve_playlist(session, ctx, &route, &token).await?;
            return Ok(true);
        }
        if route.kind == Kind::Flv {
            ctx.flv = Some(ActiveFlv::start(&self.metrics.flv_sessions_active));
            ctx.flv_deadline = self
                .settings
                .flv_cutoff_after_expiry_s
                .zip(ctx.grant)
                .map(|(after, grant)| grant.expires_at.saturating_add(after));
            ctx.route = Some(route.clone());
            self.serve_flv(session, ctx, &route).await?;
            return Ok(true);
        }
        ctx.route = Some(route);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let key = ctx.route.as_ref().map_or("", |r| r.stream_key.as_str());
        self.origin.peer_for(key).ok_or_else(|| {
            Error::explain(ErrorType::HTTPStatus(502), "no healthy origin for stream")
        })
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.add_forwarding_headers(session, upstream_request)?;
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
        self.add_cors(upstream_response, ctx)
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map_or(0, |response| response.status.as_u16());
        let body_bytes = (session.body_bytes_sent() as u64).max(ctx.local_body_bytes);
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
        // Viewers leaving an FLV stream, or its token running out, is the normal end of one.
        ctx.flv_expired
            || (ctx.flv.is_some()
                && matches!(
                    error.etype(),
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
                ))
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if ctx.flv_expired {
            // The response header went out long ago: nothing more to write.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let error_code = match error.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match error.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match error.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if error_code > 0 && session.response_written().is_none() {
            let _ = session.respond_error(error_code).await;
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_taken_from_the_first_parameter_and_decoded() {
        assert_eq!(
            query_param("a=1&token=x%2By&token=z", "token").as_deref(),
            Some("x+y")
        );
        assert_eq!(query_param("token=a+b", "token").as_deref(), Some("a+b"));
        assert_eq!(query_param("tokens=a", "token"), None);
        assert_eq!(query_param("token", "token").as_deref(), Some(""));
    }

    #[test]
    fn token_is_stripped_and_other_parameters_kept() {
        assert_eq!(
            strip_query_param("hls_ctx=ab&token=x&b=2", "token").as_deref(),
            Some("hls_ctx=ab&b=2")
        );
        assert_eq!(strip_query_param("token=x", "token"), None);
        assert_eq!(strip_query_param("token=x&token=y", "token"), None);
        assert_eq!(
            strip_query_param("tokenx=1", "token").as_deref(),
            Some("tokenx=1")
        );
    }

    #[test]
    fn cors_allows_listed_origins_only() {
        let cors = Cors::from_config(&CorsConfig {
            allowed_origins: vec!["https://player.example".into()],
            max_age_s: 60,
        });
        assert_eq!(
            cors.allow(Some(b"https://player.example")).as_deref(),
            Some(&b"https://player.example"[..])
        );
        assert_eq!(cors.allow(Some(b"https://evil.example")), None);
        assert_eq!(cors.allow(None), None);
        let any = Cors::from_config(&CorsConfig {
            allowed_origins: vec!["*".into()],
            max_age_s: 60,
        });
        assert_eq!(
            any.allow(Some(b"https://x.example")).as_deref(),
            Some(&b"*"[..])
        );
    }
}
