//! SRS 5/6: JSON with `action`. The client's query is `param`, with its leading `?`.

use livegate_core::db::columns as col;
use livegate_core::db::OriginIds;
use serde_json::{Map, Value};

use super::{
    absolute, credential, fit, optional_string, string, strip_extension, Dialect, Event, Hook,
    ParseError, ParseOptions, Play, PublishStart, PublishStop, Recording, MAX_STREAM_NAME,
};

pub(super) fn parse(
    object: &Map<String, Value>,
    options: &ParseOptions<'_>,
) -> Result<Hook, ParseError> {
    let action = string(object, "action", MAX_STREAM_NAME)?;
    let server_id = string(object, "server_id", col::ORIGIN_SERVER_ID)?;
    let param = object.get("param").and_then(Value::as_str).unwrap_or("");
    let client_id = optional_string(object, "client_id", col::ORIGIN_CLIENT_ID)?;
    let stream = || string(object, "stream", MAX_STREAM_NAME);
    let event = match action.as_str() {
        "on_publish" => Event::PublishStart(PublishStart {
            origin: OriginIds {
                kind: Dialect::Srs.as_str().to_owned(),
                server_id,
                service_id: optional_string(object, "service_id", col::ORIGIN_SERVICE_ID)?,
                client_id,
                stream_id: optional_string(object, "stream_id", col::ORIGIN_STREAM_ID)?,
                ..OriginIds::default()
            },
            stream: stream()?,
            key: credential(param, options.key_param),
            ip: optional_string(object, "ip", col::PUBLISHER_IP)?,
        }),
        "on_unpublish" => Event::PublishStop(PublishStop {
            server_id,
            client_id,
            stream: stream()?,
            unregistered: None,
        }),
        "on_play" | "on_stop" => {
            let play = Play {
                server_id,
                client_id,
                stream: strip_extension(&stream()?),
                token: credential(param, options.token_param),
            };
            if action == "on_play" {
                Event::PlayStart(play)
            } else {
                Event::PlayStop(play)
            }
        }
        "on_dvr" => {
            let file = string(object, "file", col::RECORD_URL)?;
            let cwd = optional_string(object, "cwd", col::RECORD_URL)?;
            Event::Recording(Recording {
                server_id,
                client_id,
                stream: stream()?,
                path: fit("file", absolute(cwd.as_deref(), &file), col::RECORD_URL)?,
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

#[cfg(test)]
mod tests {
    use super::super::{parse, tests::OPTIONS, Event, ParseError};
    use livegate_core::db::columns::ColumnError;

    #[test]
    fn oversized_ids_are_refused_naming_the_field() {
        let long = "x".repeat(10 * 1024);
        for field in ["server_id", "client_id", "ip", "service_id"] {
            let mut body = serde_json::json!({"action": "on_publish", "server_id": "s",
                "client_id": "c", "ip": "127.0.0.1", "service_id": "v", "stream": "42",
                "param": "?key=k"});
            body[field] = long.clone().into();
            let err = parse("on_publish", body.to_string().as_bytes(), None, &OPTIONS).unwrap_err();
            assert!(
                matches!(err, ParseError::Invalid { field: f, problem: ColumnError::TooLong(_) } if f == field),
                "{field}: {err}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn a_plus_in_the_token_stays_a_plus() {
        let body = br#"{"action":"on_play","server_id":"s","client_id":"c","stream":"42.m3u8","param":"?token=ab+c/d=#x"}"#;
        let Event::PlayStart(play) = parse("on_play", body, None, &OPTIONS).unwrap().event else {
            panic!("not a play");
        };
        assert_eq!(play.stream, "42");
        assert_eq!(
            play.token.as_ref().map(livegate_core::Secret::expose),
            Some("ab+c/d=")
        );
    }
}
