//! A checker for the part of JSON Schema (2020-12, as OpenAPI 3.1 uses it)
//! the document is written in: `$ref`, `allOf` / `anyOf` / `oneOf`, `type`
//! (one or a list), `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `minItems` / `maxItems`, `minimum` /
//! `maximum`, `format: date-time`, and OpenAPI's `readOnly` / `writeOnly`.
//!
//! Used by the document's unit tests (examples against their schemas) and,
//! included by path, by `tests/e2e/openapi.rs` (real answers against the
//! documented schemas): the openapi module is private to the host, and one
//! checker for both keeps them judging alike.
//!
//! One rule is stricter than JSON Schema, on purpose: an object schema that
//! lists `properties` allows no others unless it says `additionalProperties`,
//! so an undocumented field is caught wherever a shape is written down.

use serde_json::Value;

/// Which way a value travels: read-only properties (answered, never sent)
/// must not be in a request and need not be; write-only ones the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// What `value` breaks of `schema`, resolving `$ref`s in `doc`: one message
/// per problem, each naming where (`$.results[0].features`). Empty when it
/// conforms.
pub fn violations(doc: &Value, schema: &Value, value: &Value, direction: Direction) -> Vec<String> {
    let mut out = Vec::new();
    Checker { doc, direction }.check(schema, value, "$", 0, &mut out);
    out
}

/// The schema a `$ref` like `#/components/schemas/Job` points at.
pub fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// `$ref`s nested deeper than this are taken for a cycle.
const MAX_DEPTH: usize = 128;

struct Checker<'a> {
    doc: &'a Value,
    direction: Direction,
}

impl Checker<'_> {
    fn check(&self, schema: &Value, value: &Value, at: &str, depth: usize, out: &mut Vec<String>) {
        if depth > MAX_DEPTH {
            out.push(format!("{at}: schemas nested too deep (a $ref cycle?)"));
            return;
        }
        let Some(s) = schema.as_object() else {
            if *schema == Value::Bool(false) {
                out.push(format!("{at}: no value is allowed here"));
            }
            return;
        };
        if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
            match resolve(self.doc, reference) {
                Some(target) => self.check(target, value, at, depth + 1, out),
                None => out.push(format!("{at}: $ref {reference} does not resolve")),
            }
        }
        for sub in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.check(sub, value, at, depth + 1, out);
        }
        if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
            let failures: Vec<Vec<String>> = any.iter().map(|sub| self.run(sub, value, at, depth)).collect();
            if failures.iter().all(|f| !f.is_empty()) {
                out.push(format!("{at}: matches none of anyOf: {}", closest(&failures)));
            }
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let failures: Vec<Vec<String>> = one.iter().map(|sub| self.run(sub, value, at, depth)).collect();
            match failures.iter().filter(|f| f.is_empty()).count() {
                1 => {}
                0 => out.push(format!("{at}: matches none of oneOf: {}", closest(&failures))),
                n => out.push(format!("{at}: matches {n} of oneOf's schemas, not exactly one")),
            }
        }
        if let Some(types) = s.get("type") {
            let names: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.iter().any(|t| is_type(value, t)) {
                out.push(format!("{at}: expected {}, got {}", names.join(" or "), kind(value)));
                return;
            }
        }
        if let Some(c) = s.get("const")
            && c != value
        {
            out.push(format!("{at}: expected {c}, got {value}"));
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.push(format!("{at}: {value} is not one of {}", Value::Array(allowed.clone())));
        }
        match value {
            Value::Object(map) => self.check_object(s, map, at, depth, out),
            Value::Array(items) => {
                let bound = |key: &str| s.get(key).and_then(Value::as_u64).map(|n| n as usize);
                if bound("minItems").is_some_and(|min| items.len() < min) {
                    out.push(format!("{at}: {} items, fewer than minItems", items.len()));
                }
                if bound("maxItems").is_some_and(|max| items.len() > max) {
                    out.push(format!("{at}: {} items, more than maxItems", items.len()));
                }
                if let Some(item) = s.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check(item, v, &format!("{at}[{i}]"), depth + 1, out);
                    }
                }
            }
            Value::String(text) => {
                let date_time = s.get("format").and_then(Value::as_str) == Some("date-time");
                if date_time && chrono::DateTime::parse_from_rfc3339(text).is_err() {
                    out.push(format!("{at}: \"{text}\" is not an RFC 3339 date-time"));
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if s.get("minimum").and_then(Value::as_f64).is_some_and(|min| x < min) {
                    out.push(format!("{at}: {n} is below the minimum"));
                }
                if s.get("maximum").and_then(Value::as_f64).is_some_and(|max| x > max) {
                    out.push(format!("{at}: {n} is above the maximum"));
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &self,
        s: &serde_json::Map<String, Value>,
        map: &serde_json::Map<String, Value>,
        at: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        let properties = s.get("properties").and_then(Value::as_object);
        let one_way = |name: &str| {
            let flag = match self.direction {
                Direction::Request => "readOnly",
                Direction::Response => "writeOnly",
            };
            properties.and_then(|p| p.get(name)).and_then(|p| p.get(flag)) == Some(&Value::Bool(true))
        };
        for name in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(name) && !one_way(name) {
                out.push(format!("{at}: required property \"{name}\" is missing"));
            }
        }
        for (key, v) in map {
            let here = format!("{at}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(_) if one_way(key) => {
                    let how = match self.direction {
                        Direction::Request => "is read-only: answered, never sent",
                        Direction::Response => "is write-only: sent, never answered",
                    };
                    out.push(format!("{here}: {how}"));
                }
                Some(p) => self.check(p, v, &here, depth + 1, out),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => out.push(format!("{here}: not a documented property")),
                    Some(extra) => self.check(extra, v, &here, depth + 1, out),
                    None if properties.is_some() => out.push(format!("{here}: not a documented property")),
                    None => {}
                },
            }
        }
    }

    /// The problems of one alternative, apart.
    fn run(&self, schema: &Value, value: &Value, at: &str, depth: usize) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, at, depth + 1, &mut out);
        out
    }
}

/// The problems of the alternative that came closest, to say why none fit.
fn closest(failures: &[Vec<String>]) -> String {
    failures.iter().min_by_key(|f| f.len()).map(|f| f.join("; ")).unwrap_or_default()
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
