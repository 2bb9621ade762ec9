//! Data in: source rows and pushed feature rows (`api/ingest.rs`,
//! `service/ingest.rs`).

use super::common::{Op, answer, name_param, object, query_param, schema_ref, timestamp};
use serde_json::{Value, json};

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let rows = Op::new("ingestSourceRows", "Ingest source rows (JSON {\"rows\": [...]}, text/csv with a header row, Parquet or an Arrow IPC stream); durable before acknowledged")
        .describe("Each row carries the entity's join keys, the source's timestamp field and any of its fields (absent fields are null). CSV, Parquet and Arrow columns may come in any order; a column that is none of these is refused. Parquet and Arrow times are timestamp columns of any unit (or date32/date64, or RFC 3339 text); numbers are refused as times. Any other content type is refused with unsupported_media_type. Timestamps past the server clock plus --max-future-skew (default 1 h) or before year 1000 are refused with 400 invalid_timestamp naming the row; nothing of the request is written.")
        .body(json!({"required": true, "content": {
            "application/json": {"schema": schema_ref("SourceRows"),
                "example": {"rows": [{"ticker": "AAPL", "ts": "2024-05-01T00:00:00Z", "open": 168.1, "high": 170.2,
                                      "low": 167.5, "close": 169.3, "volume": 50383100}]}},
            "text/csv": {"schema": {"type": "string"},
                "example": "ticker,ts,open,high,low,close,volume\nAAPL,2024-05-01,168.1,170.2,167.5,169.3,50383100\n"},
            "application/vnd.apache.parquet": columnar(),
            "application/vnd.apache.arrow.stream": columnar()}}))
        .respond("200", answer("Rows written", "Written"))
        .build();
    let write = Op::new("writeFeatures", "Write feature rows of a stored group (offline first, then online)")
        .describe("JSON names the group in the body; a Parquet or Arrow IPC stream body has columns of the join keys, event_timestamp, an optional created_timestamp (a null cell: the server stamps it) and features, and names the group in the query (?feature_group=NAME). A row may carry created_timestamp; otherwise the server stamps the write time. Rows with the same entity and event time are corrections: the latest created wins. Event and created times past the server clock plus --max-future-skew (default 1 h) or before year 1000 are refused with 400 invalid_timestamp naming the row; nothing of the request is written.")
        .param(query_param("feature_group", "The group a Parquet or Arrow IPC body is written to (a JSON body names it itself; if both do, they must agree)", json!({"type": "string"})))
        .body(json!({"required": true, "content": {
            "application/json": {"schema": schema_ref("FeatureWrite"), "example": {"feature_group": "valuation", "rows": [
                {"entity": {"ticker": "AAPL"}, "event_timestamp": "2024-05-01T00:00:00Z", "values": {"pe_ratio": 28.1}}]}},
            "application/vnd.apache.parquet": columnar(),
            "application/vnd.apache.arrow.stream": columnar()}}))
        .respond("200", answer("Rows written", "Written"))
        .build();
    vec![
        ("/v1/sources/{name}/rows", json!({"parameters": [name_param("source", "prices")], "post": rows})),
        ("/v1/features/write", json!({"post": write})),
    ]
}

/// A Parquet file or Arrow IPC stream body: binary, columns by name. The
/// example is a file's first bytes only (Parquet's magic number).
fn columnar() -> Value {
    json!({"schema": {"type": "string", "format": "binary"}, "example": "PAR1"})
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "SourceRows",
            object(
                &["rows"],
                json!({"rows": {"type": "array", "items": {"type": "object", "additionalProperties": true,
            "description": "Join keys, the timestamp field (RFC 3339, naive = UTC, or a date) and field values by name"}}}),
                Some(json!({"rows": [{"ticker": "AAPL", "ts": "2024-05-01T00:00:00Z", "close": 169.3}]})),
            ),
        ),
        (
            "Written",
            object(
                &["written"],
                json!({"written": {"type": "integer", "minimum": 0, "description": "Rows written"}}),
                Some(json!({"written": 1})),
            ),
        ),
        (
            "FeatureWrite",
            object(
                &["feature_group", "rows"],
                json!({
            "feature_group": {"type": "string", "description": "A stored group (push or batch producer; on-demand groups store nothing)"},
            "rows": {"type": "array", "items": schema_ref("FeatureWriteRow")}}),
                Some(json!({"feature_group": "valuation", "rows": [
                {"entity": {"ticker": "AAPL"}, "event_timestamp": "2024-05-01T00:00:00Z", "values": {"pe_ratio": 28.1, "market_cap": 2.61e12}}]})),
            ),
        ),
        (
            "FeatureWriteRow",
            object(
                &["entity", "event_timestamp", "values"],
                json!({
            "entity": schema_ref("EntityKeys"),
            "event_timestamp": timestamp("When the values were true (RFC 3339; naive = UTC; a bare date is midnight UTC)"),
            "created_timestamp": timestamp("When the row was created; default: the write time. The latest created wins among rows of one entity and event time"),
            "values": {"type": "object", "additionalProperties": schema_ref("FeatureValue"), "description": "Feature values by feature name, each of the feature's declared type (absent = null); an unknown name is refused with unknown_feature"}}),
                Some(json!({"entity": {"ticker": "AAPL"}, "event_timestamp": "2024-05-01T00:00:00Z",
                        "created_timestamp": "2024-05-02T08:00:00Z", "values": {"pe_ratio": 28.1}})),
            ),
        ),
    ]
}
