//! The three callback dialects, detected from the body and mapped onto one event model.
//!
//! - SRS: a JSON object with `action`; the event is the body's `action`.
//! - ZLMediaKit: a JSON object with `mediaServerId`; the event is the hook URL's last segment,
//!   since ZLMediaKit's bodies do not name it.
//! - nginx-rtmp: a form (`application/x-www-form-urlencoded`, or the query with
//!   `notify_method get`) with `call`. The publisher's own query is appended raw, so a field
//!   may appear twice: the first occurrence, the module's own, wins.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use livegate_core::db::OriginIds;
use livegate_core::Secret;
use serde_json::{Map, Value};

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

/// The schemas ZLMediaKit reports (un)registrations for (`stream_changed_schemas`). A publish
/// that came with one of them is ended by that schema's `regist:false`; a publish through
/// another protocol (WebRTC, SRT, RTP) by any schema's.
const ZLM_SCHEMAS: &[&str] = &["rtmp", "rtsp", "ts", "fmp4", "hls", "hls.fmp4"];

fn zlm_schema(object: &Map<String, Value>) -> Option<String> {
    object
        .get("schema")
        .and_then(Value::as_str)
        .filter(|schema| ZLM_SCHEMAS.contains(schema))
        .map(str::to_owned)
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
    /// ZLMediaKit asks whether an HTTP client may read a path (and the files beside it, for
    /// the time the reply grants). `stream` is the room's stream for `/{app}/{stream}…`
    /// paths, empty for any other path.
    HttpAccess(Play),
    /// Queue a recording job.
    Recording(Recording),
    /// The origin (re)started: whatever it had open is over.
    ServerStarted {
        /// Origin server id.
        server_id: String,
    },
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
    /// A required field is missing or not a string.
    #[error("field `{0}` is missing or has the wrong type")]
    Missing(&'static str),
    /// The event name is not one this dialect sends.
    #[error("unknown {dialect} event `{name}`")]
    UnknownEvent {
        /// The dialect.
        dialect: &'static str,
        /// The name.
        name: String,
    },
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
pub fn parse(
    route: &str,
    body: &[u8],
    query: Option<&str>,
    options: &ParseOptions<'_>,
) -> Result<Hook, ParseError> {
    let trimmed = body.trim_ascii();
    if trimmed.first() == Some(&b'{') {
        let object: Map<String, Value> =
            serde_json::from_slice(trimmed).map_err(|err| ParseError::BadJson(err.to_string()))?;
        if object.contains_key("action") {
            return parse_srs(&object, options);
        }
        if object.contains_key("mediaServerId") || is_zlm_only_route(route) {
            return parse_zlm(route, &object, options);
        }
        return Err(ParseError::UnknownDialect);
    }
    if trimmed.is_empty() {
        // ZLMediaKit's on_server_exited has an empty body; nginx-rtmp's GET mode puts its
        // fields in the query.
        if is_zlm_only_route(route) {
            return parse_zlm(route, &Map::new(), options);
        }
        if let Some(query) = query {
            let form = Form::parse(query.as_bytes());
            if form.get("call").is_some() {
                return parse_nginx(&form, options);
            }
        }
        return Err(ParseError::UnknownDialect);
    }
    let form = Form::parse(trimmed);
    if form.get("call").is_some() {
        return parse_nginx(&form, options);
    }
    Err(ParseError::UnknownDialect)
}

fn is_zlm_only_route(route: &str) -> bool {
    matches!(
        route,
        "on_server_exited" | "on_server_started" | "on_server_keepalive"
    )
}

/// Form fields in order; lookups return the first occurrence.
#[derive(Debug)]
pub struct Form<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Form<'a> {
    /// Parses `a=1&b=2` (percent- and plus-decoding).
    pub fn parse(input: &'a [u8]) -> Self {
        Self {
            pairs: form_urlencoded::parse(input).collect(),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// The first value of `name` in a query string (with or without its leading `?`).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    // SRS appends `#fragment` to `param` when there was one.
    let query = query.split('#').next().unwrap_or("");
    Form::parse(query.as_bytes()).get(name).map(str::to_owned)
}

fn string(object: &Map<String, Value>, name: &'static str) -> Result<String, ParseError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(ParseError::Missing(name))
}

fn optional_string(object: &Map<String, Value>, name: &str) -> Option<String> {
    match object.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        // ZLMediaKit and old SRS send some ids as numbers.
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

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

fn parse_srs(object: &Map<String, Value>, options: &ParseOptions<'_>) -> Result<Hook, ParseError> {
    let action = string(object, "action")?;
    let server_id = string(object, "server_id")?;
    let param = object.get("param").and_then(Value::as_str).unwrap_or("");
    let event = match action.as_str() {
        "on_publish" => Event::PublishStart(PublishStart {
            origin: OriginIds {
                kind: Dialect::Srs.as_str().to_owned(),
                server_id,
                service_id: optional_string(object, "service_id"),
                client_id: optional_string(object, "client_id"),
                stream_id: optional_string(object, "stream_id"),
                ..OriginIds::default()
            },
            stream: string(object, "stream")?,
            key: query_param(param, options.key_param).map(Secret::new),
            ip: optional_string(object, "ip"),
        }),
        "on_unpublish" => Event::PublishStop(PublishStop {
            server_id,
            client_id: optional_string(object, "client_id"),
            stream: string(object, "stream")?,
            unregistered: None,
        }),
        "on_play" | "on_stop" => {
            let play = Play {
                server_id,
                client_id: optional_string(object, "client_id"),
                stream: strip_extension(&string(object, "stream")?),
                token: query_param(param, options.token_param).map(Secret::new),
            };
            if action == "on_play" {
                Event::PlayStart(play)
            } else {
                Event::PlayStop(play)
            }
        }
        "on_dvr" => {
            let file = string(object, "file")?;
            let cwd = optional_string(object, "cwd");
            Event::Recording(Recording {
                server_id,
                client_id: optional_string(object, "client_id"),
                stream: string(object, "stream")?,
                path: absolute(cwd.as_deref(), &file),
                size_bytes: None,
                duration_ms: None,
            })
        }
        "on_connect" | "on_close" | "on_hls" => Event::Acknowledge,
        _ => {
            return Err(ParseError::UnknownEvent {
                dialect: "SRS",
                name: action,
            })
        }
    };
    Ok(Hook {
        dialect: Dialect::Srs,
        name: action,
        event,
    })
}

fn parse_zlm(
    route: &str,
    object: &Map<String, Value>,
    options: &ParseOptions<'_>,
) -> Result<Hook, ParseError> {
    let server_id =
        optional_string(object, "mediaServerId").unwrap_or_else(|| "your_server_id".to_owned());
    let params = object.get("params").and_then(Value::as_str).unwrap_or("");
    let event = match route {
        "on_publish" => Event::PublishStart(PublishStart {
            origin: OriginIds {
                kind: Dialect::Zlm.as_str().to_owned(),
                server_id,
                service_id: None,
                client_id: optional_string(object, "id"),
                stream_id: None,
                schema: zlm_schema(object),
                hook_index: object.get("hook_index").and_then(Value::as_i64),
            },
            stream: string(object, "stream")?,
            key: query_param(params, options.key_param).map(Secret::new),
            ip: optional_string(object, "ip"),
        }),
        // One `regist:false` per schema: only the publish's own schema, sent after the
        // publish, closes the session; the rest (and late ones of an earlier session) find
        // nothing.
        "on_stream_changed" | "on_close" => {
            let regist = object.get("regist").and_then(Value::as_bool);
            if regist == Some(true) {
                Event::Acknowledge
            } else {
                Event::PublishStop(PublishStop {
                    server_id,
                    client_id: None,
                    stream: string(object, "stream")?,
                    unregistered: Some(Unregistered {
                        schema: object
                            .get("schema")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        hook_index: object.get("hook_index").and_then(Value::as_i64),
                    }),
                })
            }
        }
        "on_play" => Event::PlayStart(Play {
            server_id,
            client_id: optional_string(object, "id"),
            stream: string(object, "stream")?,
            token: query_param(params, options.token_param).map(Secret::new),
        }),
        // The only per-viewer "stop" ZLMediaKit has.
        "on_flow_report" => {
            if object.get("player").and_then(Value::as_bool) == Some(true) {
                Event::PlayStop(Play {
                    server_id,
                    client_id: optional_string(object, "id"),
                    stream: string(object, "stream")?,
                    token: None,
                })
            } else {
                Event::Acknowledge
            }
        }
        "on_record_mp4" => {
            let file = string(object, "file_path")?;
            Event::Recording(Recording {
                server_id,
                client_id: None,
                stream: string(object, "stream")?,
                path: absolute(None, &file),
                size_bytes: object.get("file_size").and_then(Value::as_u64),
                duration_ms: object
                    .get("time_len")
                    .and_then(Value::as_f64)
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| (s * 1000.0).round() as u64),
            })
        }
        "on_server_started" => Event::ServerStarted { server_id },
        "on_shell_login" => Event::Deny,
        "on_http_access" => Event::HttpAccess(Play {
            server_id,
            client_id: optional_string(object, "id"),
            stream: http_stream(object.get("path").and_then(Value::as_str).unwrap_or("")),
            token: query_param(params, options.token_param).map(Secret::new),
        }),
        "on_record_ts"
        | "on_stream_none_reader"
        | "on_stream_not_found"
        | "on_server_keepalive"
        | "on_server_exited"
        | "on_rtsp_realm"
        | "on_rtsp_auth"
        | "on_send_rtp_stopped"
        | "on_rtp_server_timeout" => Event::Acknowledge,
        _ => {
            return Err(ParseError::UnknownEvent {
                dialect: "ZLMediaKit",
                name: route.to_owned(),
            })
        }
    };
    Ok(Hook {
        dialect: Dialect::Zlm,
        name: route.to_owned(),
        event,
    })
}

/// The stream an HTTP path of ZLMediaKit serves: `/{app}/{stream}/hls.m3u8`,
/// `/{app}/{stream}.live.flv`, `/{app}/{stream}.live.mp4`, … give `{stream}`; any other path
/// (no directory, a directory listing, the `record` tree, `..`) gives an empty name.
fn http_stream(path: &str) -> String {
    let mut segments = path.trim_start_matches('/').split('/');
    let (Some(app), Some(stream)) = (segments.next(), segments.next()) else {
        return String::new();
    };
    if app.is_empty() || app == "record" || path.contains("..") {
        return String::new();
    }
    stream.split('.').next().unwrap_or("").to_owned()
}

fn parse_nginx(form: &Form<'_>, options: &ParseOptions<'_>) -> Result<Hook, ParseError> {
    let server_id = options.nginx_server;
    let call = form.get("call").ok_or(ParseError::Missing("call"))?;
    let name = || {
        form.get("name")
            .map(str::to_owned)
            .ok_or(ParseError::Missing("name"))
    };
    let client_id = form.get("clientid").map(str::to_owned);
    let event = match call {
        "publish" => Event::PublishStart(PublishStart {
            origin: OriginIds {
                kind: Dialect::NginxRtmp.as_str().to_owned(),
                server_id: server_id.to_owned(),
                service_id: None,
                client_id,
                stream_id: None,
                ..OriginIds::default()
            },
            stream: name()?,
            // The publisher's query arrives as extra form fields.
            key: form.get(options.key_param).map(Secret::new),
            ip: form.get("addr").map(str::to_owned),
        }),
        "publish_done" => Event::PublishStop(PublishStop {
            server_id: server_id.to_owned(),
            client_id,
            stream: name()?,
            unregistered: None,
        }),
        "play" | "play_done" => {
            let play = Play {
                server_id: server_id.to_owned(),
                client_id,
                stream: name()?,
                token: form.get(options.token_param).map(Secret::new),
            };
            if call == "play" {
                Event::PlayStart(play)
            } else {
                Event::PlayStop(play)
            }
        }
        "record_done" => Event::Recording(Recording {
            server_id: server_id.to_owned(),
            client_id,
            stream: name()?,
            path: absolute(None, form.get("path").ok_or(ParseError::Missing("path"))?),
            size_bytes: None,
            duration_ms: None,
        }),
        // `done` follows publish_done/play_done for the same session: nothing more to do.
        "connect" | "disconnect" | "done" | "update_publish" | "update_play" => Event::Acknowledge,
        other => {
            return Err(ParseError::UnknownEvent {
                dialect: "nginx-rtmp",
                name: other.to_owned(),
            })
        }
    };
    Ok(Hook {
        dialect: Dialect::NginxRtmp,
        name: call.to_owned(),
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: ParseOptions<'static> = ParseOptions {
        key_param: "key",
        token_param: "token",
        nginx_server: "ngx",
    };

    #[test]
    fn first_occurrence_wins_in_nginx_forms() {
        let body = b"app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19351/live&pageurl=&addr=127.0.0.1&clientid=2&call=publish&name=77&type=live&key=a%20b&name=evil&token=x%2Fy";
        let hook = parse("on_publish", body, None, &OPTIONS).unwrap();
        let Event::PublishStart(start) = hook.event else {
            panic!("not a publish");
        };
        assert_eq!(start.stream, "77");
        assert_eq!(start.origin.server_id, "ngx");
        assert_eq!(start.origin.client_id.as_deref(), Some("2"));
        assert_eq!(start.key.as_ref().map(Secret::expose), Some("a b"));
        assert!(!format!("{start:?}").contains("a b"));
    }

    #[test]
    fn zlm_http_paths_name_their_stream() {
        assert_eq!(http_stream("/live/42/hls.m3u8"), "42");
        assert_eq!(http_stream("/live/42.live.flv"), "42");
        assert_eq!(http_stream("/live/42/2024-01-01/00.ts"), "42");
        assert_eq!(http_stream("/index.html"), "");
        assert_eq!(http_stream("/record/live/42/a.mp4"), "");
        assert_eq!(http_stream("/live/../etc/passwd"), "");
    }

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
    fn query_params_tolerate_the_leading_question_mark_and_fragments() {
        assert_eq!(query_param("?key=abc&x=1", "key").as_deref(), Some("abc"));
        assert_eq!(query_param("key=abc#frag", "key").as_deref(), Some("abc"));
        assert_eq!(query_param("", "key"), None);
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
