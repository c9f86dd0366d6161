use super::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    #[serde(default)]
    section: Section,
    #[serde(default)]
    token: Token,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default)]
    count: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Token {
    leeway_s: u64,
    keys: Vec<String>,
}

impl Default for Token {
    fn default() -> Self {
        Self {
            leeway_s: 30,
            keys: vec!["default-key".to_owned()],
        }
    }
}

impl Validate for Sample {
    fn validate(&self, problems: &mut Problems) {
        problems.check(self.section.count > 0, "section.count", "must be positive");
        problems.check(!self.section.name.is_empty(), "section.name", "must be set");
    }
}

const PREFIX: &str = "LIVEGATE_SAMPLE__";

fn keys(err: &ConfigError) -> Vec<&str> {
    err.problems().iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn type_errors_name_the_key() {
    let err = from_toml_str::<Sample>("[section]\ncount = \"many\"\nname = \"x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("section.count"), "{text}");
    assert!(text.contains("\"many\""), "the value is shown: {text}");
}

#[test]
fn three_bad_values_give_three_problems() {
    let err = from_toml_str::<Sample>(
        "[section]\ncount = \"many\"\nname = 5\nenabled = \"yes\"\n[token]\nleeway_s = 1\n",
    )
    .unwrap_err();
    let mut found = keys(&err);
    found.sort_unstable();
    assert_eq!(
        found,
        ["section.count", "section.enabled", "section.name"],
        "{err}"
    );
}

#[test]
fn type_errors_and_unknown_keys_and_checks_are_reported_together() {
    let err = from_toml_str::<Sample>(
        "[section]\ncount = -1\ncuont = 2\n[token]\nleeway_s = \"soon\"\n[extra]\n",
    )
    .unwrap_err();
    let found = keys(&err);
    for key in [
        "section.count",
        "section.cuont",
        "token.leeway_s",
        "extra",
        "section.name",
    ] {
        assert!(found.contains(&key), "{key} missing: {err}");
    }
    // `section.count` is reported once: its type error, not also the "must be positive" check
    // that its default would fail.
    assert_eq!(found.iter().filter(|k| **k == "section.count").count(), 1);
}

#[test]
fn keys_have_one_spelling() {
    let env = EnvSource::from_pairs(PREFIX, [("LIVEGATE_SAMPLE__TOKEN__LEEWAY_S", "soon")]);
    let err =
        from_toml_str_with_env::<Sample>("[section]\ncount = 1\nname = \"x\"\n", &env).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("token.leeway_s (from LIVEGATE_SAMPLE__TOKEN__LEEWAY_S): "),
        "{text}"
    );
    assert!(text.contains("\"soon\""), "{text}");
    for wrong in ["default.", "TOKEN.LEEWAY_S", "`token.leeway_s`", "``"] {
        assert!(!text.contains(wrong), "{wrong} in {text}");
    }
}

#[test]
fn environment_overrides_the_file_and_unknown_variables_are_named() {
    let env = EnvSource::from_pairs(
        PREFIX,
        [
            ("LIVEGATE_SAMPLE__SECTION__COUNT", "7"),
            ("LIVEGATE_SAMPLE__SECTION__COUNTT", "8"),
            ("OTHER_VARIABLE", "ignored"),
        ],
    );
    let err =
        from_toml_str_with_env::<Sample>("[section]\ncount = 1\nname = \"x\"\n", &env).unwrap_err();
    assert_eq!(err.problems().len(), 1, "{err}");
    let problem = &err.problems()[0];
    assert_eq!(problem.key, "section.countt");
    assert_eq!(
        problem.env_var.as_deref(),
        Some("LIVEGATE_SAMPLE__SECTION__COUNTT")
    );

    let env = EnvSource::from_pairs(PREFIX, [("livegate_sample__section__count", "7")]);
    let config: Sample =
        from_toml_str_with_env("[section]\ncount = 1\nname = \"x\"\n", &env).unwrap();
    assert_eq!(config.section.count, 7);
}

#[test]
fn unknown_keys_are_refused() {
    let err = from_toml_str::<Sample>("[section]\ncuont = 1\n").unwrap_err();
    assert!(err.to_string().contains("section.cuont"), "{err}");
}

#[test]
fn all_problems_are_reported_together() {
    let err = from_toml_str::<Sample>("").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("section.count"), "{text}");
    assert!(text.contains("section.name"), "{text}");
}

#[test]
fn secret_values_are_not_echoed_in_errors() {
    let err = from_toml_str::<Sample>("[token]\nkeys = \"hunter2-secret\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("token.keys"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let err = from_toml_str::<Sample>("[token]\nkeys = [\"a\", 5]\n").unwrap_err();
    assert!(err.to_string().contains("token.keys[1]"), "{err}");
}

#[test]
fn a_file_that_is_not_toml_does_not_quote_its_lines() {
    let err = from_toml_str::<Sample>("[token]\nkeys = [\"hunter2\n").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Parse(_)), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn secret_keys_are_recognised_by_their_own_name() {
    for secret in [
        "database.url",
        "token.keys[0]",
        "callers.secret",
        "reconcile.password",
    ] {
        assert!(is_secret_key(secret), "{secret}");
    }
    for plain in ["token.leeway_s", "publish.key_param", "server.listen"] {
        assert!(!is_secret_key(plain), "{plain}");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Required {
    server: RequiredServer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequiredServer {
    listen: std::net::SocketAddr,
    threads: u32,
}

impl Validate for Required {
    fn validate(&self, _: &mut Problems) {}
}

#[test]
fn required_keys_and_bad_required_values_are_both_reported() {
    let err = from_toml_str::<Required>("[server]\nthreads = \"many\"\n").unwrap_err();
    let text = err.to_string();
    assert_eq!(keys(&err), ["server.threads", "server.listen"], "{text}");
    assert!(text.contains("\"many\""), "{text}");
    assert!(text.contains("server.listen: is required"), "{text}");
    let err = from_toml_str::<Required>("[server]\nlisten = \"nowhere\"\n").unwrap_err();
    assert!(err.to_string().contains("\"nowhere\""), "{err}");
}

#[test]
fn missing_file_is_reported() {
    let err = load_from::<Sample>(
        Some(Path::new("/nonexistent/livegate.toml")),
        &EnvSource::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/livegate.toml"),
        "{err}"
    );
}
