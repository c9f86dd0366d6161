//! nginx-rtmp: a form with `call`. The module escapes its own fields and appends the client's
//! query raw, so tokens and stream keys are read from the raw text, not form-decoded.

use livegate_core::db::columns as col;
use livegate_core::db::OriginIds;
use livegate_core::Secret;

use super::{
    absolute, fit, Dialect, Event, Form, Hook, ParseError, ParseOptions, Play, PublishStart,
    PublishStop, Recording, MAX_STREAM_NAME,
};

pub(super) fn parse(form: &Form<'_>, options: &ParseOptions<'_>) -> Result<Hook, ParseError> {
    // The hook URL's `?origin=`, or the configured default.
    let server_id = fit(
        "origin",
        options.nginx_server.to_owned(),
        col::ORIGIN_SERVER_ID,
    )?;
    let call = form.get("call").ok_or(ParseError::Missing("call"))?;
    let field = |name: &'static str, max: usize| {
        form.get(name)
            .map(|value| fit(name, value.to_owned(), max))
            .transpose()
    };
    let name = || field("name", MAX_STREAM_NAME)?.ok_or(ParseError::Missing("name"));
    let client_id = field("clientid", col::ORIGIN_CLIENT_ID)?;
    let event = match call {
        "publish" => Event::PublishStart(PublishStart {
            origin: OriginIds {
                kind: Dialect::NginxRtmp.as_str().to_owned(),
                server_id,
                client_id,
                ..OriginIds::default()
            },
            stream: name()?,
            // The publisher's query arrives as extra form fields.
            key: form.token(options.key_param).map(Secret::new),
            ip: field("addr", col::PUBLISHER_IP)?,
        }),
        "publish_done" => Event::PublishStop(PublishStop {
            server_id,
            client_id,
            stream: name()?,
            unregistered: None,
        }),
        "play" | "play_done" => {
            let play = Play {
                server_id,
                client_id,
                stream: name()?,
                token: form.token(options.token_param).map(Secret::new),
            };
            if call == "play" {
                Event::PlayStart(play)
            } else {
                Event::PlayStop(play)
            }
        }
        "record_done" => {
            let path = field("path", col::RECORD_URL)?.ok_or(ParseError::Missing("path"))?;
            Event::Recording(Recording {
                server_id,
                client_id,
                stream: name()?,
                path: absolute(None, &path),
                size_bytes: None,
                duration_ms: None,
            })
        }
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
    use super::super::{parse, tests::OPTIONS, Event};
    use livegate_core::Secret;

    #[test]
    fn module_fields_are_decoded_and_client_credentials_read_raw() {
        let body = b"app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl=&tcurl=rtmp://127.0.0.1:19351/live&pageurl=&addr=127.0.0.1&clientid=2&call=publish&name=77&type=live&key=a%20b+c";
        let hook = parse("on_publish", body, None, &OPTIONS).unwrap();
        let Event::PublishStart(start) = hook.event else {
            panic!("not a publish");
        };
        assert_eq!(start.stream, "77");
        assert_eq!(start.origin.server_id, "ngx");
        assert_eq!(start.origin.client_id.as_deref(), Some("2"));
        assert_eq!(start.key.as_ref().map(Secret::expose), Some("a b+c"));
        assert!(!format!("{start:?}").contains("a b"));

        let play = b"app=live&addr=127.0.0.1&clientid=3&call=play&name=42&token=ab+c/d=";
        let Event::PlayStart(play) = parse("on_play", play, None, &OPTIONS).unwrap().event else {
            panic!("not a play");
        };
        assert_eq!(play.token.as_ref().map(Secret::expose), Some("ab+c/d="));
    }
}
