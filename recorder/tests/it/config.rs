//! The shipped example parses, and bad values are reported under their keys.

use livegate_core::config::{from_toml_str, from_toml_str_with_env, ConfigError, EnvSource};
use livegate_recorder::config::{ChecksumWhen, StorageKind};
use livegate_recorder::Config;

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/recorder.example.toml"
    ))
    .unwrap()
}

fn keys(err: &ConfigError) -> Vec<String> {
    err.problems().iter().map(|p| p.key.clone()).collect()
}

#[test]
fn the_example_parses_with_its_documented_defaults() {
    let config: Config = from_toml_str(&example()).unwrap();
    assert_eq!(config.server.admin_listen.to_string(), "127.0.0.1:9195");
    assert_eq!(config.storage.kind, StorageKind::Local);
    assert_eq!(config.watch.dirs.len(), 1);
    let defaults = Config::default();
    assert_eq!(config.jobs.workers, defaults.jobs.workers);
    assert_eq!(config.watch.quiet_period_ms, defaults.watch.quiet_period_ms);
    assert_eq!(config.remux.work_dir, defaults.remux.work_dir);
}

/// `key = value`, as the example writes a commented-out setting.
fn is_setting(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

#[test]
fn the_examples_s3_section_parses_when_uncommented() {
    let text = example()
        .replace("kind = \"local\"", "kind = \"s3\"")
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest == "[storage.s3]" || is_setting(rest) => rest.to_owned(),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let env = EnvSource::from_pairs("LIVEGATE_RECORDER__", Vec::<(String, String)>::new());
    // The example's keys come from the environment; give them as literals instead.
    let text = text
        .replace("env:LIVEGATE_S3_ACCESS_KEY", "AKIDEXAMPLE")
        .replace("env:LIVEGATE_S3_SECRET_KEY", "example-secret");
    let config: Config = from_toml_str_with_env(&text, &env).unwrap();
    let s3 = config.storage.s3.unwrap();
    assert_eq!(config.storage.kind, StorageKind::S3);
    assert_eq!(s3.part_size_bytes, 16 * 1024 * 1024);
    assert_eq!(s3.checksum, ChecksumWhen::WhenSupported);
    assert!(s3.path_style);
}

#[test]
fn problems_are_reported_together_under_their_keys() {
    let text = r#"
        [jobs]
        workers = 0
        [watch]
        dirs = ["relative/dir"]
        [storage]
        kind = "s3"
    "#;
    let err = from_toml_str::<Config>(text).unwrap_err();
    let keys = keys(&err);
    for key in ["jobs.workers", "watch.dirs[0]", "storage.s3"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in {keys:?}");
    }
}

#[test]
fn s3_values_are_checked_and_secrets_never_shown() {
    let text = r#"
        [storage]
        kind = "s3"
        [storage.s3]
        endpoint = "ftp://nowhere"
        bucket = "Bad_Bucket"
        access_key = "AKIDSHOULDNOTSHOW"
        secret_key = 42
        part_size_bytes = 1000
    "#;
    let err = from_toml_str::<Config>(text).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("storage.s3.secret_key"), "{shown}");
    assert!(!shown.contains("42"), "{shown}");
    let text = text.replace("secret_key = 42", "secret_key = \"s3cr3t-value\"");
    let err = from_toml_str::<Config>(&text).unwrap_err();
    let keys = keys(&err);
    for key in [
        "storage.s3.endpoint",
        "storage.s3.bucket",
        "storage.s3.part_size_bytes",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in {keys:?}");
    }
    let shown = err.to_string();
    assert!(
        !shown.contains("s3cr3t-value") && !shown.contains("AKIDSHOULDNOTSHOW"),
        "{shown}"
    );
}

#[test]
fn picture_settings_are_checked_under_their_keys() {
    let text = r#"
        [pictures]
        max_width = 8
        quality = 40
        public_base_url = "ftp://cdn"
        [pictures.snapshots]
        play_url = "rtmp://origin/live/{token}"
        concurrency = 0
        interval_ms = 10
    "#;
    let err = from_toml_str::<Config>(text).unwrap_err();
    let keys = keys(&err);
    for key in [
        "pictures.max_width",
        "pictures.quality",
        "pictures.public_base_url",
        "pictures.snapshots.play_url",
        "pictures.snapshots.token_key",
        "pictures.snapshots.concurrency",
        "pictures.snapshots.interval_ms",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in {keys:?}");
    }
    let off = "[pictures.snapshots]\nenabled = false\nplay_url = \"nonsense\"\n";
    assert!(
        from_toml_str::<Config>(off).is_ok(),
        "snapshots turned off need no play URL"
    );
}
