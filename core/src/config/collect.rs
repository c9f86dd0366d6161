//! Deserialization that finds every problem, not only the first.
//!
//! serde stops at the first error. So the merged configuration is taken as a value tree, and
//! deserialization is repeated: each error is recorded under its key, the offending value is
//! taken out of the tree (so that its default applies), and the next attempt goes further.
//! Each round removes one value, so the rounds are bounded by the size of the tree. Once the
//! tree deserializes, the service's own checks run on the result, and their problems are added
//! unless they concern a key already reported.
//!
//! A table whose required key (one without a default) had to be taken out cannot be built, so
//! it is taken out as well; a second required key absent from that same table goes unreported
//! until the first is fixed. Every service table has defaults, so this is rare.

use std::collections::BTreeSet;

use figment::error::{Actual, Kind};
use figment::value::{Dict, Tag, Value};
use figment::Figment;
use serde::de::DeserializeOwned;

use super::{is_secret_key, ConfigError, EnvSource, Problem, Problems, Validate};

/// Most problems reported for one configuration; past it the rest are not looked for.
const MAX_PROBLEMS: usize = 100;
/// Longest rendering of an offending value in a message.
const MAX_VALUE_CHARS: usize = 80;

pub(super) fn extract<T>(figment: &Figment, env: Option<&EnvSource>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let mut tree: Dict = figment
        .extract()
        .map_err(|err| ConfigError::Parse(Box::new(err)))?;
    let mut problems: Vec<Problem> = Vec::new();
    // Paths this loop took out of the tree: a later "missing field" for one is a consequence,
    // not a new problem.
    let mut removed: BTreeSet<Vec<String>> = BTreeSet::new();
    let recovered = loop {
        let attempt = T::deserialize(&Value::Dict(Tag::Default, tree.clone()));
        let err = match attempt {
            Ok(config) => break Some(config),
            Err(err) => err,
        };
        if problems.len() >= MAX_PROBLEMS {
            break None;
        }
        let mut path = err.path.clone();
        match &err.kind {
            Kind::MissingField(field) => {
                let was_removed = {
                    let mut full = path.clone();
                    full.push(field.to_string());
                    removed.contains(&full)
                };
                if !was_removed {
                    let mut full = path.clone();
                    full.push(field.to_string());
                    problems.push(problem(&full, "is required".to_owned(), env));
                }
                // The table cannot be built without it: take the table out too.
            }
            Kind::UnknownField(field, expected) => {
                if path.last().map(String::as_str) != Some(field.as_str()) {
                    path.push(field.clone());
                }
                let message = if expected.is_empty() {
                    "unknown key".to_owned()
                } else {
                    format!("unknown key; expected one of {}", expected.join(", "))
                };
                problems.push(problem(&path, message, env));
            }
            kind => {
                let key = render_key(&path);
                let shown = lookup(&tree, &path).map(render_value);
                problems.push(problem(&path, describe(kind, &key, shown.as_deref()), env));
            }
        }
        match remove(&mut tree, &path) {
            Some(gone) => {
                removed.insert(gone);
            }
            None => break None,
        }
    };

    let mut semantic = Problems::default();
    if let Some(config) = &recovered {
        config.validate(&mut semantic);
    }
    let reported: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
    for mut found in semantic.0 {
        let covered = reported
            .iter()
            .any(|key| found.key == *key || found.key.starts_with(&format!("{key}.")));
        if !covered {
            found.env_var = env.and_then(|env| env.variable_for(&found.key).map(str::to_owned));
            problems.push(found);
        }
    }
    match recovered {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

fn problem(path: &[String], message: String, env: Option<&EnvSource>) -> Problem {
    let key = render_key(path);
    let env_var = env.and_then(|env| env.variable_for(&key).map(str::to_owned));
    Problem {
        key,
        message,
        env_var,
    }
}

/// `a.b[0].c`: array positions (all-digit segments) in brackets.
fn render_key(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            key.push('[');
            key.push_str(segment);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

fn describe(kind: &Kind, key: &str, shown: Option<&str>) -> String {
    let secret = is_secret_key(key);
    let found = |actual: &Actual| {
        if secret {
            format!("{} (not shown, it may be a secret)", kind_of(actual))
        } else {
            actual.to_string()
        }
    };
    match kind {
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", found(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("invalid value {}, expected {expected}", found(actual))
        }
        Kind::InvalidLength(length, expected) => {
            format!("has {length} items, expected {expected}")
        }
        Kind::UnknownVariant(variant, expected) => {
            let variant = if secret { "(not shown)" } else { variant };
            format!(
                "unknown value `{variant}`; expected one of {}",
                expected.join(", ")
            )
        }
        Kind::DuplicateField(field) => format!("`{field}` is given twice"),
        // Messages come from the parsers of the value (ours, or a type's `FromStr`): add the
        // value itself, which they may not quote, unless it may be a secret.
        Kind::Message(message) => match shown {
            Some(value) if !secret && !message.contains(value) => {
                format!("{message} (found {value})")
            }
            _ => message.clone(),
        },
        other => match shown {
            Some(value) if !secret => format!("{other} (found {value})"),
            _ => other.to_string(),
        },
    }
}

fn kind_of(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        _ => "a value",
    }
}

fn render_value(value: &Value) -> String {
    let text = match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|u| u.to_string())
            .or_else(|| n.to_i128().map(|i| i.to_string()))
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_default(),
        Value::Empty(..) => "nothing".to_owned(),
        Value::Dict(..) => "a table".to_owned(),
        Value::Array(_, items) => {
            let inner: Vec<String> = items.iter().map(render_value).collect();
            format!("[{}]", inner.join(", "))
        }
    };
    if text.chars().count() > MAX_VALUE_CHARS {
        let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn lookup<'t>(tree: &'t Dict, path: &[String]) -> Option<&'t Value> {
    let (first, rest) = path.split_first()?;
    let mut value = tree.get(first)?;
    for segment in rest {
        value = match value {
            Value::Dict(_, dict) => dict.get(segment)?,
            Value::Array(_, items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Takes the value at `path` out of `tree`; an array item takes its whole array (positions of
/// later items would shift). Returns the path removed, if anything was.
fn remove(tree: &mut Dict, path: &[String]) -> Option<Vec<String>> {
    let cut = path
        .iter()
        .position(|segment| segment.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(path.len());
    let path = &path[..cut];
    let (last, parents) = path.split_last()?;
    let mut dict = tree;
    for segment in parents {
        dict = match dict.get_mut(segment) {
            Some(Value::Dict(_, inner)) => inner,
            _ => return None,
        };
    }
    dict.remove(last).map(|_| path.to_vec())
}
