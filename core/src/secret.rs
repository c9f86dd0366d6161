//! Secrets that never show up in `Debug` output or logs.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

/// A secret string (HMAC key, password). Its `Debug` is redacted.
///
/// In configuration a secret is written as the value itself, or as `env:NAME` to read it from
/// an environment variable, or as `file:/path` to read it from a file (trailing newline removed),
/// so that real keys need not sit in a config file.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call only where the raw value is needed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Resolves a configured reference: `env:NAME`, `file:PATH` or a literal value.
    pub fn resolve(reference: &str) -> Result<Self, String> {
        if let Some(name) = reference.strip_prefix("env:") {
            return std::env::var(name)
                .map(Self)
                .map_err(|_| format!("environment variable `{name}` is not set or not UTF-8"));
        }
        if let Some(path) = reference.strip_prefix("file:") {
            return std::fs::read_to_string(Path::new(path))
                .map(|text| Self(text.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|err| format!("cannot read secret file `{path}`: {err}"));
        }
        Ok(Self(reference.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let reference = String::deserialize(deserializer)?;
        Secret::resolve(&reference).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn file_reference_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-file\n").unwrap();
        let secret = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(secret.expose(), "from-file");
    }

    #[test]
    fn missing_sources_name_themselves() {
        let err = Secret::resolve("env:LIVEGATE_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(err.contains("LIVEGATE_SURELY_UNSET_VARIABLE"), "{err}");
        let err = Secret::resolve("file:/nonexistent/livegate/key").unwrap_err();
        assert!(err.contains("/nonexistent/livegate/key"), "{err}");
    }

    #[test]
    fn literal_is_kept() {
        assert_eq!(Secret::resolve("plain").unwrap().expose(), "plain");
    }
}
