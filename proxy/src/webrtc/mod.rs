//! WebRTC playback signalling, gated like FLV and HLS. SRS's WHEP (`POST /rtc/v1/whep/?app=…&
//! stream=…` with an SDP offer) and its older `/rtc/v1/play/` (a JSON request naming the
//! stream in `streamurl`) are HTTP requests to the origin's API: the proxy admits a POST only
//! with a valid token for the room SRS will play, read as SRS reads it, caps the offer, and
//! forwards it — to the API port of the origin that serves the stream — with the token
//! removed, or put where SRS's `on_play` sees it when tokens go on to the origin; the answer
//! comes back as the origin wrote it, its session address pointed back at the edge, and the
//! media then flows between viewer and origin. [`sessions`] ends WHEP sessions whose token is
//! revoked or runs out.

pub mod sessions;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use livegate_core::config::Problems;
use livegate_core::token::token_from_query;

use crate::forwarding::strip_query_param;
use crate::playlist::TokenParam;

/// `[webrtc]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    /// The origins' API port (SRS: 1985). Offers go to the origin that serves the stream, at
    /// this port. Default none: WebRTC signalling is not proxied.
    pub api_port: Option<u16>,
    /// Paths taken as WebRTC signalling (a request path equal to one, with or without its
    /// trailing `/`). Default SRS's `/rtc/v1/whep/` and `/rtc/v1/play/`.
    pub paths: Vec<String>,
    /// Largest offer accepted, in bytes; a larger one is answered 413. Default 65536.
    pub max_offer_bytes: usize,
    /// Largest answer passed back, in bytes. Default 65536.
    pub max_answer_bytes: usize,
    /// End a WHEP session at the origin once the token it was admitted with has expired (plus
    /// `token.leeway_s` and the grace below), as `flv.end_at_token_expiry` does for FLV.
    /// Default false: a token only has to be valid when the offer is made. Revoked tokens
    /// end their sessions either way.
    pub end_at_token_expiry: bool,
    /// Seconds a session may run past its token's expiry when the option above is on.
    /// Default 0.
    pub expiry_grace_s: u64,
    /// Most WHEP sessions followed for revocation and expiry; past it the oldest is no longer
    /// followed (`webrtc_sessions_untracked_total`). Default 65536.
    pub max_tracked_sessions: usize,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            api_port: None,
            paths: vec!["/rtc/v1/whep/".to_owned(), "/rtc/v1/play/".to_owned()],
            max_offer_bytes: 64 * 1024,
            max_answer_bytes: 64 * 1024,
            end_at_token_expiry: false,
            expiry_grace_s: 0,
            max_tracked_sessions: 65536,
        }
    }
}

impl WebrtcConfig {
    /// Records problems under `webrtc`.
    pub fn validate(&self, problems: &mut Problems) {
        problems.check(
            self.api_port != Some(0),
            "webrtc.api_port",
            "must be a port number (1-65535)",
        );
        for (i, path) in self.paths.iter().enumerate() {
            problems.check(
                path.starts_with('/'),
                &format!("webrtc.paths[{i}]"),
                "must start with `/`",
            );
        }
        problems.check(
            self.max_offer_bytes >= 1024,
            "webrtc.max_offer_bytes",
            "must be at least 1024",
        );
        problems.check(
            self.max_answer_bytes >= 1024,
            "webrtc.max_answer_bytes",
            "must be at least 1024",
        );
        problems.check(
            self.max_tracked_sessions >= 1,
            "webrtc.max_tracked_sessions",
            "must be at least 1",
        );
    }
}

/// The signalling endpoint, when configured.
#[derive(Debug, Clone)]
pub struct Signalling {
    /// The origins' API port.
    pub api_port: u16,
    paths: Vec<String>,
    /// Offer cap.
    pub max_offer_bytes: usize,
    /// Answer cap.
    pub max_answer_bytes: usize,
}

impl Signalling {
    /// The endpoint `config` describes; `None` when no API port is set.
    pub fn new(config: &WebrtcConfig) -> Option<Signalling> {
        Some(Signalling {
            api_port: config.api_port?,
            paths: config
                .paths
                .iter()
                .map(|path| path.trim_end_matches('/').to_owned())
                .collect(),
            max_offer_bytes: config.max_offer_bytes,
            max_answer_bytes: config.max_answer_bytes,
        })
    }

    /// Whether `path` is a signalling path.
    pub fn handles(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        self.paths.iter().any(|known| known == path)
    }
}

/// Who an offer is for, read where the origin reads it. A WHEP offer is the SDP itself and
/// names its stream in the query (`app`, `stream`); an offer to SRS's play API is a JSON
/// object whose `streamurl` (`webrtc://host/app/stream?token=…`) names it, whatever the
/// query says. SRS fails an SDP posted to its play API and a JSON body posted as WHEP, so
/// telling the two apart by the body checks exactly the stream SRS would play.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The room its stream names (a room id).
    pub room: Option<u64>,
    /// `app/stream`, the key that pins the stream to one origin (as for FLV and HLS).
    pub stream_key: String,
    /// The token: from the query, or as WHEP clients send it, `Authorization: Bearer`; for
    /// the play API first from `streamurl`.
    pub token: Option<String>,
    /// Where the token was found.
    token_in: TokenIn,
    /// The play API's request, `None` for WHEP.
    play: Option<PlayRequest>,
}

/// Where an offer carried its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenIn {
    /// Nowhere.
    Absent,
    /// The play API's `streamurl`.
    StreamUrl,
    /// The request's query.
    Query,
    /// `Authorization: Bearer`.
    Header,
}

/// SRS's play API request (`{"sdp": …, "streamurl": …, …}`).
#[derive(Debug, Clone, PartialEq)]
struct PlayRequest {
    object: Map<String, Value>,
    stream_url: StreamUrl,
}

/// A `streamurl` split where SRS splits it: everything up to the stream, and the query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamUrl {
    base: String,
    query: Option<String>,
}

/// An offer the proxy cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadOffer {
    /// Its stream is not a room id.
    #[error("stream: must be a room id")]
    NotARoom,
    /// A JSON body that is not SRS's play request.
    #[error("offer: must be an SDP, or a JSON object with a string `streamurl`")]
    PlayRequest,
    /// A `streamurl` SRS would rearrange before reading the stream from it.
    #[error("streamurl: must be webrtc://host/app/stream with an optional ?query")]
    StreamUrl,
}

impl BadOffer {
    /// The answer's body.
    pub fn body(self) -> &'static [u8] {
        match self {
            BadOffer::NotARoom => b"stream: must be a room id\n",
            BadOffer::PlayRequest => {
                b"offer: must be an SDP, or a JSON object with a string `streamurl`\n"
            }
            BadOffer::StreamUrl => {
                b"streamurl: must be webrtc://host/app/stream with an optional ?query\n"
            }
        }
    }
}

/// Reads the stream and token of a session request (`DELETE`, `PATCH`) from its query.
pub fn session(query: Option<&str>, authorization: Option<&str>, token_param: &str) -> Offer {
    whep(query.unwrap_or_default(), authorization, token_param)
}

/// Reads an offer's room, stream and token from its body, query and `Authorization` header.
pub fn offer(
    query: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
    token_param: &str,
) -> Result<Offer, BadOffer> {
    let query = query.unwrap_or_default();
    let is_json = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|&byte| byte == b'{');
    if !is_json {
        let offer = whep(query, authorization, token_param);
        return match offer.room {
            Some(_) => Ok(offer),
            None => Err(BadOffer::NotARoom),
        };
    }
    let object: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| BadOffer::PlayRequest)?;
    let url = object
        .get("streamurl")
        .and_then(Value::as_str)
        .ok_or(BadOffer::PlayRequest)?;
    let (stream_url, app, stream) = StreamUrl::parse(url).ok_or(BadOffer::StreamUrl)?;
    let room = livegate_core::token::parse_room_id(&stream).ok_or(BadOffer::NotARoom)?;
    let (token, token_in) = match stream_url
        .query
        .as_deref()
        .and_then(|q| token_from_query(q, token_param))
    {
        Some(token) => (Some(token), TokenIn::StreamUrl),
        None => query_or_header(query, authorization, token_param),
    };
    Ok(Offer {
        room: Some(room),
        stream_key: format!("{app}/{stream}"),
        token,
        token_in,
        play: Some(PlayRequest { object, stream_url }),
    })
}

fn whep(query: &str, authorization: Option<&str>, token_param: &str) -> Offer {
    let params = srs_query(query);
    let param = |wanted: &str| {
        params
            .iter()
            .rev()
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| *value)
            .filter(|value| !value.is_empty())
    };
    let stream = param("stream").unwrap_or_default();
    let app = param("app").unwrap_or("live");
    let (token, token_in) = query_or_header(query, authorization, token_param);
    Offer {
        room: livegate_core::token::parse_room_id(stream),
        stream_key: format!("{app}/{stream}"),
        token,
        token_in,
        play: None,
    }
}

fn query_or_header(
    query: &str,
    authorization: Option<&str>,
    token_param: &str,
) -> (Option<String>, TokenIn) {
    if let Some(token) = token_from_query(query, token_param) {
        return (Some(token), TokenIn::Query);
    }
    match authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned())
    {
        Some(token) => (Some(token), TokenIn::Header),
        None => (None, TokenIn::Absent),
    }
}

/// A query's parameters as SRS's HTTP stack reads them: split at every `=`, `,`, `&&`, `&`
/// and `;`, paired in order, not percent-decoded, the last of a name winning. Reading `app`
/// and `stream` any other way would let `stream=42&stream=43` (or `stream=42;stream=43`)
/// check one room and play another.
fn srs_query(query: &str) -> Vec<(&str, &str)> {
    const SEPARATORS: [&str; 5] = ["=", ",", "&&", "&", ";"];
    let mut parts = Vec::new();
    let mut rest = query;
    loop {
        let earliest = SEPARATORS
            .iter()
            .filter_map(|separator| rest.find(separator).map(|at| (at, separator.len())))
            .min_by_key(|&(at, _)| at);
        let Some((at, len)) = earliest else { break };
        parts.push(&rest[..at]);
        rest = &rest[at + len..];
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
        .chunks(2)
        .map(|pair| (pair[0], pair.get(1).copied().unwrap_or_default()))
        .collect()
}

impl StreamUrl {
    /// `webrtc://host/app/stream?query` as the base, the app, the stream and the query. `None`
    /// for what SRS rearranges before reading the stream: a `/` after the query starts, or a
    /// fragment.
    fn parse(url: &str) -> Option<(StreamUrl, String, String)> {
        let (_scheme, rest) = url.split_once("://")?;
        if rest.contains('#') {
            return None;
        }
        let (base_rest, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        if query.is_some_and(|query| query.contains('/')) {
            return None;
        }
        let (_host, path) = base_rest.split_once('/')?;
        let (app, stream) = path.rsplit_once('/').unwrap_or(("", path));
        let app = if app.is_empty() { "live" } else { app };
        let base = &url[..url.len() - rest.len() + base_rest.len()];
        Some((
            StreamUrl {
                base: base.to_owned(),
                query: query.map(str::to_owned),
            },
            app.to_owned(),
            stream.to_owned(),
        ))
    }

    fn to_url(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.base),
            None => self.base.clone(),
        }
    }
}

/// What goes to the origin for an admitted offer: the query, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The request's query, if any is left.
    pub query: Option<String>,
    /// The offer's body.
    pub body: Bytes,
}

impl Offer {
    /// The origin's request for this offer. With `forward_token` the token goes where SRS
    /// hands it to `on_play` (the WHEP query, the play API's `streamurl`), since SRS reads
    /// neither `Authorization` nor, for the play API, the request's query; otherwise it is
    /// removed from both.
    pub fn upstream(
        &self,
        query: Option<&str>,
        body: Bytes,
        token_param: &str,
        forward_token: bool,
    ) -> Upstream {
        let token = self.token.as_deref().filter(|_| forward_token);
        let mut query = if forward_token {
            query.map(str::to_owned)
        } else {
            query.and_then(|q| strip_query_param(q, token_param))
        };
        let Some(play) = &self.play else {
            if let (Some(token), TokenIn::Header) = (token, self.token_in) {
                query = Some(append(
                    query.as_deref(),
                    &TokenParam::new(token_param, token),
                ));
            }
            return Upstream { query, body };
        };
        let mut stream_url = play.stream_url.clone();
        match token {
            Some(token) if self.token_in != TokenIn::StreamUrl => {
                let param = TokenParam::new(token_param, token);
                stream_url.query = Some(append(stream_url.query.as_deref(), &param));
            }
            Some(_) => {}
            None => {
                stream_url.query = stream_url
                    .query
                    .as_deref()
                    .and_then(|q| strip_query_param(q, token_param));
            }
        }
        // srs.sdk.js also copies its API URL, token and all, into `api`, which SRS logs.
        let api = play
            .object
            .get("api")
            .and_then(Value::as_str)
            .filter(|_| !forward_token)
            .and_then(|api| without_token(api, token_param));
        if stream_url == play.stream_url && api.is_none() {
            return Upstream { query, body };
        }
        let mut object = play.object.clone();
        object.insert("streamurl".to_owned(), Value::String(stream_url.to_url()));
        if let Some(api) = api {
            object.insert("api".to_owned(), Value::String(api));
        }
        let body = Value::Object(object).to_string().into();
        Upstream { query, body }
    }
}

/// `url` without the `name` query parameter, when it has one.
fn without_token(url: &str, name: &str) -> Option<String> {
    let (base, query) = url.split_once('?')?;
    token_from_query(query, name)?;
    Some(match strip_query_param(query, name) {
        Some(query) => format!("{base}?{query}"),
        None => base.to_owned(),
    })
}

fn append(query: Option<&str>, param: &TokenParam) -> String {
    match query {
        Some(query) if !query.is_empty() => format!("{query}&{}", param.pair()),
        _ => param.pair().to_owned(),
    }
}

/// The session's address (`Location`) as the viewer should use it: back through the edge,
/// on the path the offer came in on. SRS names `/rtc/v1/whip/` for WHEP sessions too, a path
/// the edge does not serve (it would take publishes); SRS tears a session down on any of its
/// WebRTC paths, by the session and its token in the query.
pub fn session_location(location: &str, api: std::net::SocketAddr, path: &str) -> String {
    let api_prefix = format!("http://{api}");
    let location = location.strip_prefix(&api_prefix).unwrap_or(location);
    if !location.starts_with('/') || location.starts_with("//") {
        return location.to_owned();
    }
    match location.split_once('?') {
        Some((_, query)) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// The session's address at the origin's API (path and query) when the answer's `Location`
/// names one there: what the edge sends a `DELETE` to when it ends the session itself.
pub fn origin_session_path(location: &str, api: std::net::SocketAddr) -> Option<String> {
    let api_prefix = format!("http://{api}");
    let location = location.strip_prefix(&api_prefix).unwrap_or(location);
    (location.starts_with('/') && !location.starts_with("//")).then(|| location.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &[u8] = b"v=0\r\n";

    fn offer_for(query: &str, authorization: Option<&str>) -> Offer {
        offer(Some(query), authorization, SDP, "token").unwrap()
    }

    #[test]
    fn offers_name_their_room_in_the_query_and_their_token_in_either_place() {
        let by_query = offer_for("app=live&stream=42&token=abc", None);
        assert_eq!(
            (by_query.room, by_query.token.as_deref()),
            (Some(42), Some("abc"))
        );
        assert_eq!(by_query.stream_key, "live/42");
        let by_header = offer_for("app=game&stream=42", Some("Bearer xyz"));
        assert_eq!(
            (by_header.room, by_header.token.as_deref()),
            (Some(42), Some("xyz"))
        );
        assert_eq!(by_header.stream_key, "game/42");
        assert_eq!(
            offer(Some("app=live&stream=livestream"), None, SDP, "token"),
            Err(BadOffer::NotARoom)
        );
        let signalling = Signalling::new(&WebrtcConfig {
            api_port: Some(1985),
            ..WebrtcConfig::default()
        })
        .unwrap();
        assert!(signalling.handles("/rtc/v1/whep/"));
        assert!(signalling.handles("/rtc/v1/whep"));
        assert!(!signalling.handles("/rtc/v1/whip/"));
    }

    #[test]
    fn the_stream_is_read_as_srs_reads_its_query() {
        // SRS splits at `;` and `,` too, and the last of a name wins.
        for (query, stream_key) in [
            ("app=live&stream=42&stream=43", "live/43"),
            ("stream=42;stream=43", "live/43"),
            ("stream=42,app,game", "game/42"),
            ("app=&stream=42", "live/42"),
        ] {
            assert_eq!(offer_for(query, None).stream_key, stream_key, "{query}");
        }
        // Not decoded: SRS would play a stream named `%34%32`.
        assert_eq!(
            offer(Some("stream=%34%32"), None, SDP, "token"),
            Err(BadOffer::NotARoom)
        );
    }

    #[test]
    fn play_api_offers_name_their_room_in_streamurl() {
        let request = |stream_url: &str| {
            serde_json::json!({"api": "x", "sdp": "v=0", "streamurl": stream_url}).to_string()
        };
        let body = request("webrtc://edge.example/live/42?token=abc");
        let play = offer(Some("stream=43&token=def"), None, body.as_bytes(), "token").unwrap();
        assert_eq!(
            (play.room, play.stream_key.as_str(), play.token.as_deref()),
            (Some(42), "live/42", Some("abc"))
        );
        let from_query = offer(
            Some("token=def"),
            None,
            request("webrtc://edge/42").as_bytes(),
            "token",
        )
        .unwrap();
        assert_eq!(
            (from_query.stream_key.as_str(), from_query.token.as_deref()),
            ("live/42", Some("def"))
        );
        for (body, bad) in [
            ("{\"sdp\": \"v=0\"}".to_owned(), BadOffer::PlayRequest),
            ("{not json".to_owned(), BadOffer::PlayRequest),
            (request("webrtc://edge/live/room"), BadOffer::NotARoom),
            (request("webrtc://edge/live?x=/42"), BadOffer::StreamUrl),
            (request("webrtc://edge/live/42#x"), BadOffer::StreamUrl),
            (request("edge/live/42"), BadOffer::StreamUrl),
        ] {
            assert_eq!(
                offer(None, None, body.as_bytes(), "token"),
                Err(bad),
                "{body}"
            );
        }
    }

    #[test]
    fn the_token_goes_where_srs_reads_it_or_nowhere() {
        let sdp = Bytes::from_static(SDP);
        let by_header = offer_for("app=live&stream=42", Some("Bearer a+b"));
        let forwarded = by_header.upstream(Some("app=live&stream=42"), sdp.clone(), "token", true);
        assert_eq!(
            forwarded.query.as_deref(),
            Some("app=live&stream=42&token=a%2Bb")
        );
        let by_query = offer_for("app=live&stream=42&token=abc", None);
        let query = Some("app=live&stream=42&token=abc");
        assert_eq!(
            by_query.upstream(query, sdp.clone(), "token", true).query,
            query.map(str::to_owned)
        );
        assert_eq!(
            by_query
                .upstream(query, sdp, "token", false)
                .query
                .as_deref(),
            Some("app=live&stream=42")
        );

        let body = serde_json::json!({"sdp": "v=0",
            "api": "http://edge/rtc/v1/play/?token=abc",
            "streamurl": "webrtc://edge/live/42?token=abc&x=1"})
        .to_string();
        let play = offer(Some("token=abc"), None, body.as_bytes(), "token").unwrap();
        let stripped = play.upstream(Some("token=abc"), body.clone().into(), "token", false);
        assert_eq!(stripped.query, None);
        let stripped: Value = serde_json::from_slice(&stripped.body).unwrap();
        assert_eq!(stripped["streamurl"], "webrtc://edge/live/42?x=1");
        assert_eq!(stripped["sdp"], "v=0");
        assert_eq!(stripped["api"], "http://edge/rtc/v1/play/");
        let kept = play.upstream(Some("token=abc"), body.clone().into(), "token", true);
        assert_eq!(kept.body, body.as_bytes());

        let body =
            serde_json::json!({"sdp": "v=0", "streamurl": "webrtc://edge/live/42"}).to_string();
        let play = offer(None, Some("Bearer abc"), body.as_bytes(), "token").unwrap();
        let added = play.upstream(None, body.into(), "token", true);
        let added: Value = serde_json::from_slice(&added.body).unwrap();
        assert_eq!(added["streamurl"], "webrtc://edge/live/42?token=abc");
    }

    #[test]
    fn session_locations_point_back_at_the_edge_on_the_offer_path() {
        let api: std::net::SocketAddr = "10.0.0.5:1985".parse().unwrap();
        let srs = "/rtc/v1/whip/?action=delete&token=t1&app=live&stream=42&session=a:b";
        assert_eq!(
            session_location(srs, api, "/rtc/v1/whep/"),
            "/rtc/v1/whep/?action=delete&token=t1&app=live&stream=42&session=a:b"
        );
        assert_eq!(
            session_location("http://10.0.0.5:1985/rtc/v1/whip/?session=s", api, "/whep"),
            "/whep?session=s"
        );
        assert_eq!(
            session_location("https://other.example/s/1", api, "/rtc/v1/whep/"),
            "https://other.example/s/1"
        );
    }
}
