//! JSON bodies parsed strictly: a key that appears twice in one object, at any depth, is an
//! error rather than "the last one wins" (serde's rule), which would let a body say two
//! things at once — `{"stream":"43","stream":"42"}` — and have readers disagree on which.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// A key repeated within one object.
    Duplicate(String),
    /// Not JSON at all (serde_json's message: position, not content).
    Syntax(String),
}

/// Parses `bytes` as one JSON value, refusing duplicated keys.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some(key)) => Err(JsonError::Duplicate(key)),
        (Ok(value), None) => Ok(value),
        (Err(err), None) => Err(JsonError::Syntax(err.to_string())),
    }
}

#[derive(Clone, Copy)]
struct Strict<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                let message = format!("duplicate key `{key}`");
                *self.duplicate.borrow_mut() = Some(key);
                return Err(A::Error::custom(message));
            }
            let value = access.next_value_seed(self)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicated_keys_are_refused_at_every_depth() {
        assert_eq!(
            parse(br#"{"stream":"43","stream":"42"}"#),
            Err(JsonError::Duplicate("stream".into()))
        );
        assert_eq!(
            parse(br#"{"a":{"b":[{"c":1,"c":2}]}}"#),
            Err(JsonError::Duplicate("c".into()))
        );
        // The same key in sibling objects is no duplicate.
        assert_eq!(
            parse(br#"{"a":{"id":1},"b":{"id":2}}"#).map(|v| v["b"]["id"].clone()),
            Ok(Value::from(2))
        );
        assert!(matches!(parse(b"{\"a\":"), Err(JsonError::Syntax(_))));
        assert!(matches!(parse(b"{} x"), Err(JsonError::Syntax(_))));
        assert_eq!(
            parse(br#"{"f":1.5,"n":null,"t":true,"neg":-3}"#).map(|v| v["f"].clone()),
            Ok(Value::from(1.5))
        );
    }
}
