//! Origin requests for HLS: built from the viewer's request, answered through the cache when it
//! is on (one origin request per key, however many viewers ask at once, its body handed to each
//! of them as it arrives), directly otherwise.

use std::borrow::Cow;
use std::sync::Arc;

use http::{header, Method};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;

use livegate_core::unix_now;

use super::{Gate, RequestCtx, PULL_TOKEN_TTL_S};
use crate::cache::{self, Answer, Cached, Source};
use crate::forwarding::query_value;
use crate::origin::{FetchError, Origin, OriginResponse};
use crate::route::{Kind, Matched};

/// An HLS request for the origin, and where its answer is kept.
pub(super) struct HlsRequest {
    key: String,
    room: Option<u64>,
    upstream: Upstream,
}

/// What answers an HLS request: the cache (found when the request was prepared), or the origin.
enum Upstream {
    /// A fresh cached answer: no origin request is needed.
    Cached(Arc<Cached>),
    /// The origin and the request for it (boxed: hits, the usual case, carry no request).
    Origin {
        origin: Origin,
        request: Box<RequestHeader>,
    },
}

/// An origin answer for an HLS request, and where it came from (`None`: the cache is off).
pub(super) type HlsAnswer = (Result<Answer, Arc<FetchError>>, Option<Source>);

impl Gate {
    /// The origin request for this viewer's HLS request: its path and, through the cache, only
    /// the query parameters its key keeps (with the cache off, the whole query), the token
    /// when it is forwarded, the forwarding headers, and an uncompressed body (the cache keeps
    /// bytes every viewer can be sent, and playlists are rewritten); with the cache key and
    /// room it is kept under. A request the cache can answer as it stands is not built at all:
    /// most requests are such hits, and the origin request would be thrown away.
    pub(super) fn hls_request(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        route: &Matched,
        origin: &Origin,
    ) -> Result<HlsRequest> {
        let uri = &session.req_header().uri;
        let host = self
            .settings
            .forwarding
            .forwards_viewer_host()
            .then(|| session.req_header().headers.get(header::HOST))
            .flatten()
            .and_then(|host| host.to_str().ok());
        // The key and the origin request keep the same parameters, spelt the same way: what is
        // stored is exactly what its key names.
        let kept_query = self
            .cache
            .is_some()
            .then(|| self.settings.cache_key_params.select(uri.query()))
            .flatten();
        let key = cache::key(host, uri.path(), kept_query.as_deref());
        let room = ctx.grant.map(|grant| grant.room_id);
        if let Some(hit) = self.cache.as_ref().and_then(|store| store.get(&key)) {
            return Ok(HlsRequest {
                key,
                room,
                upstream: Upstream::Cached(hit),
            });
        }
        let mut target = match (&self.cache, kept_query) {
            (Some(_), Some(kept)) => format!("{}?{kept}", uri.path()),
            (Some(_), None) => uri.path().to_owned(),
            // Nothing is kept: the query goes on as the viewer sent it (without the token
            // unless it is forwarded).
            (None, _) => uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned(),
        };
        if self.settings.forward_token {
            let token_param = &self.settings.token_param;
            let token = match route.room_id {
                // A CDN puller brings no viewer token; an origin that checks tokens gets the
                // proxy's own, as for an FLV pull.
                Some(room) if ctx.puller => Some(Cow::Owned(
                    self.verifier
                        .keys()
                        .mint(room, unix_now() + PULL_TOKEN_TTL_S),
                )),
                // The viewer's token is not among the kept parameters: it goes on as the viewer
                // wrote it. Without the cache it is still in the query.
                _ if self.cache.is_some() => uri
                    .query()
                    .and_then(|query| query_value(query, token_param))
                    .map(Cow::Borrowed),
                _ => None,
            };
            if let Some(token) = token {
                target.push(if target.contains('?') { '&' } else { '?' });
                target.push_str(token_param);
                target.push('=');
                target.push_str(&token);
            }
        }
        let mut request = RequestHeader::build(Method::GET, target.as_bytes(), Some(6))?;
        self.settings
            .forwarding
            .apply(session, &mut request, &origin.authority)?;
        request.insert_header(header::ACCEPT_ENCODING, "identity")?;
        Ok(HlsRequest {
            key,
            room,
            upstream: Upstream::Origin {
                origin: origin.clone(),
                request: Box::new(request),
            },
        })
    }

    /// Asks the origin for `request` (a body of at most `max_bytes`) through the cache, and
    /// returns once the response head is in: without the cache, the response is read whole.
    pub(super) async fn fetch_hls(
        &self,
        kind: Kind,
        hls: HlsRequest,
        max_bytes: usize,
    ) -> HlsAnswer {
        let HlsRequest {
            key,
            room,
            upstream,
        } = hls;
        let (origin, request) = match upstream {
            Upstream::Cached(hit) => {
                self.metrics.cache_lookup(kind, Source::Hit);
                return (Ok(Answer::Whole(hit)), Some(Source::Hit));
            }
            Upstream::Origin { origin, request } => (origin, *request),
        };
        let Some(store) = &self.cache else {
            let fetched = self.origin.fetch(&origin, request, max_bytes).await;
            if let Ok(fetched) = &fetched {
                self.metrics
                    .upstream_latency(kind, fetched.header_latency.as_secs_f64());
            }
            let cached =
                fetched.map(|fetched| Answer::Whole(Arc::new(Cached::uncached(room, fetched))));
            return (cached.map_err(Arc::new), None);
        };
        let freshness = self.settings.freshness;
        // An LL-HLS blocking reload waits at the origin for a part that does not exist yet:
        // viewers asking for the same one share the wait, but its answer is not kept (the next
        // reload asks for a later part anyway).
        let blocking = kind == Kind::Playlist && is_blocking_reload(&key);
        let ttl_for: cache::TtlFor = Box::new(move |head, body| match kind {
            _ if blocking => std::time::Duration::ZERO,
            Kind::Playlist => freshness.playlist(head, body),
            _ => freshness.segment(head),
        });
        let client = self.origin.clone();
        let metrics = self.metrics.clone();
        let open = move || -> cache::Open<OriginResponse> {
            let (client, metrics, origin, request) = (
                client.clone(),
                metrics.clone(),
                origin.clone(),
                request.clone(),
            );
            Box::pin(async move {
                let response = client.open(&origin, request, max_bytes).await?;
                metrics.upstream_latency(kind, response.header_latency.as_secs_f64());
                // A playlist is answered only once it is whole, so it must be whole in time; a
                // segment's viewers get its bytes as they come.
                Ok(match kind {
                    Kind::Playlist => response.whole_by_deadline(),
                    _ => response,
                })
            })
        };
        // Counted when decided, so that the requests waiting for a fill show at once.
        let lookup = store.lookup(&key, room, ttl_for, open);
        self.metrics.cache_lookup(kind, lookup.source());
        let (answer, source) = lookup.answer().await;
        (answer, Some(source))
    }
}

/// Whether a playlist key asks for an LL-HLS blocking reload (`_HLS_msn`, `_HLS_part`).
fn is_blocking_reload(key: &str) -> bool {
    key.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            name == "_HLS_msn" || name == "_HLS_part"
        })
    })
}
