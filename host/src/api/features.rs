//! Serving: online reads.
//!
//! The answer is written as JSON here rather than through serde: it is the
//! hottest response there is, and most of its text repeats (every entity's
//! answer names the same features, statuses and sources). The feature
//! names are escaped once per answer, the fixed words are written as they
//! are, event times by `Timestamp::write_rfc3339`, and the buffer is sized
//! up front. The text is byte for byte what serde_json writes for
//! [`OnlineResponse`] (a test holds the two to that), so the contract is
//! the type's.

use super::error::{ApiResult, Json};
use crate::model::registry::FreshnessStatus;
use crate::model::time::RFC3339_MAX;
use crate::service::Wafer;
use crate::service::serving::{EntityResult, OnlineRequest, OnlineResponse, ServedValue, ValueSource};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

pub fn router() -> Router<Wafer> {
    Router::new().route("/v1/features/online", post(online))
}

async fn online(State(w): State<Wafer>, Json(req): Json<OnlineRequest>) -> ApiResult<impl IntoResponse> {
    let answer = w.read_online(req).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], online_json(&answer)))
}

/// Bytes an answer takes per feature value, about: sizes the buffer so it
/// is not grown (and copied) as it fills.
const BYTES_PER_VALUE: usize = 160;

/// `answer` as serde_json would write it.
pub(crate) fn online_json(answer: &OnlineResponse) -> Vec<u8> {
    let values: usize = answer.results.iter().map(|r| r.features.len() + 2).sum();
    let mut out = Vec::with_capacity(64 + values * BYTES_PER_VALUE);
    // Each feature's `"name":`, escaped once: every result lists the same
    // features in the same order.
    let keys: Vec<Vec<u8>> =
        answer.results.first().map_or_else(Vec::new, |r| r.features.iter().map(|(name, _)| key_bytes(name)).collect());
    out.extend_from_slice(b"{\"results\":[");
    for (i, result) in answer.results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_result(&mut out, result, &answer.results[0], &keys);
    }
    out.extend_from_slice(b"]}");
    out
}

fn key_bytes(name: &str) -> Vec<u8> {
    let mut key = serde_json::to_vec(name).expect("a string serializes");
    key.push(b':');
    key
}

fn write_result(out: &mut Vec<u8>, result: &EntityResult, first: &EntityResult, keys: &[Vec<u8>]) {
    out.extend_from_slice(b"{\"entity\":");
    serialize(out, &result.entity);
    out.extend_from_slice(b",\"features\":{");
    for (j, (name, value)) in result.features.iter().enumerate() {
        if j > 0 {
            out.push(b',');
        }
        match (keys.get(j), first.features.get(j)) {
            (Some(key), Some((first_name, _))) if first_name == name => out.extend_from_slice(key),
            _ => out.extend_from_slice(&key_bytes(name)),
        }
        write_value(out, value);
    }
    out.push(b'}');
    if let Some(provenance) = &result.provenance {
        out.extend_from_slice(b",\"provenance\":{");
        for (j, (group, p)) in provenance.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&key_bytes(group));
            serialize(out, p);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, v: &ServedValue) {
    out.extend_from_slice(b"{\"value\":");
    serialize(out, &v.value);
    out.extend_from_slice(match v.status {
        FreshnessStatus::Fresh => b",\"status\":\"fresh\"",
        FreshnessStatus::Stale => b",\"status\":\"stale\"",
        FreshnessStatus::Expired => b",\"status\":\"expired\"",
        FreshnessStatus::Missing => b",\"status\":\"missing\"",
    });
    out.extend_from_slice(b",\"event_timestamp\":");
    match v.event_timestamp {
        Some(t) => {
            let mut buf = [0u8; RFC3339_MAX];
            match t.write_rfc3339(&mut buf) {
                Some(n) => {
                    out.push(b'"');
                    out.extend_from_slice(&buf[..n]);
                    out.push(b'"');
                }
                None => serialize(out, &t),
            }
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"age_seconds\":");
    serialize(out, &v.age_seconds);
    out.extend_from_slice(match v.source {
        Some(ValueSource::Online) => b",\"source\":\"online\"}",
        Some(ValueSource::Computed) => b",\"source\":\"computed\"}",
        Some(ValueSource::Offline) => b",\"source\":\"offline\"}",
        None => b",\"source\":null}",
    });
}

fn serialize<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing to a Vec cannot fail, nor can these types' Serialize.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Provenance, Timestamp, Value};

    fn served(value: Value, status: FreshnessStatus, at: Option<i64>, source: Option<ValueSource>) -> ServedValue {
        ServedValue {
            value,
            status,
            event_timestamp: at.map(Timestamp),
            age_seconds: at.map(|t| t as f64 / 7e6),
            source,
        }
    }

    #[test]
    fn the_online_answer_is_written_byte_for_byte_as_serde_json_writes_it() {
        let entity = |json: serde_json::Value| json.as_object().cloned().unwrap();
        let features = |x: f64| {
            vec![
                (
                    "technical:sma_20".to_string(),
                    served(
                        Value::Float64(x),
                        FreshnessStatus::Fresh,
                        Some(1_714_568_400_000_000),
                        Some(ValueSource::Online),
                    ),
                ),
                (
                    "g:\"quoted\" \\ name\n".to_string(),
                    served(Value::Float64(1e-300), FreshnessStatus::Stale, Some(-1), Some(ValueSource::Offline)),
                ),
                (
                    "g:list".to_string(),
                    served(
                        Value::Float64List(vec![1.5, -0.0, 3e20]),
                        FreshnessStatus::Expired,
                        Some(1_500),
                        Some(ValueSource::Computed),
                    ),
                ),
                (
                    "g:text".to_string(),
                    served(
                        Value::String("ünïcode \u{1}\t".into()),
                        FreshnessStatus::Fresh,
                        Some(253_402_300_799_999_999),
                        Some(ValueSource::Online),
                    ),
                ),
                (
                    "g:names".to_string(),
                    served(Value::StringList(vec!["a".into(), "\"b\"".into()]), FreshnessStatus::Fresh, Some(0), None),
                ),
                ("g:i".to_string(), served(Value::Int64(i64::MIN), FreshnessStatus::Fresh, Some(i64::MAX), None)),
                ("g:b".to_string(), served(Value::Bool(true), FreshnessStatus::Fresh, Some(i64::MIN), None)),
                ("g:missing".to_string(), served(Value::Null, FreshnessStatus::Missing, None, None)),
            ]
        };
        let provenance =
            Provenance { transform: "indicators".into(), version: "1.0.0".into(), sha256: "ab".repeat(32) };
        let answers = [
            OnlineResponse { results: vec![] },
            OnlineResponse {
                results: vec![
                    EntityResult {
                        entity: entity(serde_json::json!({"ticker": "AAPL"})),
                        features: features(187.25),
                        provenance: None,
                    },
                    EntityResult {
                        entity: entity(serde_json::json!({"ticker": "MS\"FT", "venue": 3})),
                        features: features(f64::NAN),
                        provenance: None,
                    },
                ],
            },
            OnlineResponse {
                results: vec![
                    EntityResult {
                        entity: entity(serde_json::json!({"ticker": "AAPL"})),
                        features: features(0.1 + 0.2),
                        provenance: Some(vec![("technical".into(), Some(provenance.clone())), ("g\"".into(), None)]),
                    },
                    // A result whose features differ from the first's.
                    EntityResult {
                        entity: entity(serde_json::json!({})),
                        features: features(1.0).into_iter().rev().collect(),
                        provenance: Some(vec![]),
                    },
                ],
            },
        ];
        for answer in &answers {
            let ours = String::from_utf8(online_json(answer)).unwrap();
            let serde = serde_json::to_string(answer).unwrap();
            assert_eq!(ours, serde);
        }
    }
}
