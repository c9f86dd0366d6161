//! Environment overrides as a figment provider that remembers which variable set which key,
//! so that a problem can name the variable, and that tests can hand in as a plain list.

use std::collections::BTreeMap;

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// Environment variables named `{prefix}SECTION__KEY`, e.g. `LIVEGATE_HOOKS__SERVER__LISTEN`.
/// The prefix is matched without regard to case; keys are lowercased; `__` separates levels.
#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    prefix: String,
    /// Dotted key → (variable name, raw value), in key order.
    vars: BTreeMap<String, (String, String)>,
}

impl EnvSource {
    /// The variables of this process that start with `prefix`.
    pub fn from_process(prefix: &str) -> Self {
        Self::from_pairs(prefix, std::env::vars())
    }

    /// The variables among `pairs` that start with `prefix` (for tests: no process state).
    pub fn from_pairs<K, V>(prefix: &str, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut vars = BTreeMap::new();
        for (name, value) in pairs {
            let name: String = name.into();
            let Some(rest) = strip_prefix_ignore_case(&name, prefix) else {
                continue;
            };
            let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if segments.iter().any(String::is_empty) {
                continue;
            }
            vars.insert(segments.join("."), (name, value.into()));
        }
        Self {
            prefix: prefix.to_owned(),
            vars,
        }
    }

    /// The variable that set `key`, or one of its enclosing tables.
    pub fn variable_for(&self, key: &str) -> Option<&str> {
        let mut candidate = key.split('[').next().unwrap_or(key);
        loop {
            if let Some((name, _)) = self.vars.get(candidate) {
                return Some(name);
            }
            candidate = candidate.rsplit_once('.')?.0;
        }
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

impl Provider for EnvSource {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!(
            "`{}` environment variable(s)",
            self.prefix.to_ascii_uppercase()
        ))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (key, (_, raw)) in &self.vars {
            // Values are read like TOML scalars: `5` is a number, `true` a boolean, `[a, b]`
            // an array; anything else stays a string.
            let value: Value = match raw.parse() {
                Ok(value) => value,
                Err(never) => match never {},
            };
            if let Some(nested) = figment::util::nest(key, value).into_dict() {
                dict = merge(dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// `ours` with `theirs` merged in, recursively: two variables of one table both count.
fn merge(mut ours: Dict, theirs: Dict) -> Dict {
    for (key, value) in theirs {
        let merged = match (ours.remove(&key), value) {
            (Some(Value::Dict(tag, a)), Value::Dict(_, b)) => Value::Dict(tag, merge(a, b)),
            (_, value) => value,
        };
        ours.insert(key, merged);
    }
    ours
}
