//! Field-by-field differences between two JSON documents, for `wafer
//! apply`'s plan: `producer.version: 1.0.0 -> 1.1.0`.
//!
//! Lists whose items all carry a distinct `name` (features, fields) are
//! matched by name, so adding a feature in the middle shows as one new
//! feature rather than as every later one changed.

use serde_json::Value;

/// One changed field: where, and its value before and after (`None` =
/// absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.path, show(self.before.as_ref()), show(self.after.as_ref()))
    }
}

/// A value in a diff line: absence as `(none)`, strings bare unless they
/// would read as something else (`""`, `"1"`, `"true"`), anything else as
/// compact JSON.
fn show(v: Option<&Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(Value::String(s)) if !s.is_empty() && serde_json::from_str::<Value>(s).is_err() => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// What changes from `before` to `after`, in `after`'s order of fields.
pub fn changes(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    out
}

fn walk(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                walk(&join(path, key), b.get(key), a.get(key), out);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) => match (by_name(b), by_name(a)) {
            (Some(b_named), Some(a_named)) => {
                let before_len = out.len();
                let names = a_named.iter().map(|(n, _)| n).chain(b_named.iter().map(|(n, _)| n));
                let mut seen = std::collections::HashSet::new();
                for name in names.filter(|n| seen.insert(*n)) {
                    walk(&format!("{path}[{name}]"), find(&b_named, name), find(&a_named, name), out);
                }
                // Same items in another order: the order is part of the
                // definition (it is the order of output columns).
                if out.len() == before_len && a != b {
                    let order = |list: &[(&str, &Value)]| Value::from(list.iter().map(|(n, _)| *n).collect::<Vec<_>>());
                    out.push(Change {
                        path: format!("{path} (order)"),
                        before: Some(order(&b_named)),
                        after: Some(order(&a_named)),
                    });
                }
            }
            _ => {
                for i in 0..a.len().max(b.len()) {
                    walk(&format!("{path}[{i}]"), b.get(i), a.get(i), out);
                }
            }
        },
        (b, a) if b != a => out.push(Change { path: path.to_string(), before: b.cloned(), after: a.cloned() }),
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn find<'v>(items: &[(&str, &'v Value)], name: &str) -> Option<&'v Value> {
    items.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The items by their `name`, if every item is an object with a distinct
/// string `name`.
fn by_name(items: &[Value]) -> Option<Vec<(&str, &Value)>> {
    let mut seen = std::collections::HashSet::new();
    items.iter().map(|item| item["name"].as_str().filter(|n| seen.insert(*n)).map(|n| (n, item))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(before: Value, after: Value) -> Vec<String> {
        changes(&before, &after).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn equal_documents_have_no_changes() {
        let doc = json!({"entity": "ticker", "features": [{"name": "a", "type": "float64"}], "params": {}});
        assert!(changes(&doc, &doc.clone()).is_empty());
    }

    #[test]
    fn nested_fields_are_named_by_path() {
        let before = json!({"producer": {"kind": "batch", "version": "1.0.0", "lookback": 252}, "description": ""});
        let after =
            json!({"producer": {"kind": "batch", "version": "1.1.0", "lookback": 252, "params": {"benchmark": "SPY"}}});
        assert_eq!(
            lines(before, after),
            [
                "producer.version: 1.0.0 -> 1.1.0",
                r#"producer.params: (none) -> {"benchmark":"SPY"}"#,
                r#"description: "" -> (none)"#
            ]
        );
    }

    #[test]
    fn named_items_are_matched_by_name() {
        let before = json!({"features": [{"name": "a", "type": "float64"}, {"name": "b", "type": "float64"}]});
        let after = json!({"features": [
            {"name": "a", "type": "float64"}, {"name": "new", "type": "int64"}, {"name": "b", "type": "int64"}]});
        assert_eq!(
            lines(before, after),
            [r#"features[new]: (none) -> {"name":"new","type":"int64"}"#, "features[b].type: float64 -> int64"]
        );
        let before = json!([{"name": "a"}, {"name": "b"}]);
        let after = json!([{"name": "b"}]);
        assert_eq!(lines(before, after), [r#"[a]: {"name":"a"} -> (none)"#]);
    }

    #[test]
    fn a_new_order_of_named_items_is_a_change() {
        let before = json!({"fields": [{"name": "a"}, {"name": "b"}]});
        let after = json!({"fields": [{"name": "b"}, {"name": "a"}]});
        assert_eq!(lines(before, after), [r#"fields (order): ["a","b"] -> ["b","a"]"#]);
    }

    #[test]
    fn other_lists_are_compared_by_position() {
        let before = json!({"join_keys": ["ticker"]});
        let after = json!({"join_keys": ["ticker", "exchange"]});
        assert_eq!(lines(before, after), ["join_keys[1]: (none) -> exchange"]);
        assert_eq!(lines(json!({"x": 1}), json!({"x": "1"})), [r#"x: 1 -> "1""#]);
    }
}
