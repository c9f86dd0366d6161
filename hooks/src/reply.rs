//! Answers in each origin's own terms.
//!
//! - SRS accepts HTTP 200/201 with `{"code":0}`; anything else refuses.
//! - ZLMediaKit accepts HTTP 200 with `{"code":0}`; it retries on any other status, so a
//!   refusal is HTTP 200 with a non-zero code.
//! - nginx-rtmp accepts any 2xx and refuses on 4xx/5xx (3xx would mean a redirect).
//!
//! `{"code":0,"msg":"success"}` satisfies both JSON dialects.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::dialect::Dialect;

/// The accepting body both JSON dialects understand.
pub const ACCEPT_JSON: &str = r#"{"code":0,"msg":"success"}"#;
/// nginx-rtmp's accepting body (any 2xx works; the body is ignored).
pub const ACCEPT_TEXT: &str = "OK\n";

/// What the service decided about a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Accept,
    /// Go ahead, and the answer holds for `seconds` (ZLMediaKit's `on_http_access` caches it).
    Granted {
        /// How long the grant holds.
        seconds: u64,
    },
    /// Refused for a reason the caller may know.
    Refuse(Refusal),
    /// The service could not decide (database unreachable or too slow): refused, retryable.
    Unavailable,
}

/// Why a publish or play was refused: a stable label (logs, metrics) and a message (reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream name is not a room id, or no such room exists.
    UnknownRoom,
    /// The publisher's query has no stream key.
    MissingKey,
    /// The stream key does not match the room's.
    WrongKey,
    /// The room is disabled.
    Disabled,
    /// The room's stream key has expired.
    KeyExpired,
    /// The publisher's address is outside the room's allowlist.
    AddressNotAllowed,
    /// Another publisher holds the room.
    AlreadyLive,
    /// Too many publish attempts from this address.
    RateLimited,
    /// The play token is missing or invalid (the detail goes to logs only).
    PlayNotAllowed,
    /// The callback is one that is always refused (ZLMediaKit shell login).
    NotSupported,
}

impl Refusal {
    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownRoom => "unknown_room",
            Refusal::MissingKey => "missing_key",
            Refusal::WrongKey => "wrong_key",
            Refusal::Disabled => "disabled",
            Refusal::KeyExpired => "key_expired",
            Refusal::AddressNotAllowed => "address_not_allowed",
            Refusal::AlreadyLive => "already_live",
            Refusal::RateLimited => "rate_limited",
            Refusal::PlayNotAllowed => "play_not_allowed",
            Refusal::NotSupported => "not_supported",
        }
    }

    /// The message sent back to the origin (and from there, possibly, to the client).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::UnknownRoom => "unknown room",
            Refusal::MissingKey => "missing stream key",
            Refusal::WrongKey => "wrong stream key",
            Refusal::Disabled => "room is disabled",
            Refusal::KeyExpired => "stream key has expired",
            Refusal::AddressNotAllowed => "publisher address not allowed for this room",
            Refusal::AlreadyLive => "room is already live",
            Refusal::RateLimited => "too many publish attempts, try again later",
            Refusal::PlayNotAllowed => "play not allowed",
            Refusal::NotSupported => "not supported",
        }
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn code_body(code: i64, msg: &str) -> String {
    serde_json::json!({ "code": code, "msg": msg }).to_string()
}

/// Renders `decision` for `dialect`.
pub fn render(dialect: Dialect, decision: &Decision) -> Response {
    const UNAVAILABLE: &str = "service unavailable, try again";
    match (dialect, decision) {
        (Dialect::Srs | Dialect::Zlm, Decision::Accept | Decision::Granted { .. }) => {
            json(StatusCode::OK, ACCEPT_JSON.to_owned())
        }
        (Dialect::NginxRtmp, Decision::Accept | Decision::Granted { .. }) => {
            text(StatusCode::OK, ACCEPT_TEXT.to_owned())
        }
        (Dialect::Srs, Decision::Refuse(refusal)) => {
            json(StatusCode::FORBIDDEN, code_body(403, refusal.message()))
        }
        (Dialect::Zlm, Decision::Refuse(refusal)) => {
            json(StatusCode::OK, code_body(-1, refusal.message()))
        }
        (Dialect::NginxRtmp, Decision::Refuse(refusal)) => {
            text(StatusCode::FORBIDDEN, format!("{}\n", refusal.message()))
        }
        (Dialect::Srs, Decision::Unavailable) => {
            json(StatusCode::SERVICE_UNAVAILABLE, code_body(503, UNAVAILABLE))
        }
        (Dialect::Zlm, Decision::Unavailable) => json(StatusCode::OK, code_body(-1, UNAVAILABLE)),
        (Dialect::NginxRtmp, Decision::Unavailable) => {
            text(StatusCode::SERVICE_UNAVAILABLE, format!("{UNAVAILABLE}\n"))
        }
    }
}

/// How long ZLMediaKit may cache a grant that no token bounds (`play.require_token` off).
const HTTP_ACCESS_SECONDS: u64 = 600;

/// Renders the reply to ZLMediaKit's `on_http_access`. The code is always 0: a non-zero code
/// puts ZLMediaKit on its hook-error path (it logs a failure and answers the client with no
/// reason); a non-empty `err` is the refusal. A grant covers the file's directory (`path`
/// empty) for `second` seconds, by cookie.
pub fn render_http_access(decision: &Decision) -> Response {
    let (err, second) = match decision {
        Decision::Granted { seconds } => ("", *seconds),
        Decision::Accept => ("", HTTP_ACCESS_SECONDS),
        Decision::Refuse(refusal) => (refusal.message(), 0),
        Decision::Unavailable => ("service unavailable, try again", 0),
    };
    json(
        StatusCode::OK,
        serde_json::json!({ "code": 0, "err": err, "path": "", "second": second }).to_string(),
    )
}

/// The reply to ZLMediaKit's `on_rtsp_realm`: an empty realm turns RTSP's own
/// authentication off, since RTSP plays are authorised by their token in `on_play`.
pub fn rtsp_realm() -> Response {
    json(StatusCode::OK, r#"{"code":0,"realm":""}"#.to_owned())
}

/// The reply to ZLMediaKit's `on_stream_none_reader`: keep the stream. A room is live while
/// its publisher publishes, watched or not; closing it would cut the publisher off (and its
/// recording) until a viewer came back, and viewers arrive through the proxy at any time.
pub fn keep_stream() -> Response {
    json(StatusCode::OK, r#"{"code":0,"close":false}"#.to_owned())
}

/// A body the service could not understand: 400 with the reason.
pub fn bad_request(message: &str) -> Response {
    json(StatusCode::BAD_REQUEST, code_body(400, message))
}

/// A caller outside the allowlist or without the shared secret.
pub fn forbidden_caller() -> Response {
    json(StatusCode::FORBIDDEN, code_body(403, "caller not allowed"))
}
