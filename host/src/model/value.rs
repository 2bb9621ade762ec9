//! Feature and source values and their declared types.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The declared type of a feature or source field (CONTRACT.md "Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Float64,
    Int64,
    Bool,
    String,
    Float64List,
    StringList,
}

impl ValueType {
    pub const ALL: [ValueType; 6] = [
        ValueType::Float64,
        ValueType::Int64,
        ValueType::Bool,
        ValueType::String,
        ValueType::Float64List,
        ValueType::StringList,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ValueType::Float64 => "float64",
            ValueType::Int64 => "int64",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Float64List => "float64_list",
            ValueType::StringList => "string_list",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, ValueType::Float64 | ValueType::Int64)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A single value. Serializes to plain JSON (`null`, number, bool, string,
/// array); use [`Value::from_json`] to read JSON against a declared type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Bool(bool),
    Int64(i64),
    Float64(f64),
    String(String),
    Float64List(Vec<f64>),
    StringList(Vec<String>),
}

/// A value did not match its declared type.
#[derive(Debug, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct TypeMismatch {
    pub expected: ValueType,
    pub got: String,
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(x) => Some(*x),
            Value::Int64(x) => Some(*x as f64),
            _ => None,
        }
    }

    /// Reads a JSON value as `ty`. Integers are accepted for `float64`;
    /// integral floats for `int64`; JSON `null` is always accepted.
    pub fn from_json(json: &serde_json::Value, ty: ValueType) -> Result<Value, TypeMismatch> {
        use serde_json::Value as J;
        let mismatch = || TypeMismatch { expected: ty, got: describe_json(json) };
        Ok(match (ty, json) {
            (_, J::Null) => Value::Null,
            (ValueType::Float64, J::Number(n)) => Value::Float64(n.as_f64().ok_or_else(mismatch)?),
            (ValueType::Int64, J::Number(n)) => match n.as_i64() {
                Some(i) => Value::Int64(i),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Int64(f as i64),
                    _ => return Err(mismatch()),
                },
            },
            (ValueType::Bool, J::Bool(b)) => Value::Bool(*b),
            (ValueType::String, J::String(s)) => Value::String(s.clone()),
            (ValueType::Float64List, J::Array(items)) => {
                Value::Float64List(items.iter().map(|i| i.as_f64().ok_or_else(mismatch)).collect::<Result<_, _>>()?)
            }
            (ValueType::StringList, J::Array(items)) => Value::StringList(
                items.iter().map(|i| i.as_str().map(str::to_string).ok_or_else(mismatch)).collect::<Result<_, _>>()?,
            ),
            _ => return Err(mismatch()),
        })
    }

    /// Reads text (a CSV cell) as `ty`. An empty cell is null; lists are
    /// `;`-separated.
    pub fn from_text(text: &str, ty: ValueType) -> Result<Value, TypeMismatch> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(Value::Null);
        }
        let mismatch = || TypeMismatch { expected: ty, got: format!("'{t}'") };
        Ok(match ty {
            ValueType::Float64 => Value::Float64(t.parse().map_err(|_| mismatch())?),
            ValueType::Int64 => Value::Int64(t.parse().map_err(|_| mismatch())?),
            ValueType::Bool => match t.to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(mismatch()),
            },
            ValueType::String => Value::String(t.to_string()),
            ValueType::Float64List => Value::Float64List(
                t.split(';').map(|p| p.trim().parse().map_err(|_| mismatch())).collect::<Result<_, _>>()?,
            ),
            ValueType::StringList => Value::StringList(t.split(';').map(|p| p.trim().to_string()).collect()),
        })
    }

    /// The value as CSV text, read back by [`Value::from_text`]: null (and
    /// a non-finite float, as in JSON) is empty, lists are `;`-separated,
    /// floats use the shortest text that reads back to the same number.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int64(i) => i.to_string(),
            Value::Float64(x) if !x.is_finite() => String::new(),
            Value::Float64(x) => x.to_string(),
            Value::String(s) => s.clone(),
            Value::Float64List(items) => items.iter().map(f64::to_string).collect::<Vec<_>>().join(";"),
            Value::StringList(items) => items.join(";"),
        }
    }

    /// The value as JSON; non-finite floats become `null`, as JSON has no
    /// representation for them.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Float64(x) if !x.is_finite() => serde_json::Value::Null,
            other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
        }
    }
}

fn describe_json(json: &serde_json::Value) -> String {
    match json {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => format!("boolean {b}"),
        serde_json::Value::Number(n) => format!("number {n}"),
        serde_json::Value::String(s) => {
            format!("string \"{}\"", s.chars().take(40).collect::<String>())
        }
        serde_json::Value::Array(_) => "an array".into(),
        serde_json::Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_read_against_the_declared_type() {
        assert_eq!(Value::from_json(&json!(3), ValueType::Float64).unwrap(), Value::Float64(3.0));
        assert_eq!(Value::from_json(&json!(3.0), ValueType::Int64).unwrap(), Value::Int64(3));
        assert!(Value::from_json(&json!(3.5), ValueType::Int64).is_err());
        assert!(Value::from_json(&json!("x"), ValueType::Float64).is_err());
        assert_eq!(Value::from_json(&json!(null), ValueType::Bool).unwrap(), Value::Null);
        assert_eq!(Value::from_text("1;2.5", ValueType::Float64List).unwrap(), Value::Float64List(vec![1.0, 2.5]));
        assert_eq!(Value::from_text("", ValueType::Int64).unwrap(), Value::Null);
    }

    #[test]
    fn text_reads_back_as_the_same_value() {
        for (v, ty) in [
            (Value::Float64(188.7), ValueType::Float64),
            (Value::Float64(-1.0e-7), ValueType::Float64),
            (Value::Int64(-42), ValueType::Int64),
            (Value::Bool(true), ValueType::Bool),
            (Value::String("a b".into()), ValueType::String),
            (Value::Float64List(vec![1.0, 2.5]), ValueType::Float64List),
            (Value::Null, ValueType::Float64),
        ] {
            assert_eq!(Value::from_text(&v.to_text(), ty).unwrap(), v, "{}", v.to_text());
        }
        assert_eq!(Value::Float64(188.7).to_text(), "188.7");
        assert_eq!(Value::Float64(f64::NAN).to_text(), "");
    }
}
