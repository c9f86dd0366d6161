//! WebRTC playback signalling, gated like FLV and HLS. SRS's WHEP (`POST /rtc/v1/whep/?app=…&
//! stream=…` with an SDP offer) and its older `/rtc/v1/play/` are HTTP requests to the origin's
//! API: the proxy admits a POST only with a valid token for the room its `stream` parameter
//! names, caps the offer, and forwards it — to the API port of the origin that serves the
//! stream — with the token removed (unless tokens go on to the origin); the answer comes back
//! as the origin wrote it, and the media then flows between viewer and origin.

use serde::Deserialize;

use livegate_core::config::Problems;
use livegate_core::token::token_from_query;

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
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            api_port: None,
            paths: vec!["/rtc/v1/whep/".to_owned(), "/rtc/v1/play/".to_owned()],
            max_offer_bytes: 64 * 1024,
            max_answer_bytes: 64 * 1024,
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

/// Who an offer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The room its `stream` parameter names (a room id).
    pub room: Option<u64>,
    /// `app/stream`, the key that pins the stream to one origin (as for FLV and HLS).
    pub stream_key: String,
    /// The token, from the query or, as WHEP clients send it, `Authorization: Bearer`.
    pub token: Option<String>,
}

/// Reads an offer's room, stream and token from its query and `Authorization` header.
pub fn offer(query: Option<&str>, authorization: Option<&str>, token_param: &str) -> Offer {
    let query = query.unwrap_or_default();
    let param = |wanted: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.into_owned())
    };
    let stream = param("stream").unwrap_or_default();
    let app = param("app").unwrap_or_else(|| "live".to_owned());
    let token = token_from_query(query, token_param).or_else(|| {
        authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|token| token.trim().to_owned())
    });
    Offer {
        room: livegate_core::token::parse_room_id(&stream),
        stream_key: format!("{app}/{stream}"),
        token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_name_their_room_in_the_query_and_their_token_in_either_place() {
        let offer_for = |query, authorization| offer(Some(query), authorization, "token");
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
        let nameless = offer_for("app=live&stream=livestream", None);
        assert_eq!((nameless.room, nameless.token), (None, None));
        let signalling = Signalling::new(&WebrtcConfig {
            api_port: Some(1985),
            ..WebrtcConfig::default()
        })
        .unwrap();
        assert!(signalling.handles("/rtc/v1/whep/"));
        assert!(signalling.handles("/rtc/v1/whep"));
        assert!(!signalling.handles("/rtc/v1/whip/"));
    }
}
