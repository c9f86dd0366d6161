//! The three callback dialects, detected from the body and mapped onto one event model.
//!
//! - SRS ([`srs`]): a JSON object with `action`; the event is the body's `action`.
//! - ZLMediaKit ([`zlm`]): a JSON object with `mediaServerId`; the event is the hook URL's
//!   last segment, since ZLMediaKit's bodies do not name it.
//! - nginx-rtmp ([`nginx`]): a form (`application/x-www-form-urlencoded`, or the query with
//!   `notify_method get`) with `call`.
//!
//! Every dialect follows the same rules: a body that names a field twice (JSON key at any
//! depth, form field) is refused, since readers disagree on which one counts; every value
//! that reaches a database column is checked against that column first; tokens and stream
//! keys come out of queries through [`livegate_core::token::token_from_query`].

mod json;
mod nginx;
mod srs;
mod zlm;

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use livegate_core::db::columns::{check_text, ColumnError};
use livegate_core::db::OriginIds;
use livegate_core::Secret;
use serde_json::{Map, Value};

pub use zlm::RecordLayout;

/// Which origin software sent a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SRS v5/v6.
    Srs,
    /// ZLMediaKit.
    Zlm,
    /// nginx-rtmp-module.
    NginxRtmp,
}

impl Dialect {
    /// The label used in logs, metrics and `streams.origin_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Srs => "srs",
            Dialect::Zlm => "zlmediakit",
            Dialect::NginxRtmp => "nginx-rtmp",
        }
    }
}

/// A publisher wants to start.
#[derive(Debug, Clone)]
pub struct PublishStart {
    /// The origin's ids of the session.
    pub origin: OriginIds,
    /// The stream name (the room id).
    pub stream: String,
    /// The stream key from the publisher's query, if any (redacted in `Debug`).
    pub key: Option<Secret>,
    /// The publisher's address.
    pub ip: Option<String>,
}

/// A publisher stopped.
#[derive(Debug, Clone)]
pub struct PublishStop {
    /// Origin server id.
    pub server_id: String,
    /// The publisher's connection id, when the dialect gives one.
    pub client_id: Option<String>,
    /// The stream name.
    pub stream: String,
    /// ZLMediaKit's unregistration: which schema stopped, and the origin's hook counter.
    pub unregistered: Option<Unregistered>,
}

/// A ZLMediaKit `regist:false`: one per schema, naming no connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unregistered {
    /// The schema that stopped (`rtmp`, `rtsp`, `hls`, …).
    pub schema: Option<String>,
    /// The origin's process-wide callback counter.
    pub hook_index: Option<i64>,
}

/// A viewer starts or stops playing.
#[derive(Debug, Clone)]
pub struct Play {
    /// Origin server id.
    pub server_id: String,
    /// The viewer's session id at the origin.
    pub client_id: Option<String>,
    /// The stream name, without a `.m3u8`/`.flv` extension.
    pub stream: String,
    /// The play token from the viewer's query, if any (redacted in `Debug`).
    pub token: Option<Secret>,
}

/// A recording file was closed.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Origin server id.
    pub server_id: String,
    /// The publisher's connection id, when given.
    pub client_id: Option<String>,
    /// The stream name.
    pub stream: String,
    /// Absolute path of the file.
    pub path: String,
    /// File size in bytes, when given.
    pub size_bytes: Option<u64>,
    /// Duration in milliseconds, when given.
    pub duration_ms: Option<u64>,
}

/// A ZLMediaKit process announced itself (`on_server_started`).
#[derive(Debug, Clone)]
pub struct ServerStarted {
    /// Origin server id.
    pub server_id: String,
    /// Where the process writes MP4 recordings; nothing else of the configuration the notice
    /// carries (secrets included) is kept.
    pub layout: RecordLayout,
}

/// A ZLMediaKit process is alive (`on_server_keepalive`).
#[derive(Debug, Clone)]
pub struct Keepalive {
    /// Origin server id.
    pub server_id: String,
    /// The process's callback counter.
    pub hook_index: Option<i64>,
}

/// What a callback means.
#[derive(Debug, Clone)]
pub enum Event {
    /// Authorise and record a publish.
    PublishStart(PublishStart),
    /// Close the publish session.
    PublishStop(PublishStop),
    /// Authorise a play.
    PlayStart(Play),
    /// A play ended.
    PlayStop(Play),
    /// ZLMediaKit asks whether an HTTP client may read a file of its HTTP root (and the
    /// files beside it, for the time the reply grants). `stream` is the room's stream for
    /// `/{app}/{stream}…` paths, empty for any other path.
    HttpAccess(Play),
    /// Queue a recording job.
    Recording(Recording),
    /// A ZLMediaKit process started (before it binds its ports).
    ServerStarted(ServerStarted),
    /// A ZLMediaKit process is alive.
    Keepalive(Keepalive),
    /// ZLMediaKit asks for the RTSP realm of a stream.
    RtspRealm,
    /// ZLMediaKit asks whether to close a stream nobody watches.
    NoneReader,
    /// A callback that needs nothing but an acceptance.
    Acknowledge,
    /// A callback to refuse whatever it is (ZLMediaKit shell login).
    Deny,
}

/// One parsed callback.
#[derive(Debug, Clone)]
pub struct Hook {
    /// Who sent it.
    pub dialect: Dialect,
    /// The event's name in the origin's own terms (`on_publish`, `publish_done`, …).
    pub name: String,
    /// What it means.
    pub event: Event,
}

/// Why a body could not be understood. The message goes back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Neither JSON with `action`/`mediaServerId` nor a form with `call`.
    #[error("unrecognised callback: expected SRS JSON with `action`, ZLMediaKit JSON with `mediaServerId`, or an nginx-rtmp form with `call`")]
    UnknownDialect,
    /// JSON that does not parse.
    #[error("body is not valid JSON: {0}")]
    BadJson(String),
    /// A field named twice: readers would disagree on which one counts.
    #[error("field `{0}` appears more than once")]
    Duplicate(String),
    /// A required field is missing or not a string.
    #[error("field `{0}` is missing or has the wrong type")]
    Missing(&'static str),
    /// A field's value does not fit where it is stored.
    #[error("field `{field}` {problem}")]
    Invalid {
        /// The field, in the dialect's own name.
        field: &'static str,
        /// What is wrong with it.
        problem: ColumnError,
    },
    /// A callback on the publish or play route that is another event: the origin sends
    /// only that event there, so it was forged (a publisher's query posing as fields, say).
    #[error("the {route} route takes only its own event, not {event}")]
    WrongRoute {
        /// The route.
        route: &'static str,
        /// What the callback says it is.
        event: &'static str,
    },
    /// The event name is not one this dialect sends.
    #[error("unknown {dialect} event `{name}`")]
    UnknownEvent {
        /// The dialect.
        dialect: &'static str,
        /// The name.
        name: String,
    },
}

impl Event {
    /// The event's name in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Event::PublishStart(_) => "publish_start",
            Event::PublishStop(_) => "publish_stop",
            Event::PlayStart(_) => "play_start",
            Event::PlayStop(_) => "play_stop",
            Event::HttpAccess(_) => "http_access",
            Event::Recording(_) => "recording",
            Event::ServerStarted(_) => "server_started",
            Event::Keepalive(_) => "keepalive",
            Event::RtspRealm => "rtsp_realm",
            Event::NoneReader => "none_reader",
            Event::Acknowledge => "acknowledge",
            Event::Deny => "deny",
        }
    }
}

/// Names that the configuration chooses.
#[derive(Debug, Clone)]
pub struct ParseOptions<'a> {
    /// Query parameter of the publisher's stream key.
    pub key_param: &'a str,
    /// Query parameter of the viewer's play token.
    pub token_param: &'a str,
    /// Origin id recorded for nginx-rtmp, which sends none.
    pub nginx_server: &'a str,
}

/// Parses a callback. `route` is the last segment of the hook URL (`on_publish`, …) and
/// `query` the hook URL's query (nginx-rtmp with `notify_method get` sends its fields there).
/// The two routes whose answer admits someone, `on_publish` and `on_play`, take only their
/// own event: an accepted stop posted there would admit the publisher or viewer it came from.
pub fn parse(
    route: &str,
    body: &[u8],
    query: Option<&str>,
    options: &ParseOptions<'_>,
) -> Result<Hook, ParseError> {
    let hook = parse_any(route, body, query, options)?;
    let (expected, admits) = match route {
        "on_publish" => ("on_publish", matches!(hook.event, Event::PublishStart(_))),
        "on_play" => ("on_play", matches!(hook.event, Event::PlayStart(_))),
        _ => return Ok(hook),
    };
    if admits {
        Ok(hook)
    } else {
        Err(ParseError::WrongRoute {
            route: expected,
            event: hook.event.label(),
        })
    }
}

fn parse_any(
    route: &str,
    body: &[u8],
    query: Option<&str>,
    options: &ParseOptions<'_>,
) -> Result<Hook, ParseError> {
    let trimmed = body.trim_ascii();
    if trimmed.first() == Some(&b'{') {
        let object = match json::parse(trimmed) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(ParseError::UnknownDialect),
            Err(json::JsonError::Duplicate(key)) => return Err(ParseError::Duplicate(key)),
            Err(json::JsonError::Syntax(message)) => return Err(ParseError::BadJson(message)),
        };
        if object.contains_key("action") {
            return srs::parse(&object, options);
        }
        if object.contains_key("mediaServerId") || zlm::is_server_route(route) {
            return zlm::parse(route, &object, options);
        }
        return Err(ParseError::UnknownDialect);
    }
    if trimmed.is_empty() {
        // ZLMediaKit's on_server_exited may have an empty body; nginx-rtmp's GET mode puts
        // its fields in the query.
        if zlm::is_server_route(route) {
            return zlm::parse(route, &Map::new(), options);
        }
        if let Some(query) = query {
            let form = Form::parse(query.as_bytes())?;
            if form.get("call").is_some() {
                return nginx::parse(&form, options);
            }
        }
        return Err(ParseError::UnknownDialect);
    }
    let form = Form::parse(trimmed)?;
    if form.get("call").is_some() {
        return nginx::parse(&form, options);
    }
    Err(ParseError::UnknownDialect)
}

/// Form fields, each name at most once, and the raw text they came from.
#[derive(Debug)]
pub struct Form<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    raw: Option<&'a str>,
}

impl<'a> Form<'a> {
    /// Parses `a=1&b=2` (percent- and plus-decoding); a repeated name is refused.
    pub fn parse(input: &'a [u8]) -> Result<Self, ParseError> {
        let pairs: Vec<_> = form_urlencoded::parse(input).collect();
        let mut seen = HashSet::new();
        if let Some((name, _)) = pairs.iter().find(|(name, _)| !seen.insert(name.as_ref())) {
            return Err(ParseError::Duplicate(name.clone().into_owned()));
        }
        Ok(Self {
            pairs,
            raw: std::str::from_utf8(input).ok(),
        })
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }

    /// The value of `name` read from the raw text as a token is (`+` kept as `+`).
    pub fn token(&self, name: &str) -> Option<String> {
        self.raw
            .and_then(|raw| livegate_core::token::token_from_query(raw, name))
    }
}

/// The value of `name` in a hook URL's own query (`secret`, `origin`), with or without its
/// leading `?`, form-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A token or stream key from a callback's copy of the client's query.
fn credential(query: &str, name: &str) -> Option<Secret> {
    livegate_core::token::token_from_query(query, name).map(Secret::new)
}

/// `value` checked for a column of `max` characters, as field `field`.
fn fit(field: &'static str, value: String, max: usize) -> Result<String, ParseError> {
    check_text(&value, max).map_err(|problem| ParseError::Invalid { field, problem })?;
    Ok(value)
}

/// A required string field, checked for its column.
fn string(
    object: &Map<String, Value>,
    name: &'static str,
    max: usize,
) -> Result<String, ParseError> {
    let value = object
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(ParseError::Missing(name))?;
    fit(name, value, max)
}

/// An optional id (a string, or a number as some origins send), checked for its column.
fn optional_string(
    object: &Map<String, Value>,
    name: &'static str,
    max: usize,
) -> Result<Option<String>, ParseError> {
    let value = match object.get(name) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Ok(None),
    };
    fit(name, value, max).map(Some)
}

/// Stream names are room ids: anything longer than this cannot be one.
const MAX_STREAM_NAME: usize = 128;

/// Strips the container extension SRS leaves on HLS/FLV stream names (`42.m3u8`).
fn strip_extension(stream: &str) -> String {
    for ext in [".m3u8", ".flv", ".ts", ".mp4", ".aac", ".mp3"] {
        if let Some(base) = stream.strip_suffix(ext) {
            return base.to_owned();
        }
    }
    stream.to_owned()
}

/// `file` resolved against `cwd` when relative, with `.` components removed.
fn absolute(cwd: Option<&str>, file: &str) -> String {
    let path = Path::new(file);
    let joined: PathBuf = match cwd {
        Some(cwd) if path.is_relative() => Path::new(cwd).join(path),
        _ => path.to_path_buf(),
    };
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect::<PathBuf>()
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const OPTIONS: ParseOptions<'static> = ParseOptions {
        key_param: "key",
        token_param: "token",
        nginx_server: "ngx",
    };

    #[test]
    fn srs_paths_are_made_absolute() {
        assert_eq!(
            absolute(Some("/usr/local/srs"), "./objs/nginx/html/live/42.flv"),
            "/usr/local/srs/objs/nginx/html/live/42.flv"
        );
        assert_eq!(
            absolute(Some("/usr/local/srs"), "/data/x.flv"),
            "/data/x.flv"
        );
    }

    #[test]
    fn hook_query_params_tolerate_the_leading_question_mark() {
        assert_eq!(query_param("?origin=a&x=1", "origin").as_deref(), Some("a"));
        assert_eq!(query_param("", "origin"), None);
    }

    #[test]
    fn repeated_fields_are_refused_in_every_dialect() {
        for (route, body) in [
            (
                "on_publish",
                &br#"{"action":"on_publish","server_id":"s","stream":"43","stream":"42"}"#[..],
            ),
            (
                "on_publish",
                br#"{"mediaServerId":"z","stream":"42","mediaServerId":"y"}"#,
            ),
            ("on_publish", b"call=publish&name=42&key=k&name=43"),
        ] {
            assert!(
                matches!(
                    parse(route, body, None, &OPTIONS),
                    Err(ParseError::Duplicate(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // nginx-rtmp's GET mode: the fields in the query.
        assert_eq!(
            parse(
                "on_publish",
                b"",
                Some("call=publish&call=publish_done&name=42"),
                &OPTIONS
            )
            .unwrap_err(),
            ParseError::Duplicate("call".into())
        );
    }

    #[test]
    fn unknown_bodies_are_refused_with_a_reason() {
        assert_eq!(
            parse("on_publish", b"{\"x\":1}", None, &OPTIONS).unwrap_err(),
            ParseError::UnknownDialect
        );
        assert!(matches!(
            parse("on_publish", b"{oops", None, &OPTIONS).unwrap_err(),
            ParseError::BadJson(_)
        ));
        assert_eq!(
            parse("on_publish", b"{\"action\":\"on_publish\"}", None, &OPTIONS).unwrap_err(),
            ParseError::Missing("server_id")
        );
    }
}
