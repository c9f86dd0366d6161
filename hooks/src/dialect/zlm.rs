//! ZLMediaKit: JSON with `mediaServerId` and `hook_index`; the hook URL names the event. The
//! client's query is `params`, without a leading `?`.

use livegate_core::db::columns as col;
use livegate_core::db::OriginIds;
use serde_json::{Map, Value};

use super::{
    absolute, credential, fit, optional_string, string, Dialect, Event, Hook, Keepalive,
    ParseError, ParseOptions, Play, PublishStart, PublishStop, Recording, ServerStarted,
    Unregistered, MAX_STREAM_NAME,
};

/// The schemas ZLMediaKit reports (un)registrations for (`stream_changed_schemas`). A publish
/// that came with one of them is ended by that schema's `regist:false`; a publish through
/// another protocol (WebRTC, SRT, RTP) by any schema's.
const SCHEMAS: &[&str] = &["rtmp", "rtsp", "ts", "fmp4", "hls", "hls.fmp4"];

/// ZLMediaKit's compiled-in `general.mediaServerId`.
const DEFAULT_SERVER_ID: &str = "your_server_id";

/// Routes only ZLMediaKit sends, whose bodies may lack `mediaServerId`.
pub(super) fn is_server_route(route: &str) -> bool {
    matches!(
        route,
        "on_server_exited" | "on_server_started" | "on_server_keepalive"
    )
}

/// Where a ZLMediaKit process writes its MP4 recordings, from the configuration its
/// `on_server_started` carries. Only these keys are read; the rest of the notice (which
/// includes `api.secret` and the hook URLs with their secrets) is dropped unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLayout {
    /// `protocol.enable_mp4`: every publish records MP4 unless its reply says otherwise.
    pub enable_mp4: bool,
    /// `protocol.mp4_save_path`; relative paths are relative to ZLMediaKit's own directory.
    pub mp4_save_path: String,
    /// `record.appName`: the first directory under the save path.
    pub app_name: String,
    /// `general.enableVhost`: the vhost comes first in the path.
    pub enable_vhost: bool,
}

impl Default for RecordLayout {
    /// ZLMediaKit's compiled-in defaults.
    fn default() -> Self {
        Self {
            enable_mp4: false,
            mp4_save_path: "./www".to_owned(),
            app_name: "record".to_owned(),
            enable_vhost: false,
        }
    }
}

impl RecordLayout {
    fn from_config(object: &Map<String, Value>) -> Result<Self, ParseError> {
        let defaults = Self::default();
        let text = |key: &'static str| -> Result<Option<String>, ParseError> {
            match object.get(key).and_then(Value::as_str) {
                Some(value) => fit(key, value.to_owned(), col::RECORD_URL / 2).map(Some),
                None => Ok(None),
            }
        };
        let flag = |key: &str| object.get(key).and_then(Value::as_str).map(|v| v == "1");
        Ok(Self {
            enable_mp4: flag("protocol.enable_mp4").unwrap_or(defaults.enable_mp4),
            mp4_save_path: text("protocol.mp4_save_path")?
                .filter(|path| !path.is_empty())
                .unwrap_or(defaults.mp4_save_path),
            app_name: text("record.appName")?
                .filter(|name| !name.is_empty())
                .unwrap_or(defaults.app_name),
            enable_vhost: flag("general.enableVhost").unwrap_or(defaults.enable_vhost),
        })
    }

    /// The directory ZLMediaKit records `vhost/app/stream` into (its `Recorder::getRecordPath`
    /// for MP4): `{save path}/[{vhost}/]{app name}/{app}/{stream}/`, in which each file sits
    /// in a per-day directory.
    pub fn directory(&self, vhost: &str, app: &str, stream: &str) -> String {
        let mut path = self.mp4_save_path.trim_end_matches('/').to_owned();
        if self.enable_vhost {
            path = format!("{path}/{vhost}");
        }
        format!("{path}/{}/{app}/{stream}/", self.app_name)
    }
}

fn hook_index(object: &Map<String, Value>) -> Option<i64> {
    object.get("hook_index").and_then(Value::as_i64)
}

fn schema(object: &Map<String, Value>) -> Option<String> {
    object
        .get("schema")
        .and_then(Value::as_str)
        .filter(|schema| SCHEMAS.contains(schema))
        .map(str::to_owned)
}

/// ZLMediaKit's id of a media source, `vhost/app/stream`: what its API lists and kicks by.
fn source_id(object: &Map<String, Value>, stream: &str) -> Result<String, ParseError> {
    let part = |key| object.get(key).and_then(Value::as_str).unwrap_or("");
    let vhost = match part("vhost") {
        "" => livegate_core::origin::zlm::DEFAULT_VHOST,
        vhost => vhost,
    };
    let app = match part("app") {
        "" => "live",
        app => app,
    };
    fit(
        "app",
        format!("{vhost}/{app}/{stream}"),
        col::ORIGIN_STREAM_ID,
    )
}

pub(super) fn parse(
    route: &str,
    object: &Map<String, Value>,
    options: &ParseOptions<'_>,
) -> Result<Hook, ParseError> {
    let server_id = optional_string(object, "mediaServerId", col::ORIGIN_SERVER_ID)?
        .unwrap_or_else(|| DEFAULT_SERVER_ID.to_owned());
    let params = object.get("params").and_then(Value::as_str).unwrap_or("");
    let client_id = optional_string(object, "id", col::ORIGIN_CLIENT_ID)?;
    let stream = || string(object, "stream", MAX_STREAM_NAME);
    let event = match route {
        "on_publish" => {
            let stream = stream()?;
            Event::PublishStart(PublishStart {
                origin: OriginIds {
                    kind: Dialect::Zlm.as_str().to_owned(),
                    server_id,
                    service_id: None,
                    client_id,
                    stream_id: Some(source_id(object, &stream)?),
                    schema: schema(object),
                    hook_index: hook_index(object),
                },
                key: credential(params, options.key_param),
                ip: optional_string(object, "ip", col::PUBLISHER_IP)?,
                stream,
            })
        }
        // One `regist:false` per schema: only the publish's own schema, sent after the
        // publish, closes the session; the rest (and late ones of an earlier session) find
        // nothing.
        "on_stream_changed" | "on_close" => {
            if object.get("regist").and_then(Value::as_bool) == Some(true) {
                Event::Acknowledge
            } else {
                Event::PublishStop(PublishStop {
                    server_id,
                    client_id: None,
                    stream: stream()?,
                    unregistered: Some(Unregistered {
                        schema: object
                            .get("schema")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        hook_index: hook_index(object),
                    }),
                })
            }
        }
        "on_play" => Event::PlayStart(Play {
            server_id,
            client_id,
            stream: stream()?,
            token: credential(params, options.token_param),
        }),
        // The only per-viewer "stop" ZLMediaKit has, and only above `flowThreshold`.
        "on_flow_report" => {
            if object.get("player").and_then(Value::as_bool) == Some(true) {
                Event::PlayStop(Play {
                    server_id,
                    client_id,
                    stream: stream()?,
                    token: None,
                })
            } else {
                Event::Acknowledge
            }
        }
        "on_record_mp4" => {
            let file = string(object, "file_path", col::RECORD_URL)?;
            Event::Recording(Recording {
                server_id,
                client_id: None,
                stream: stream()?,
                path: fit("file_path", absolute(None, &file), col::RECORD_URL)?,
                size_bytes: object.get("file_size").and_then(Value::as_u64),
                duration_ms: object
                    .get("time_len")
                    .and_then(Value::as_f64)
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| (s * 1000.0).round() as u64),
            })
        }
        "on_server_started" => Event::ServerStarted(ServerStarted {
            server_id,
            layout: RecordLayout::from_config(object)?,
        }),
        "on_server_keepalive" => Event::Keepalive(Keepalive {
            server_id,
            hook_index: hook_index(object),
        }),
        "on_shell_login" => Event::Deny,
        "on_http_access" => Event::HttpAccess(Play {
            server_id,
            client_id,
            stream: http_stream(object.get("path").and_then(Value::as_str).unwrap_or("")),
            token: credential(params, options.token_param),
        }),
        "on_rtsp_realm" => Event::RtspRealm,
        "on_stream_none_reader" => Event::NoneReader,
        "on_record_ts"
        | "on_stream_not_found"
        | "on_server_exited"
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

/// The stream a file of ZLMediaKit's HTTP root belongs to: `/{app}/{stream}/…` (HLS segments
/// requested without ZLMediaKit's HLS cookie) gives `{stream}`; any other path (no
/// directory, a directory listing, the `record` tree, `..`) gives an empty name.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_paths_name_their_stream() {
        assert_eq!(http_stream("/live/42/hls.m3u8"), "42");
        assert_eq!(http_stream("/live/42.live.flv"), "42");
        assert_eq!(http_stream("/live/42/2024-01-01/00.ts"), "42");
        assert_eq!(http_stream("/index.html"), "");
        assert_eq!(http_stream("/record/live/42/a.mp4"), "");
        assert_eq!(http_stream("/live/../etc/passwd"), "");
    }

    #[test]
    fn a_plus_in_the_token_stays_a_plus() {
        let body = br#"{"mediaServerId":"z","hook_index":1,"app":"live","stream":"42","id":"1-2","params":"x=1&token=ab+c/d="}"#;
        let hook = super::super::parse("on_play", body, None, &super::super::tests::OPTIONS)
            .unwrap_or_else(|err| panic!("{err}"));
        let Event::PlayStart(play) = hook.event else {
            panic!("not a play");
        };
        assert_eq!(
            play.token.as_ref().map(livegate_core::Secret::expose),
            Some("ab+c/d=")
        );
    }

    #[test]
    fn record_directories_follow_zlmediakits_layout() {
        let layout = RecordLayout {
            enable_mp4: true,
            mp4_save_path: "/opt/zlmediakit/www/".into(),
            ..RecordLayout::default()
        };
        assert_eq!(
            layout.directory("__defaultVhost__", "live", "42"),
            "/opt/zlmediakit/www/record/live/42/"
        );
        let vhosts = RecordLayout {
            enable_vhost: true,
            ..layout
        };
        assert_eq!(
            vhosts.directory("v1", "live", "42"),
            "/opt/zlmediakit/www/v1/record/live/42/"
        );
    }
}
