//! The shipped origin configurations agree with the service and with the port plan: proxy
//! 8080, origin HTTP 8081, hooks 8085, RTMP 1935.

use std::collections::HashMap;

use livegate_hooks::handlers::EVENTS;

fn infra(path: &str) -> String {
    let path = format!("{}/../infra/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"))
}

/// `section.key` → value of an ini file (`;` comments).
fn ini(text: &str) -> HashMap<String, String> {
    let mut section = String::new();
    let mut values = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            let previous =
                values.insert(format!("{section}.{}", key.trim()), value.trim().to_owned());
            assert!(previous.is_none(), "{section}.{key} set twice");
        }
    }
    values
}

#[test]
fn the_zlmediakit_config_gates_plays_and_recordings_through_the_hooks() {
    let config = ini(&infra("zlmediakit/config.ini"));
    let get = |key: &str| config.get(key).map(String::as_str).unwrap_or("");
    assert_eq!(get("http.port"), "8081");
    assert_eq!(get("rtmp.port"), "1935");
    assert_eq!(get("hook.enable"), "1");
    assert!(!get("api.secret").is_empty());
    // Plays stay token-gated (the proxy forwards the token), and the HTTP root's files —
    // the record/ tree among them — go through on_http_access.
    for hook in [
        "on_publish",
        "on_stream_changed",
        "on_play",
        "on_http_access",
        "on_rtsp_realm",
        "on_stream_none_reader",
        "on_record_mp4",
        "on_server_started",
        "on_server_keepalive",
    ] {
        assert_eq!(
            get(&format!("hook.{hook}")),
            format!("http://127.0.0.1:8085/api/v1/hook/{hook}"),
            "{hook}"
        );
        assert!(EVENTS.contains(&hook), "{hook} is no route of the service");
    }
    // Every hook URL that is set points at the service.
    for (key, value) in &config {
        if key.starts_with("hook.on_") && !value.is_empty() {
            assert!(
                value.starts_with("http://127.0.0.1:8085/api/v1/hook/"),
                "{key}={value}"
            );
        }
    }
    assert_eq!(get("protocol.enable_mp4"), "1");
    assert_eq!(get("http.dirMenu"), "0");
}
