//! Configuration loading shared by every service: one TOML file, then environment overrides
//! (`LIVEGATE_<SERVICE>__SECTION__KEY`), then semantic validation.
//!
//! Every problem in a configuration is reported at once: type errors, unknown keys and the
//! service's own checks, each under one spelling of its key (`token.leeway_s`), naming the
//! environment variable when the value came from one, and showing the offending value unless
//! the key may hold a secret.

mod collect;
mod env;

use std::fmt;
use std::path::Path;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;

pub use self::env::EnvSource;

/// One problem found in a configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `token.leeway_s` (array items as `routes.flv[0]`).
    pub key: String,
    /// What is wrong with it, in words an operator understands.
    pub message: String,
    /// The environment variable the value came from, when it did not come from the file.
    pub env_var: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.env_var {
            Some(var) => write!(f, "{} (from {var}): {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
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
            env_var: None,
        });
    }

    /// Records a problem with `key` unless `ok` holds.
    pub fn check(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.add(key, message);
        }
    }

    /// The problems recorded so far.
    pub fn as_slice(&self) -> &[Problem] {
        &self.0
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
    /// The file cannot be read or is not TOML.
    #[error("invalid configuration: {}", render_source_error(.0))]
    Parse(Box<figment::Error>),
    /// Values are missing, of the wrong type, unknown, or do not make sense together.
    #[error("invalid configuration:\n{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems, when the configuration parsed as TOML.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Parse(_) => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

/// A file that is not TOML: where, and what is wrong, without the parser's quote of the line
/// (which may hold a secret).
fn render_source_error(err: &figment::Error) -> String {
    let source = err
        .metadata
        .as_ref()
        .and_then(|md| md.source.as_ref().map(ToString::to_string))
        .unwrap_or_else(|| "configuration".to_owned());
    let message = err.kind.to_string();
    let message: Vec<&str> = message
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            let gutter = line.trim_start_matches(|c: char| c.is_ascii_digit());
            !line.is_empty() && !gutter.trim_start().starts_with('|')
        })
        .collect();
    format!("{source}: {}", message.join(": "))
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

/// Loads `T` from `path` (if any) with the overrides in `env` (variables named
/// `LIVEGATE_<SERVICE>__SECTION__KEY`, for example `LIVEGATE_PROXY__TOKEN__LEEWAY_S=5`).
/// Binaries load through `service::ConfigArgs`, which finds the file and reads the process
/// environment; tests pass an [`EnvSource`] of their own.
///
/// Unknown keys are refused so that a typo in a key does not silently fall back to a default.
pub fn load_from<T>(path: Option<&Path>, env: &EnvSource) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let mut figment = Figment::new();
    if let Some(path) = path {
        if !path.is_file() {
            return Err(ConfigError::Invalid(vec![Problem {
                key: "--config".to_owned(),
                message: format!("file `{}` does not exist", path.display()),
                env_var: None,
            }]));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(env.clone());
    collect::extract(&figment, Some(env))
}

/// Loads `T` from TOML text alone: for tests and `--check-config` on examples.
pub fn from_toml_str<T>(text: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    collect::extract(&Figment::from(Toml::string(text)), None)
}

/// Loads `T` from TOML text with `env` over it, as [`load_from`] does with a file.
pub fn from_toml_str_with_env<T>(text: &str, env: &EnvSource) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let figment = Figment::from(Toml::string(text)).merge(env.clone());
    collect::extract(&figment, Some(env))
}

/// Whether the value of `key` may be a credential, so that it never appears in an error.
/// Decided by the key's own name (its last segment), not its section's.
pub(crate) fn is_secret_key(key: &str) -> bool {
    /// Words in key names whose values may be credentials.
    const SECRET_KEY_WORDS: [&str; 5] = ["key", "secret", "password", "url", "dsn"];
    let name = key
        .split('[')
        .next()
        .unwrap_or(key)
        .rsplit('.')
        .next()
        .unwrap_or(key)
        .to_ascii_lowercase();
    !name.ends_with("_param") && SECRET_KEY_WORDS.iter().any(|word| name.contains(word))
}

#[cfg(test)]
#[expect(
    dead_code,
    reason = "the sample configurations' fields exist to be deserialized"
)]
mod tests;
