//! The registry: entities, sources and feature groups (`api/registry.rs`,
//! `model/registry.rs`).
//!
//! One schema per object serves both the `PUT` body and the answers: `name`
//! comes from the path, so it is read-only (answered, never sent; the
//! request types refuse unknown fields).

use super::common::{Op, answer, json_body, name_param, no_content, object, schema_ref};
use serde_json::{Value, json};

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/v1/entities",
            json!({"get": Op::new("listEntities", "List entities")
            .respond("200", answer("Every entity, by name", "EntityList")).build()}),
        ),
        ("/v1/entities/{name}", entity()),
        (
            "/v1/sources",
            json!({"get": Op::new("listSources", "List sources")
            .respond("200", answer("Every source, by name", "SourceList")).build()}),
        ),
        ("/v1/sources/{name}", source()),
        (
            "/v1/feature-groups",
            json!({"get": Op::new("listFeatureGroups", "List feature groups")
            .respond("200", answer("Every feature group, by name", "FeatureGroupList")).build()}),
        ),
        ("/v1/feature-groups/{name}", feature_group()),
    ]
}

fn entity() -> Value {
    json!({
        "parameters": [name_param("entity", "ticker")],
        "get": Op::new("getEntity", "Get an entity").respond("200", answer("The entity", "Entity")).build(),
        "put": Op::new("putEntity", "Create or replace an entity")
            .body(json_body("Entity", json!({"join_keys": ["ticker"], "description": "A listed stock"})))
            .respond("200", answer("The entity as stored", "Entity"))
            .build(),
        "delete": Op::new("deleteEntity", "Delete an entity (refused with 409 while a source or feature group uses it)")
            .respond("204", no_content("Deleted"))
            .build()
    })
}

fn source() -> Value {
    json!({
        "parameters": [name_param("source", "prices")],
        "get": Op::new("getSource", "Get a source").respond("200", answer("The source", "Source")).build(),
        "put": Op::new("putSource", "Create or replace a source (its entity must exist)")
            .body(json_body("Source", json!({"entity": "ticker", "timestamp_field": "ts",
                "fields": [{"name": "close", "type": "float64"}, {"name": "volume", "type": "int64"}],
                "description": "Daily bars"})))
            .respond("200", answer("The source as stored", "Source"))
            .build(),
        "delete": Op::new("deleteSource", "Delete a source and its rows (refused with 409 while a group reads it)")
            .respond("204", no_content("Deleted"))
            .build()
    })
}

fn feature_group() -> Value {
    let example = json!({
        "entity": "ticker",
        "description": "Technical indicators from daily closes",
        "features": [{"name": "sma_20", "type": "float64", "description": "Mean of the last 20 closes"}],
        "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
        "producer": {"kind": "batch", "transform": "indicators", "source": "prices", "lookback": 252, "schedule_seconds": 3600}
    });
    json!({
        "parameters": [name_param("feature group", "technical")],
        "get": Op::new("getFeatureGroup", "Get a feature group").respond("200", answer("The feature group", "FeatureGroup")).build(),
        "put": Op::new("putFeatureGroup", "Create or replace a feature group (validated against its entity, sources and transform)")
            .describe("A transform-backed group's features must be outputs of the transform version it uses (pinned, or the active one), with the same types; its sources must belong to the group's entity and hold the transform's inputs.")
            .body(json_body("FeatureGroup", example))
            .respond("200", answer("The feature group as stored", "FeatureGroup"))
            .build(),
        "delete": Op::new("deleteFeatureGroup", "Delete a feature group and its data")
            .respond("204", no_content("Deleted"))
            .build()
    })
}

fn name_property(of: &str) -> Value {
    json!({"type": "string", "readOnly": true, "description": format!("The {of}'s name, from the path: answered, never sent")})
}

fn description_property() -> Value {
    json!({"type": "string", "default": "", "description": "Free text; always answered (empty when not set)"})
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Entity",
            object(
                &["name", "join_keys"],
                json!({
            "name": name_property("entity"),
            "join_keys": {"type": "array", "minItems": 1, "items": {"type": "string"},
                          "description": "The keys that identify one entity, in order (composite keys have several)"},
            "description": description_property()}),
                Some(json!({"name": "ticker", "join_keys": ["ticker"], "description": "A listed stock"})),
            ),
        ),
        (
            "EntityList",
            object(
                &["entities"],
                json!({"entities": {"type": "array", "items": schema_ref("Entity")}}),
                Some(
                    json!({"entities": [{"name": "ticker", "join_keys": ["ticker"], "description": "A listed stock"}]}),
                ),
            ),
        ),
        ("Source", source_schema()),
        (
            "SourceList",
            object(
                &["sources"],
                json!({"sources": {"type": "array", "items": schema_ref("Source")}}),
                Some(json!({"sources": [source_example()]})),
            ),
        ),
        (
            "Freshness",
            object(
                &[],
                json!({
            "expected_interval_seconds": {"type": "integer", "minimum": 0, "description": "A value is fresh while its age (from its event time) is at most this, then stale"},
            "max_age_seconds": {"type": "integer", "minimum": 1, "description": "Past this age a value is expired (served with status expired; null in training data). At least 1 and at least expected_interval_seconds; leave out for no limit"},
            "online_ttl_seconds": {"type": "integer", "minimum": 0, "description": "How long the online store keeps a value; default twice max_age_seconds"}}),
                Some(json!({"expected_interval_seconds": 3600, "max_age_seconds": 7200})),
            ),
        ),
        ("Producer", producer_schema()),
        (
            "PushProducer",
            object(&["kind"], json!({"kind": {"type": "string", "enum": ["push"]}}), Some(json!({"kind": "push"}))),
        ),
        ("BatchProducer", batch_producer_schema()),
        ("OnDemandProducer", on_demand_producer_schema()),
        ("FeatureGroup", feature_group_schema()),
        (
            "FeatureGroupList",
            object(
                &["feature_groups"],
                json!({"feature_groups": {"type": "array", "items": schema_ref("FeatureGroup")}}),
                Some(json!({"feature_groups": [feature_group_example()]})),
            ),
        ),
    ]
}

fn source_example() -> Value {
    json!({"name": "prices", "entity": "ticker", "timestamp_field": "ts",
           "fields": [{"name": "open", "type": "float64"}, {"name": "high", "type": "float64"}, {"name": "low", "type": "float64"},
                      {"name": "close", "type": "float64"}, {"name": "volume", "type": "int64"}],
           "description": ""})
}

fn source_schema() -> Value {
    object(
        &["name", "entity", "timestamp_field", "fields"],
        json!({
        "name": name_property("source"),
        "entity": {"type": "string", "description": "The entity whose join keys every row carries"},
        "timestamp_field": {"type": "string", "description": "The column holding each row's event time; not listed in fields"},
        "fields": {"type": "array", "minItems": 1, "items": schema_ref("Field"), "description": "The value columns (join keys and the timestamp field are implied)"},
        "description": description_property()}),
        Some(source_example()),
    )
}

fn producer_schema() -> Value {
    json!({"description": "Who produces the group's values: clients (push), a batch transform over sources (batch), or an on-demand transform over other features and request data (on_demand)",
           "oneOf": [schema_ref("PushProducer"), schema_ref("BatchProducer"), schema_ref("OnDemandProducer")],
           "discriminator": {"propertyName": "kind", "mapping": {
               "push": "#/components/schemas/PushProducer", "batch": "#/components/schemas/BatchProducer",
               "on_demand": "#/components/schemas/OnDemandProducer"}},
           "example": {"kind": "batch", "transform": "indicators", "source": "prices", "lookback": 252, "schedule_seconds": 3600}})
}

fn params_property() -> Value {
    json!({"type": "object", "additionalProperties": true,
           "description": "Parameters passed to the transform as text (non-strings as their JSON), e.g. {\"benchmark\": \"SPY\"}; omitted from answers when empty"})
}

fn version_property() -> Value {
    json!({"type": "string", "description": "Pinned transform version; omitted = the transform's active version"})
}

fn batch_producer_schema() -> Value {
    object(
        &["kind", "transform"],
        json!({
        "kind": {"type": "string", "enum": ["batch"]},
        "transform": {"type": "string"},
        "version": version_property(),
        "source": {"type": "string", "description": "The source read (or give sources); omitted from answers when not set"},
        "sources": {"type": "array", "items": {"type": "string"}, "description": "Several sources of the group's entity; omitted from answers when empty"},
        "lookback": {"type": "integer", "minimum": 1, "default": 252, "description": "Source rows of history per entity the group needs; always answered"},
        "schedule_seconds": {"type": "integer", "minimum": 1, "description": "Materialize incrementally every so many seconds"},
        "params": params_property()}),
        Some(
            json!({"kind": "batch", "transform": "risk", "source": "prices", "lookback": 253, "schedule_seconds": 86400,
                    "params": {"benchmark": "SPY"}}),
        ),
    )
}

fn on_demand_producer_schema() -> Value {
    object(
        &["kind", "transform"],
        json!({
        "kind": {"type": "string", "enum": ["on_demand"]},
        "transform": {"type": "string"},
        "version": version_property(),
        "inputs": {"type": "array", "items": {"type": "string"}, "description": "group:feature refs of stored groups the transform reads; always answered"},
        "request_fields": {"type": "array", "items": schema_ref("Field"), "description": "Fields the caller sends per read (request_context online, entity-row columns in training data); always answered"},
        "params": params_property()}),
        Some(json!({"kind": "on_demand", "transform": "signals", "inputs": ["technical:sma_20", "technical:sma_50"],
                    "request_fields": [{"name": "price", "type": "float64", "description": "The current price"}]})),
    )
}

fn feature_group_example() -> Value {
    json!({
        "name": "technical", "entity": "ticker",
        "features": [{"name": "sma_20", "type": "float64", "description": "Mean of the last 20 closes"},
                     {"name": "rsi_14", "type": "float64", "description": "Wilder's 14-day RSI"}],
        "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
        "producer": {"kind": "batch", "transform": "indicators", "source": "prices", "lookback": 252, "schedule_seconds": 3600},
        "description": "Technical indicators from daily closes"
    })
}

fn feature_group_schema() -> Value {
    object(
        &["name", "entity", "features", "producer"],
        json!({
        "name": name_property("feature group"),
        "entity": {"type": "string"},
        "features": {"type": "array", "minItems": 1, "items": schema_ref("Field"), "description": "Features are read as <group>:<feature>"},
        "freshness": {"allOf": [schema_ref("Freshness")], "description": "Always answered ({} when nothing is set)"},
        "producer": schema_ref("Producer"),
        "description": description_property()}),
        Some(feature_group_example()),
    )
}
