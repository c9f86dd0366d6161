//! The shipped example parses and validates; problems are reported under their keys.

use livegate_api::config::Config;
use livegate_core::config::{from_toml_str, from_toml_str_with_env, EnvSource};

fn example() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/api.example.toml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_example_parses_with_the_documented_defaults() {
    let config: Config = from_toml_str(&example()).unwrap();
    let defaults = Config::default();
    assert_eq!(config.server.listen, defaults.server.listen);
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8090");
    assert_eq!(config.server.admin_listen.to_string(), "127.0.0.1:9190");
    assert_eq!(config.auth.access_ttl_s, 900);
    assert_eq!(config.play_token.ttl_s, 3600);
    assert_eq!(config.origins.len(), 1);
    assert_eq!(config.rooms.hls_path, defaults.rooms.hls_path);
    assert_eq!(config.server.http_limits(), defaults.server.http_limits());
}

#[test]
fn http_limits_out_of_range_are_reported_under_their_keys() {
    let text = r#"
        [server]
        header_timeout_ms = 0
        keep_alive_idle_ms = 0
        max_header_bytes = 100
        [auth]
        jwt_keys = ["0123456789abcdef0123456789abcdef"]
        [play_token]
        keys = ["key"]
    "#;
    let err = from_toml_str::<Config>(text).unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.header_timeout_ms",
            "server.keep_alive_idle_ms",
            "server.max_header_bytes"
        ],
        "{err}"
    );
}

#[test]
fn the_example_shares_the_proxys_token_keys() {
    let config: Config = from_toml_str(&example()).unwrap();
    let proxy_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/proxy.example.toml");
    let proxy = std::fs::read_to_string(proxy_path).unwrap();
    for key in &config.play_token.keys {
        assert!(proxy.contains(&format!("\"{}\"", key.expose())));
    }
}

#[test]
fn every_problem_is_reported_under_its_key() {
    let text = r#"
        [auth]
        jwt_keys = ["short"]
        access_ttl_s = 5
        [rooms]
        edge_base_url = "edge.example"
        hls_path = "/live/index.m3u8"
        [play_token]
        keys = []
        ttl_s = 90000
        [[origins]]
        kind = "zlmediakit"
        url = "127.0.0.1:80"
    "#;
    let err = from_toml_str::<Config>(text).unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    for key in [
        "auth.jwt_keys",
        "auth.access_ttl_s",
        "rooms.edge_base_url",
        "rooms.hls_path",
        "play_token.keys",
        "play_token.ttl_s",
        "origins[0].url",
        "origins[0].secret",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // A secret's value never appears in the report.
    assert!(!err.to_string().contains("short"), "{err}");
}

#[test]
fn overrides_come_from_the_environment() {
    let env = EnvSource::from_pairs(
        "LIVEGATE_API__",
        [("LIVEGATE_API__PLAY_TOKEN__TTL_S", "600")],
    );
    let config: Config = from_toml_str_with_env(&example(), &env).unwrap();
    assert_eq!(config.play_token.ttl_s, 600);
}

#[test]
fn console_and_recordings_problems_name_their_keys() {
    let text = r#"
        [[origins]]
        kind = "srs"
        url = "http://127.0.0.1:1985"
        stat_url = "http://127.0.0.1:8081/stat"
        [console]
        proxy_metrics_url = "127.0.0.1:9180/metrics"
        history_interval_s = 0
        [recordings]
        kind = "s3"
        download_ttl_s = 0
    "#;
    let err = from_toml_str::<Config>(text).unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    for key in [
        "origins[0].stat_url",
        "console.proxy_metrics_url",
        "console.history_interval_s",
        "recordings.s3",
        "recordings.download_ttl_s",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let config: Config = from_toml_str(&example()).unwrap();
    assert!(config.recordings.is_none());
    assert_eq!(config.console.history_interval_s, 10);
}
