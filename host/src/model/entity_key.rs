//! Entity keys: the canonical text form of an entity's join-key values.
//!
//! Clients send keys as JSON strings or integers; `42` and `"42"` name the
//! same entity. A single join key is stored as its value; several are joined
//! with U+001F (unit separator) in the entity's declared key order, a byte
//! that cannot appear in a sensible key, so the encoding is unambiguous.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntityKey(pub String);

/// The separator between join-key values of a composite key.
pub const KEY_SEPARATOR: char = '\u{1f}';

/// Why a JSON object is not a valid key for an entity.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EntityKeyError {
    #[error("missing join key '{0}'")]
    Missing(String),
    #[error("join key '{0}' must be a string or an integer")]
    BadType(String),
    #[error("join key '{0}' must not be empty")]
    Empty(String),
}

impl EntityKey {
    /// Builds the key from `object` (e.g. `{"ticker": "AAPL"}`), reading
    /// `join_keys` in order. Extra fields are ignored.
    pub fn from_json(
        object: &serde_json::Map<String, serde_json::Value>,
        join_keys: &[String],
    ) -> Result<Self, EntityKeyError> {
        let mut parts = Vec::with_capacity(join_keys.len());
        for key in join_keys {
            let v = object.get(key).ok_or_else(|| EntityKeyError::Missing(key.clone()))?;
            parts.push(Self::part_from_json(key, v)?);
        }
        Ok(Self::from_parts(&parts))
    }

    /// Renders one join-key value; strings as-is, integers in decimal.
    pub fn part_from_json(key: &str, v: &serde_json::Value) -> Result<String, EntityKeyError> {
        let part = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return Err(EntityKeyError::BadType(key.to_string())),
        };
        if part.is_empty() {
            return Err(EntityKeyError::Empty(key.to_string()));
        }
        Ok(part)
    }

    pub fn from_parts<S: AsRef<str>>(parts: &[S]) -> Self {
        let mut out = String::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(KEY_SEPARATOR);
            }
            out.push_str(p.as_ref());
        }
        EntityKey(out)
    }

    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.0.split(KEY_SEPARATOR)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as a JSON object of its join keys (values as strings).
    pub fn to_json(&self, join_keys: &[String]) -> serde_json::Value {
        let map = join_keys
            .iter()
            .zip(self.parts())
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::Value::Object(map)
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Composite keys read as a|b in logs and messages.
        f.write_str(&self.0.replace(KEY_SEPARATOR, "|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn integers_and_strings_name_the_same_entity() {
        let keys = vec!["id".to_string()];
        let a = EntityKey::from_json(&obj(json!({"id": 42})), &keys).unwrap();
        let b = EntityKey::from_json(&obj(json!({"id": "42"})), &keys).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn composite_keys_keep_declared_order_and_reject_bad_values() {
        let keys = vec!["a".to_string(), "b".to_string()];
        let k = EntityKey::from_json(&obj(json!({"b": "y", "a": "x"})), &keys).unwrap();
        assert_eq!(k.parts().collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(EntityKey::from_json(&obj(json!({"a": "x"})), &keys), Err(EntityKeyError::Missing("b".into())));
        assert_eq!(
            EntityKey::from_json(&obj(json!({"a": 1.5, "b": "y"})), &keys),
            Err(EntityKeyError::BadType("a".into()))
        );
    }
}
