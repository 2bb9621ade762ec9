//! The Feast feature-server endpoints (`api/feast.rs`,
//! `service/feast.rs`). Their errors are Feast's JSON-string error detail,
//! not wafer's envelope. The examples are one exchange: the two writes,
//! then the read that finds them (at 2022-01-01T00:00:00Z, with a max age
//! of one day); an end-to-end test replays it.

use super::common::{Op, answer_with, json_body, schema_ref};
use serde_json::{Value, json};

/// Path items by path, added to the document's `paths`.
pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let read = Op::new("feastGetOnlineFeatures", "Feast: online features, column-major, with Feast's field statuses")
        .describe("Feast's POST /get-online-features. A feature view is a feature group; feature_service names a list of the serving config or, failing that, a feature group (all its features). entities holds one list per join key (integers and strings name the same entity) and per request field of an on-demand group. The answer has one result per column, join keys first (status PRESENT, timestamp 1970-01-01T00:00:00Z), then the features in request order, named view__feature with full_feature_names. Values are read from the stores, never computed for a stored group: fresh and stale are PRESENT, expired OUTSIDE_MAX_AGE (with its value), missing NOT_FOUND (null at the epoch). The body may come with Content-Type application/json or none.")
        .body(json_body("FeastOnlineRequest", read_request_example()))
        .respond("200", answer_with("One result per column: join keys, then features", "FeastOnlineResponse", read_response_example()));
    let write = Op::new("feastWriteToOnlineStore", "Feast: write rows of a feature view, as the remote online store client does")
        .describe("Feast's POST /write-to-online-store. df holds one list per column: join keys, features, event_timestamp (ISO 8601; without an offset it is UTC) and optionally created (the correction order of rows with the same event time). The rows are stored offline first (durable, and in training data), then online, where an older event never replaces a newer one. allow_registry_cache and transform_on_write are accepted and ignored.")
        .body(json_body("FeastWriteRequest", write_request_example()))
        .respond("200", written("Written offline and online"));
    let push = Op::new("feastPush", "Feast: push rows to a push source (a feature group)")
        .describe("Feast's POST /push. The push source is the feature group of that name (push or batch). df as for /write-to-online-store; a scalar column holds the same value for every row. to: online and online_and_offline both store offline first, then online (wafer keeps every served value offline); offline stores history only and leaves online serving as it is.")
        .body(json_body("FeastPushRequest", push_request_example()))
        .respond("200", written("Written"));
    let health = Op::new("feastHealth", "Feast: health, 200 while the registry answers")
        .describe("Feast's GET /health: 200 while the registry answers (within 1 s), else 503 with a Feast error detail. /readyz checks every backend.")
        .respond("200", answer_with("The registry answers", "Health", json!({"status": "ok"})));
    vec![
        ("/get-online-features", json!({"post": feast_errors(read.build())})),
        ("/write-to-online-store", json!({"post": feast_errors(write.build())})),
        ("/push", json!({"post": feast_errors(push.build())})),
        ("/health", json!({"get": feast_errors(health.build())})),
    ]
}

/// Replaces the error envelope [`Op::build`] adds with Feast's error detail.
fn feast_errors(mut op: Value) -> Value {
    let client = "A Feast error detail. 404 for the not-found family (FeatureViewNotFoundException, FeatureServiceNotFoundException, EntityNotFoundException, SpecifiedFeaturesNotPresentError for an unknown feature or df column, RequestDataNotFoundInEntityRowsException); 422 PushSourceNotFoundException, and FeastError for a malformed or invalid body; 400 FeastEntityDFMissingColumnsError, FeatureNameCollisionError and FeastError for other invalid requests; 415 for a body that is not JSON";
    let server = "A Feast error detail (class FeastError): 503 while a backend is unavailable (retry; Feast clients retry 5xx), 500 for an internal error (details in the server log)";
    op["responses"]["4XX"] = error_answer(client);
    op["responses"]["5XX"] = error_answer(server);
    op
}

/// Feast's detail from the handlers; wafer's envelope from what answers
/// before them (the token check, a method the path does not serve).
fn error_answer(description: &str) -> Value {
    let description = format!(
        "{description}. The token check (401 unauthorized, 403 forbidden) and a method the path does not serve (405 method_not_allowed) answer wafer's error envelope instead"
    );
    let schema = json!({"oneOf": [schema_ref("FeastErrorDetail"), schema_ref("Error")]});
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// Feast answers `null` (or nothing) to a write; so does wafer.
fn written(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"type": "null"}, "example": null}}})
}

fn read_request_example() -> Value {
    json!({"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate", "driver_hourly_stats:avg_daily_trips"],
           "entities": {"driver_id": [1001, 1002, 1003]}, "full_feature_names": false})
}

fn read_response_example() -> Value {
    let (at, epoch) = ("2021-12-31T23:00:00Z", "1970-01-01T00:00:00Z");
    let feature = |values: Value| json!({"values": values, "statuses": ["PRESENT", "PRESENT", "NOT_FOUND"], "event_timestamps": [at, at, epoch]});
    json!({"metadata": {"feature_names": ["driver_id", "conv_rate", "acc_rate", "avg_daily_trips"]},
           "results": [
               {"values": [1001, 1002, 1003], "statuses": ["PRESENT", "PRESENT", "PRESENT"], "event_timestamps": [epoch, epoch, epoch]},
               feature(json!([0.7037263512611389, 0.038169607520103455, null])),
               feature(json!([0.8724706768989563, 0.48534533381462097, null])),
               feature(json!([308, 332, null]))]})
}

/// What the remote online store's `online_write_batch` sends: naive UTC
/// `isoformat()` timestamps, `allow_registry_cache: false`.
fn write_request_example() -> Value {
    json!({"feature_view_name": "driver_hourly_stats",
           "df": {"driver_id": [1001], "conv_rate": [0.7037263512611389], "acc_rate": [0.8724706768989563],
                  "avg_daily_trips": [308], "event_timestamp": ["2021-12-31T23:00:00"], "created": ["2021-12-31T23:05:00"]},
           "allow_registry_cache": false})
}

/// As Feast's push example writes it: `str(datetime)` timestamps.
fn push_request_example() -> Value {
    json!({"push_source_name": "driver_hourly_stats",
           "df": {"driver_id": [1002], "event_timestamp": ["2021-12-31 23:00:00+00:00"], "created": ["2021-12-31 23:05:00"],
                  "conv_rate": [0.038169607520103455], "acc_rate": [0.48534533381462097], "avg_daily_trips": [332]},
           "to": "online_and_offline"})
}

/// Schemas by name, added to `components.schemas`.
pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("FeastOnlineRequest", online_request()),
        ("FeastOnlineResponse", online_response()),
        ("FeastFeatureVector", feature_vector()),
        ("FeastDataFrame", data_frame()),
        ("FeastWriteRequest", write_request()),
        ("FeastPushRequest", push_request()),
        ("FeastErrorDetail", error_detail()),
    ]
}

/// Feast's models ignore fields they do not know, so these do too.
fn online_request() -> Value {
    json!({"type": "object", "required": ["entities"], "additionalProperties": true,
        "properties": {
            "entities": {"type": "object", "additionalProperties": {"type": "array"},
                         "description": "Column-major rows: per join key (and per request field of an on-demand group) one value per row; every list of one length. Columns that are neither are ignored."},
            "features": {"type": "array", "items": {"type": "string"}, "description": "view:feature refs (a view is a feature group)"},
            "feature_service": {"type": "string", "description": "A feature service of the serving config, or a feature group (all its features); takes precedence over features"},
            "full_feature_names": {"type": "boolean", "default": false, "description": "Name features view__feature instead of feature"}},
        "example": read_request_example()})
}

fn online_response() -> Value {
    json!({"type": "object", "required": ["metadata", "results"], "additionalProperties": false,
        "properties": {
            "metadata": {"type": "object", "required": ["feature_names"], "additionalProperties": false,
                         "properties": {"feature_names": {"type": "array", "items": {"type": "string"},
                                                          "description": "Column names: join keys as sent, then features (view__feature with full_feature_names)"}}},
            "results": {"type": "array", "items": schema_ref("FeastFeatureVector"), "description": "One per name of feature_names, in that order"}},
        "example": read_response_example()})
}

fn feature_vector() -> Value {
    json!({"type": "object", "required": ["values", "statuses", "event_timestamps"], "additionalProperties": false,
        "description": "One column: an entry per row in each list",
        "properties": {
            "values": {"type": "array", "items": {"type": ["number", "integer", "boolean", "string", "array", "null"]}},
            "statuses": {"type": "array", "items": {"type": "string", "enum": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"]},
                         "description": "PRESENT: fresh or stale (and every join key); OUTSIDE_MAX_AGE: older than the group's max age, value still given; NOT_FOUND: nothing stored (null)"},
            "event_timestamps": {"type": "array", "items": {"type": "string", "format": "date-time"},
                                 "description": "RFC 3339 UTC with Z; 1970-01-01T00:00:00Z for join keys and NOT_FOUND"}},
        "example": {"values": [0.7037263512611389, null], "statuses": ["PRESENT", "NOT_FOUND"],
                    "event_timestamps": ["2021-12-31T23:00:00Z", "1970-01-01T00:00:00Z"]}})
}

fn data_frame() -> Value {
    json!({"type": "object", "required": ["event_timestamp"], "additionalProperties": true,
        "description": "Column-major rows, as pandas' DataFrame(dict): join keys, event_timestamp, optionally created, and features of the group; another column is refused (SpecifiedFeaturesNotPresentError). A list per column, all of one length; a scalar is every row's value.",
        "properties": {
            "event_timestamp": {"type": ["array", "string"], "items": {"type": "string"},
                                "description": "ISO 8601 event times (2021-12-31T23:00:00, 2021-12-31 23:00:00+00:00); without an offset they are UTC"},
            "created": {"type": ["array", "string", "null"], "items": {"type": ["string", "null"]},
                        "description": "When each row was created: among rows of one entity and event time the latest created wins; null or absent means the write time"}},
        "example": {"driver_id": [1001], "event_timestamp": ["2021-12-31T23:00:00"], "conv_rate": [0.7037263512611389]}})
}

fn write_request() -> Value {
    json!({"type": "object", "required": ["feature_view_name", "df"], "additionalProperties": true,
        "properties": {
            "feature_view_name": {"type": "string", "description": "A feature group that stores values (push or batch)"},
            "df": schema_ref("FeastDataFrame"),
            "allow_registry_cache": {"type": "boolean", "description": "Accepted and ignored"},
            "transform_on_write": {"type": "boolean", "description": "Accepted and ignored"}},
        "example": write_request_example()})
}

fn push_request() -> Value {
    json!({"type": "object", "required": ["push_source_name", "df"], "additionalProperties": true,
        "properties": {
            "push_source_name": {"type": "string", "description": "A feature group that stores values (push or batch)"},
            "df": schema_ref("FeastDataFrame"),
            "to": {"type": "string", "enum": ["online", "offline", "online_and_offline"], "default": "online",
                   "description": "online and online_and_offline store offline first, then online; offline stores history only"},
            "allow_registry_cache": {"type": "boolean", "description": "Accepted and ignored"},
            "transform_on_write": {"type": "boolean", "description": "Accepted and ignored"}},
        "example": push_request_example()})
}

fn error_detail() -> Value {
    json!({"type": "string", "contentMediaType": "application/json",
        "contentSchema": {"type": "object", "required": ["module", "class", "message"],
                          "properties": {"module": {"type": "string", "enum": ["feast.errors"]},
                                         "class": {"type": "string", "description": "A class of feast.errors, raised by the Feast client"},
                                         "message": {"type": "string"}}},
        "description": "Feast's FeastError.to_error_detail(): a JSON string holding {\"module\", \"class\", \"message\"}, which the Feast client turns back into the exception class",
        "example": "{\"module\": \"feast.errors\", \"class\": \"FeatureViewNotFoundException\", \"message\": \"Feature view driver_stats does not exist\"}"})
}
