//! Serving: online reads and point-in-time training data
//! (`api/features.rs`, `api/historical.rs`, `service/serving.rs`).

use super::common::{Op, answer, json_body, object, query_param, schema_ref, timestamp_or_null};
use serde_json::{Value, json};

const HISTORICAL_SUMMARY: &str = "Point-in-time training data: per entity row and group, the row with the latest event time in [event_timestamp - max_age, event_timestamp] (both inclusive; no max age: unbounded), created last among ties; with created_cutoff, rows whose writer gave a created time after event_timestamp are left out (server-stamped created times, of pushes without one and of materialized rows, never are). Output keeps input order and every input column, then one column per ref (null where nothing was known). Large answers stream; an error after the first rows aborts the transfer.";

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let online = Op::new("readOnline", "Online read with per-value status, event time, age and source")
        .describe("Values come from the online store; on a miss the offline store's latest row, and with fallback compute a batch group is computed from its source within the deadline. What cannot be answered in time is reported missing, never an error. Unknown feature refs are refused with unknown_feature, whose details.available lists the group's features.")
        .body(json_body("OnlineRequest", json!({"entities": [{"ticker": "AAPL"}, {"ticker": "MSFT"}],
            "features": ["technical:sma_20", "technical:rsi_14"], "fallback": "compute", "timeout_ms": 200})))
        .respond("200", answer("One result per requested entity, in request order", "OnlineResponse"))
        .build();
    vec![("/v1/features/online", json!({"post": online})), ("/v1/features/historical", json!({"post": historical()}))]
}

fn historical() -> Value {
    let csv_only = |text: &str| {
        format!("{text}. Only with a text/csv body (with a JSON body give it in the body; in the query it is refused)")
    };
    let ok = json!({
        "description": "One row per entity row, in input order: the input columns, then one column per ref, then the provenance columns if asked for.",
        "headers": {"x-wafer-entity-rows": {"description": "The number of entity rows (rows of the answer), for progress", "schema": {"type": "integer"}}},
        "content": {
            "application/json": {"schema": schema_ref("HistoricalResponse")},
            "text/csv": {"schema": {"type": "string"},
                         "example": "ticker,event_timestamp,label,technical:sma_20\nAAPL,2024-05-01T00:00:00Z,1,188.7\n"},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary",
                "description": "A Parquet file (zstd), one row group per slice: event_timestamp as timestamp[us, UTC], the other input columns as text, each feature in its declared type (lists as lists), provenance as text"},
                "example": "PAR1"}}});
    Op::new("readHistorical", HISTORICAL_SUMMARY)
        .param(query_param("features", &csv_only("Comma-separated refs"), json!({"type": "string", "example": "technical:sma_20,risk:beta"})))
        .param(query_param("created_cutoff", &csv_only("Leave out rows whose writer-given created time (created_timestamp, Feast's created) is after each row's event_timestamp; rows the server stamped are never left out"), json!({"type": "boolean", "default": false})))
        .param(query_param("include_provenance", &csv_only("Add <group>:__provenance columns (name@version#sha256, empty for pushed rows)"), json!({"type": "boolean", "default": false})))
        .param(query_param("header", "CSV answers: false leaves out the header row (to append several answers to one file)", json!({"type": "boolean", "default": true})))
        .param(json!({"name": "Accept", "in": "header", "required": false, "description": "text/csv for a CSV answer, application/vnd.apache.parquet for a Parquet file; otherwise JSON", "schema": {"type": "string", "example": "text/csv"}}))
        .body(json!({"required": true, "content": {
            "application/json": {"schema": schema_ref("HistoricalRequest"),
                "example": {"entity_rows": [{"ticker": "AAPL", "event_timestamp": "2024-05-01T00:00:00Z", "label": 1}],
                            "features": ["technical:sma_20", "technical:rsi_14"], "created_cutoff": true}},
            "text/csv": {"schema": {"type": "string", "description": "A header row of the join keys, event_timestamp and any other columns (passed through)"},
                         "example": "ticker,event_timestamp,label\nAAPL,2024-05-01T00:00:00Z,1\n"}}}))
        .respond("200", ok)
        .build()
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("OnlineRequest", online_request()),
        (
            "OnlineResponse",
            object(
                &["results"],
                json!({"results": {"type": "array", "items": schema_ref("EntityResult")}}),
                Some(json!({"results": [entity_result_example()]})),
            ),
        ),
        ("EntityResult", entity_result()),
        ("ServedValue", served_value()),
        (
            "FreshnessStatus",
            json!({"type": "string", "enum": ["fresh", "stale", "expired", "missing"],
            "description": "fresh while age <= expected interval; stale until max age; expired after; missing when nothing could be served",
            "example": "fresh"}),
        ),
        ("HistoricalRequest", historical_request()),
        (
            "HistoricalResponse",
            object(
                &["rows"],
                json!({"rows": {"type": "array", "items": {"type": "object", "additionalProperties": true,
            "description": "The entity row's columns as sent, then <group>:<feature> values (null where nothing was known), then <group>:__provenance (a Provenance or null) if asked for"}}}),
                Some(
                    json!({"rows": [{"ticker": "AAPL", "event_timestamp": "2024-05-01T00:00:00Z", "label": 1, "technical:sma_20": 188.7, "technical:rsi_14": 61.3}]}),
                ),
            ),
        ),
    ]
}

fn online_request() -> Value {
    object(
        &["entities"],
        json!({
        "entities": {"type": "array", "maxItems": 10000, "items": schema_ref("EntityKeys"), "description": "The entities to read, each by its join keys (other fields are ignored and echoed back)"},
        "features": {"type": "array", "items": {"type": "string"}, "description": "group:feature refs, answered first and in this order; name at least one feature here or one group in feature_groups"},
        "feature_groups": {"type": "array", "items": {"type": "string"}, "description": "Whole groups: every feature of each, answered after the refs of features"},
        "request_context": {"type": "object", "additionalProperties": true, "description": "Request fields of on-demand groups: per field one value for every entity, or an array with one value per entity"},
        "fallback": {"type": "string", "enum": ["compute", "none"], "default": "compute", "description": "compute: on a miss, compute a batch group from its source within the deadline and write it back; none: answer what is stored"},
        "timeout_ms": {"type": "integer", "minimum": 0, "default": 1000, "description": "Deadline of the whole read, fallback computation included"},
        "include_provenance": {"type": "boolean", "default": false, "description": "Also answer per requested group the transform version that computed the row served: results[].provenance = {group: Provenance | null}"}}),
        Some(
            json!({"entities": [{"ticker": "AAPL"}], "feature_groups": ["signals"], "request_context": {"price": 191.5},
                    "include_provenance": true}),
        ),
    )
}

fn served(value: Value, status: &str, ts: Value, age: Value, source: Value) -> Value {
    json!({"value": value, "status": status, "event_timestamp": ts, "age_seconds": age, "source": source})
}

fn entity_result_example() -> Value {
    json!({"entity": {"ticker": "AAPL"}, "features": {
        "technical:sma_20": served(json!(189.21), "fresh", json!("2024-05-01T00:00:00Z"), json!(812.4), json!("online")),
        "technical:rsi_14": served(Value::Null, "missing", Value::Null, Value::Null, Value::Null)}})
}

fn entity_result() -> Value {
    let mut example = entity_result_example();
    example["provenance"] = json!({"technical": {"transform": "indicators", "version": "1.0.0",
        "sha256": "3b6d621f6a8bd1cb1f1e1b1d3b3f5f2d8c9e0a7b6c5d4e3f2a1b0c9d8e7f6a5b"}});
    object(
        &["entity", "features"],
        json!({
        "entity": {"type": "object", "additionalProperties": true, "description": "The entity as requested"},
        "features": {"type": "object", "additionalProperties": schema_ref("ServedValue"), "description": "By ref (group:feature), in request order"},
        "provenance": {"type": "object", "additionalProperties": {"anyOf": [schema_ref("Provenance"), {"type": "null"}]},
            "description": "Only with include_provenance: per requested group, the transform version that computed the row served; null for no row, a pushed row, or a row stored before provenance was recorded"}}),
        Some(example),
    )
}

fn served_value() -> Value {
    object(
        &["value", "status", "event_timestamp", "age_seconds", "source"],
        json!({
        "value": schema_ref("FeatureValue"),
        "status": schema_ref("FreshnessStatus"),
        "event_timestamp": timestamp_or_null("The event time of the value served; null when missing"),
        "age_seconds": {"type": ["number", "null"], "description": "Seconds from the event time to now (ms precision); null when missing"},
        "source": {"type": ["string", "null"], "enum": ["online", "computed", "offline", null], "description": "Where the value came from; null when missing"}}),
        Some(served(json!(189.21), "fresh", json!("2024-05-01T00:00:00Z"), json!(812.4), json!("online"))),
    )
}

fn historical_request() -> Value {
    object(
        &["entity_rows", "features"],
        json!({
        "entity_rows": {"type": "array", "items": {"type": "object", "additionalProperties": true,
            "description": "Join keys, event_timestamp (RFC 3339, naive = UTC, or a date), any other columns (passed through; request fields of on-demand groups)"}},
        "features": {"type": "array", "items": {"type": "string"}, "description": "group:feature refs; each becomes a column named by the ref"},
        "created_cutoff": {"type": "boolean", "default": false, "description": "Leave out rows whose writer-given created time (created_timestamp, Feast's created) is after each row's event_timestamp; rows the server stamped are never left out"},
        "include_provenance": {"type": "boolean", "default": false, "description": "Add one <group>:__provenance column per requested group (a Provenance object, null for pushed rows)"}}),
        Some(
            json!({"entity_rows": [{"ticker": "AAPL", "event_timestamp": "2024-05-01T00:00:00Z"}], "features": ["technical:sma_20", "risk:beta"], "created_cutoff": true}),
        ),
    )
}
