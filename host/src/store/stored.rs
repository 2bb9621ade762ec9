//! Decoding of stored values by their JSON type, in one pass.
//!
//! `Value`'s derived (untagged) `Deserialize` tries each variant in turn and
//! builds an error message for every miss; on the materialization read path
//! that was most of the time spent per row. Reads here give the same result:
//! integers are `Int64`, other numbers `Float64`, arrays lists by their first
//! element (an empty array is an empty `Float64List`).
//!
//! Shared by the SQL backends, which store values as JSON text.

use crate::model::Value;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

pub(super) struct Values(pub BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, One(v))) = map.next_entry::<String, One>()? {
                    out.insert(k, v);
                }
                Ok(Values(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct One(Value);

impl<'de> Deserialize<'de> for One {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneVisitor).map(One)
    }
}

struct OneVisitor;

impl<'de> Visitor<'de> for OneVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null, a boolean, a number, a string or a list")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int64(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float64(u as f64), Value::Int64))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Float64(x))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match seq.next_element::<Item>()? {
            None => Ok(Value::Float64List(Vec::new())),
            Some(Item::Number(first)) => {
                let mut out = vec![first];
                while let Some(item) = seq.next_element::<Item>()? {
                    match item {
                        Item::Number(x) => out.push(x),
                        Item::Text(_) => return Err(de::Error::custom("mixed list")),
                    }
                }
                Ok(Value::Float64List(out))
            }
            Some(Item::Text(first)) => {
                let mut out = vec![first];
                while let Some(item) = seq.next_element::<Item>()? {
                    match item {
                        Item::Text(s) => out.push(s),
                        Item::Number(_) => return Err(de::Error::custom("mixed list")),
                    }
                }
                Ok(Value::StringList(out))
            }
        }
    }
}

enum Item {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E>(self, i: i64) -> Result<Item, E> {
                Ok(Item::Number(i as f64))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Item, E> {
                Ok(Item::Number(u as f64))
            }
            fn visit_f64<E>(self, x: f64) -> Result<Item, E> {
                Ok(Item::Number(x))
            }
            // Non-finite floats are written as null.
            fn visit_unit<E>(self) -> Result<Item, E> {
                Ok(Item::Number(f64::NAN))
            }
            fn visit_str<E>(self, s: &str) -> Result<Item, E> {
                Ok(Item::Text(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Item, E> {
                Ok(Item::Text(s))
            }
        }
        d.deserialize_any(V)
    }
}
