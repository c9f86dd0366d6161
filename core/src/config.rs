//! Configuration loading shared by every service: one TOML file, then environment overrides,
//! then semantic validation that reports every problem at once, each naming its key.

use std::fmt;
use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;

/// One problem found in a configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `token.leeway_s`.
    pub key: String,
    /// What is wrong with it, in words an operator understands.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Collects validation problems so that all of them are reported together.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem with `key`.
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records a problem with `key` unless `ok` holds.
    pub fn check(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.add(key, message);
        }
    }

    /// Ends validation: `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, is not TOML, or a value has the wrong type.
    #[error("{}", render_figment(.0))]
    Parse(Box<figment::Error>),
    /// Values parsed but do not make sense together.
    #[error("invalid configuration:\n{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_figment(err: &figment::Error) -> String {
    let lines: Vec<String> = err
        .clone()
        .into_iter()
        .map(|e| format!("  {}", describe(&e)))
        .collect();
    format!("invalid configuration:\n{}", lines.join("\n"))
}

/// Key names whose values may be credentials: their values never appear in an error.
const SECRET_KEY_WORDS: [&str; 5] = ["key", "secret", "password", "url", "dsn"];

fn describe(err: &figment::Error) -> String {
    let secret = err.path.iter().any(|segment| {
        let segment = segment.to_ascii_lowercase();
        SECRET_KEY_WORDS.iter().any(|word| segment.contains(word))
    });
    if !secret {
        return err.to_string();
    }
    let key = err.path.join(".");
    match &err.kind {
        // Messages come from our own parsers (e.g. an unset `env:` variable), never a value.
        figment::error::Kind::Message(message) => format!("`{key}`: {message}"),
        figment::error::Kind::InvalidType(_, expected)
        | figment::error::Kind::InvalidValue(_, expected) => {
            format!("`{key}`: invalid value (not shown, it may be a secret); expected {expected}")
        }
        _ => format!("`{key}`: invalid value (not shown, it may be a secret)"),
    }
}

fn render_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A service configuration that can check itself after parsing.
pub trait Validate {
    /// Records every semantic problem in `problems`.
    fn validate(&self, problems: &mut Problems);
}

/// Loads `T` from `path` (if any) with overrides from environment variables named
/// `{env_prefix}SECTION__KEY` (for example `LIVEGATE_PROXY_TOKEN__LEEWAY_S=5`).
///
/// Unknown keys are refused so that a typo in a key does not silently fall back to a default.
pub fn load<T>(path: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let mut figment = Figment::new();
    if let Some(path) = path {
        if !path.is_file() {
            return Err(ConfigError::Invalid(vec![Problem {
                key: "--config".to_owned(),
                message: format!("file `{}` does not exist", path.display()),
            }]));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed(env_prefix).split("__"));
    from_figment(figment)
}

/// Loads `T` from TOML text alone: for tests and `--check-config` on examples.
pub fn from_toml_str<T>(text: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    from_figment(Figment::from(Toml::string(text)))
}

fn from_figment<T>(figment: Figment) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let config: T = figment
        .extract()
        .map_err(|err| ConfigError::Parse(Box::new(err)))?;
    let mut problems = Problems::default();
    config.validate(&mut problems);
    problems.finish()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        section: Section,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        count: u32,
        #[serde(default)]
        name: String,
    }

    impl Validate for Sample {
        fn validate(&self, problems: &mut Problems) {
            problems.check(self.section.count > 0, "section.count", "must be positive");
            problems.check(!self.section.name.is_empty(), "section.name", "must be set");
        }
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = from_toml_str::<Sample>("[section]\ncount = \"many\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("section.count"), "{text}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = from_toml_str::<Sample>("[section]\ncuont = 1\n").unwrap_err();
        assert!(err.to_string().contains("cuont"), "{err}");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let err = from_toml_str::<Sample>("").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("section.count"), "{text}");
        assert!(text.contains("section.name"), "{text}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WithSecret {
        #[serde(default)]
        api_keys: Vec<String>,
    }

    impl Validate for WithSecret {
        fn validate(&self, problems: &mut Problems) {
            problems.check(self.api_keys.len() < 100, "api_keys", "too many");
        }
    }

    #[test]
    fn secret_values_are_not_echoed_in_errors() {
        let err = from_toml_str::<WithSecret>("api_keys = \"hunter2-secret\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("api_keys"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn missing_file_is_reported() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/livegate.toml")), "X_").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/livegate.toml"),
            "{err}"
        );
    }
}
