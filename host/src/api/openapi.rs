//! `GET /openapi.json`: the OpenAPI 3.1 document of this API, written by
//! hand next to the handlers it describes. A test checks that every route
//! the router serves is documented here.

use crate::service::Wafer;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<Wafer> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn ok(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"type": "object"}}}})
}

fn errors() -> Value {
    json!({"description": "Error envelope", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn op(summary: &str, request: Option<Value>, status: &str, response: &str) -> Value {
    let mut o = json!({"summary": summary, "responses": {status: ok(response), "4XX": errors(), "5XX": errors()}});
    if let Some(r) = request {
        o["requestBody"] = r;
    }
    o
}

fn name_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

/// The document. Paths use OpenAPI's `{param}` syntax, the same as the router.
pub fn document() -> Value {
    let mut doc = base_document();
    // Added apart: one `json!` of everything exceeds the macro's recursion limit.
    doc["paths"]["/v1/features/historical"] = historical();
    doc["paths"]["/v1/audit"] = audit();
    let (shadow, promote, limits) = plugin_admin();
    doc["paths"]["/v1/transforms/{name}/shadow"] = shadow;
    doc["paths"]["/v1/transforms/{name}/promote"] = promote;
    doc["paths"]["/v1/transforms/{name}/limits"] = limits;
    doc["components"]["schemas"]["ShadowReport"] = shadow_report_schema();
    doc["components"]["schemas"]["LimitOverrides"] = limit_overrides_schema();
    doc["components"]["schemas"]["Provenance"] = json!({"type": "object", "required": ["transform", "version", "sha256"],
        "properties": {"transform": {"type": "string"}, "version": {"type": "string"}, "sha256": {"type": "string"}},
        "example": {"transform": "indicators", "version": "1.0.0", "sha256": "3b6d621f..."}});
    doc
}

/// Shadow, promote and per-transform limits (admin; reading the shadow
/// report needs `read`).
fn plugin_admin() -> (Value, Value, Value) {
    let report = json!({"description": "The comparison so far", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ShadowReport"}}}});
    let shadow = json!({
        "parameters": [name_param("name")],
        "post": {"summary": "Start (or restart) shadowing: the candidate version runs beside the active one on materialization and on-demand calls, outputs compared per feature; never served",
                 "requestBody": {"required": true, "content": {"application/json": {
                     "schema": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}, "tolerance": {"type": "number", "default": 1e-9, "description": "numbers match when |a - b| <= tolerance * max(1, |a|, |b|)"}}},
                     "example": {"version": "1.1.0", "tolerance": 1e-6}}}},
                 "responses": {"200": report.clone(), "4XX": errors(), "5XX": errors()}},
        "get": {"summary": "The shadow report: matches, mismatches with examples per feature, candidate errors, relative latency, verdict (404 when no shadow runs)",
                "responses": {"200": report.clone(), "4XX": errors(), "5XX": errors()}},
        "delete": {"summary": "Stop shadowing; answers the final report", "responses": {"200": report, "4XX": errors(), "5XX": errors()}}
    });
    let promote = json!({"parameters": [name_param("name")],
        "post": op("Activate the shadow candidate and stop shadowing (409 without one); the answer is the transform with `shadow_report`, the comparison it was based on", None, "200", "Transform")});
    let limits = json!({"parameters": [name_param("name")],
        "put": op("Replace the transform's limit overrides (absent fields: server default; {} restores all). The transform's answer shows `limits.overrides` and `limits.effective`", Some(body("LimitOverrides")), "200", "Transform")});
    (shadow, promote, limits)
}

fn shadow_report_schema() -> Value {
    json!({"type": "object", "properties": {
        "transform": {"type": "string"}, "active_version": {"type": ["string", "null"]}, "candidate_version": {"type": "string"},
        "tolerance": {"type": "number"}, "started_at": {"type": "string", "format": "date-time"},
        "calls": {"type": "object", "properties": {"shadowed": {"type": "integer"}, "compared": {"type": "integer"}, "candidate_errors": {"type": "integer"}, "skipped": {"type": "integer"}}},
        "latency": {"type": "object", "properties": {"active_mean_micros": {"type": "number"}, "candidate_mean_micros": {"type": "number"}, "candidate_relative": {"type": ["number", "null"]}}},
        "features": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "compared": {"type": "integer"}, "matches": {"type": "integer"}, "mismatches": {"type": "integer"}, "max_abs_diff": {"type": "number"}, "examples": {"type": "array", "items": {"type": "object"}}}}},
        "recent_errors": {"type": "array", "items": {"type": "string"}},
        "suspended": {"type": "boolean"},
        "verdict": {"type": "string", "enum": ["no_data", "candidate_errors", "mismatch", "match"]}},
        "example": {"transform": "indicators", "active_version": "1.0.0", "candidate_version": "1.1.0", "tolerance": 1e-6, "started_at": "2026-11-22T10:00:00Z",
                    "calls": {"shadowed": 2, "compared": 2, "candidate_errors": 0, "skipped": 0},
                    "latency": {"active_mean_micros": 2100.0, "candidate_mean_micros": 2310.0, "candidate_relative": 1.1},
                    "features": [{"name": "rsi_14", "compared": 504, "matches": 503, "mismatches": 1, "max_abs_diff": 0.5,
                                  "examples": [{"entity": "AAPL", "event_timestamp": "2026-11-20T00:00:00Z", "active": 61.2, "candidate": 61.7}]}],
                    "recent_errors": [], "suspended": false, "verdict": "mismatch"}})
}

fn limit_overrides_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {
        "call_timeout_ms": {"type": "integer", "minimum": 1, "maximum": 60000, "description": "default 2000"},
        "memory_bytes": {"type": "integer", "minimum": 1048576, "description": "at most the server's cap (default 64 MiB)"},
        "module_bytes": {"type": "integer", "minimum": 1, "description": "at most the server's cap (default 32 MiB)"},
        "output_bytes": {"type": "integer", "minimum": 1, "maximum": 268435456, "description": "default 16 MiB"},
        "breaker_failures": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "consecutive failed calls that open a version's breaker; default 5"}},
        "example": {"call_timeout_ms": 500, "breaker_failures": 3}})
}

fn historical() -> Value {
    json!({"post": {
                "summary": "Point-in-time training data: per entity row and group, the row with the latest event time in [event_timestamp - max_age, event_timestamp] (both inclusive; no max age: unbounded), created last among ties; with created_cutoff, only rows created at or before event_timestamp. Output keeps input order and every input column, then one column per ref (null where nothing was known). Large answers stream; an error after the first rows aborts the transfer.",
                "parameters": [
                    {"name": "features", "in": "query", "description": "Comma-separated refs, with a text/csv body", "schema": {"type": "string"}, "example": "technical:sma_20,risk:beta"},
                    {"name": "created_cutoff", "in": "query", "description": "With a text/csv body", "schema": {"type": "boolean"}},
                    {"name": "include_provenance", "in": "query", "description": "With a text/csv body: add <group>:__provenance columns (name@version#sha256, empty for pushed rows)", "schema": {"type": "boolean"}},
                    {"name": "header", "in": "query", "description": "CSV answers: false leaves out the header row", "schema": {"type": "boolean", "default": true}},
                    {"name": "Accept", "in": "header", "description": "text/csv for a CSV answer; otherwise JSON", "schema": {"type": "string"}}
                ],
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/HistoricalRequest"}},
                    "text/csv": {"schema": {"type": "string"}, "example": "ticker,event_timestamp,label\nAAPL,2024-05-01T00:00:00Z,1\n"}}},
                "responses": {
                    "200": {"description": "One row per entity row, in input order. Header x-wafer-entity-rows: the row count.",
                            "content": {
                                "application/json": {"schema": {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object"}}}},
                                                     "example": {"rows": [{"ticker": "AAPL", "event_timestamp": "2024-05-01T00:00:00Z", "label": 1, "technical:sma_20": 188.7}]}},
                                "text/csv": {"schema": {"type": "string"}, "example": "ticker,event_timestamp,label,technical:sma_20\nAAPL,2024-05-01T00:00:00Z,1,188.7\n"}}},
                    "4XX": errors(), "5XX": errors()}}})
}

fn audit() -> Value {
    json!({"get": {"summary": "Registry and plugin changes, newest first (admin): who (token role and id, or anonymous), what, when",
                                  "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100, "maximum": 1000}}],
                                  "responses": {"200": {"description": "Entries, newest first", "content": {"application/json": {
                                      "schema": {"type": "array", "items": {"type": "object", "required": ["at", "actor", "action", "target", "details"], "properties": {
                                          "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"}, "action": {"type": "string"}, "target": {"type": "string"}, "details": {"type": "object"}}}},
                                      "example": [{"at": "2026-11-21T12:00:00Z", "actor": "admin:1a2b3c4d", "action": "transform.activate", "target": "indicators",
                                                   "details": {"status": "active", "active_version": "1.1.0", "previous_version": "1.0.0"}}]}}},
                                                "4XX": errors(), "5XX": errors()}}})
}

fn base_document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "wafer", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Feature store with WebAssembly transforms. Errors are {\"error\": {\"code\", \"message\", \"details\"}}."},
        "paths": {
            "/healthz": {"get": op("Liveness", None, "200", "{\"status\": \"ok\"}")},
            "/readyz": {"get": op("Readiness: 200 when every backend answers, else 503 naming the failing ones", None, "200", "Ready")},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": op("This document", None, "200", "OpenAPI document")},
            "/v1/entities": {"get": op("List entities", None, "200", "{\"entities\": [...]}")},
            "/v1/entities/{name}": {
                "parameters": [name_param("name")],
                "get": op("Get an entity", None, "200", "Entity"),
                "put": op("Create or replace an entity", Some(body("Entity")), "200", "Entity"),
                "delete": {"summary": "Delete an entity (refused while used)", "responses": {"204": {"description": "Deleted"}, "4XX": errors()}}
            },
            "/v1/sources": {"get": op("List sources", None, "200", "{\"sources\": [...]}")},
            "/v1/sources/{name}": {
                "parameters": [name_param("name")],
                "get": op("Get a source", None, "200", "Source"),
                "put": op("Create or replace a source", Some(body("Source")), "200", "Source"),
                "delete": {"summary": "Delete a source and its rows (refused while read by a group)", "responses": {"204": {"description": "Deleted"}, "4XX": errors()}}
            },
            "/v1/sources/{name}/rows": {
                "parameters": [name_param("name")],
                "post": {"summary": "Ingest source rows (JSON {\"rows\": [...]} or text/csv with a header row); durable before acknowledged",
                         "requestBody": {"required": true, "content": {
                             "application/json": {"schema": {"type": "object", "required": ["rows"], "properties": {"rows": {"type": "array", "items": {"type": "object"}}}},
                                                   "example": {"rows": [{"ticker": "AAPL", "ts": "2024-05-01T00:00:00Z", "close": 169.3}]}},
                             "text/csv": {"schema": {"type": "string"}, "example": "ticker,ts,close\nAAPL,2024-05-01,169.3\n"}}},
                         "responses": {"200": ok("{\"written\": N}"), "4XX": errors(), "5XX": errors()}}
            },
            "/v1/feature-groups": {"get": op("List feature groups", None, "200", "{\"feature_groups\": [...]}")},
            "/v1/feature-groups/{name}": {
                "parameters": [name_param("name")],
                "get": op("Get a feature group", None, "200", "FeatureGroup"),
                "put": op("Create or replace a feature group (validated against its transform)", Some(body("FeatureGroup")), "200", "FeatureGroup"),
                "delete": {"summary": "Delete a feature group and its data", "responses": {"204": {"description": "Deleted"}, "4XX": errors()}}
            },
            "/v1/features/write": {"post": op("Write feature rows (offline first, then online)", Some(body("FeatureWrite")), "200", "{\"written\": N}")},
            "/v1/features/online": {"post": op("Online read with per-value status, event time, age and source", Some(body("OnlineRequest")), "200", "OnlineResponse")},
            "/v1/transforms": {"get": op("List transforms with versions and call statistics", None, "200", "{\"transforms\": [...]}")},
            "/v1/transforms/{name}": {"parameters": [name_param("name")], "get": op("A transform: versions, active one, sha256, status, call and error counts", None, "200", "Transform")},
            "/v1/transforms/{name}/versions/{version}": {
                "parameters": [name_param("name"), name_param("version")],
                "get": op("A published version and its descriptor", None, "200", "Version"),
                "delete": {"summary": "Delete a version (409 while a feature group pins it, or it is the active version or the rollback target)", "responses": {"204": {"description": "Deleted"}, "4XX": errors(), "5XX": errors()}},
                "put": {"summary": "Publish a version (component bytes). 201 new, 200 same bytes again, 409 different bytes, 400 invalid",
                        "requestBody": {"required": true, "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}}},
                        "responses": {"201": ok("Published version"), "200": ok("Already published with the same bytes"), "4XX": errors(), "5XX": errors()}}
            },
            "/v1/transforms/{name}/activate": {"parameters": [name_param("name")], "post": op("Activate a version", Some(json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}}, "example": {"version": "1.0.0"}}}})), "200", "Transform")},
            "/v1/transforms/{name}/disable": {"parameters": [name_param("name")], "post": op("Disable the transform", None, "200", "Transform")},
            "/v1/transforms/{name}/rollback": {"parameters": [name_param("name")], "post": op("Re-activate the previously active version", None, "200", "Transform")},
            "/v1/transforms/{name}/invoke": {"parameters": [name_param("name")], "post": op("Dry run on inline input", Some(body("Invoke")), "200", "{\"timestamps\": [...], \"columns\": {...}, \"transform\": {\"name\", \"version\", \"sha256\"}}")},
            "/v1/materialize": {"post": {"summary": "Start a materialization job (202 with job_id; ?wait=true answers 200 with the finished job)",
                                          "parameters": [{"name": "wait", "in": "query", "schema": {"type": "boolean"}}],
                                          "requestBody": body("MaterializeRequest"),
                                          "responses": {"202": ok("{\"job_id\": \"...\"}"), "200": ok("Finished job"), "4XX": errors(), "5XX": errors()}}},
            "/v1/jobs": {"get": op("Job history, newest first", None, "200", "{\"jobs\": [...]}")},
            "/v1/jobs/{id}": {"parameters": [name_param("id")], "get": op("A job's state and progress (hosts: entities computed per host)", None, "200", "Job")},
            "/v1/freshness": {"get": op("Per stored group: entities fresh / stale / expired by their newest row, newest and oldest event time", None, "200", "{\"as_of\": \"...\", \"groups\": [{\"feature_group\", \"expected_interval_seconds\", \"max_age_seconds\", \"entities\", \"fresh\", \"stale\", \"expired\", \"newest_event_timestamp\", \"oldest_event_timestamp\"}]}")},
            "/v1/feature-groups/{name}/statistics": {"parameters": [name_param("name")], "get": op("Per feature over every stored row: count, nulls, mean, sample std, min, max, p50, p95 (numpy linear)", None, "200", "{\"feature_group\", \"rows\", \"features\": {\"sma_20\": {\"count\", \"nulls\", \"mean\", \"std\", \"min\", \"max\", \"p50\", \"p95\"}}}")}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": ["invalid_json", "invalid_request", "unknown_feature", "invalid_component", "not_found", "method_not_allowed", "conflict", "payload_too_large", "module_too_large", "unsupported_media_type", "transform_failed", "transform_bad_output", "transform_trapped", "transform_memory_limit", "transform_timeout", "transform_disabled", "unavailable", "busy", "internal"]},
                "message": {"type": "string"}, "details": {"type": "object"}}}}},
            "ValueType": {"type": "string", "enum": ["float64", "int64", "bool", "string", "float64_list", "string_list"]},
            "Entity": {"type": "object", "required": ["join_keys"], "properties": {"join_keys": {"type": "array", "items": {"type": "string"}}, "description": {"type": "string"}},
                       "example": {"join_keys": ["ticker"], "description": "A listed stock"}},
            "Source": {"type": "object", "required": ["entity", "timestamp_field", "fields"], "properties": {
                "entity": {"type": "string"}, "timestamp_field": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "object", "required": ["name", "type"], "properties": {"name": {"type": "string"}, "type": {"$ref": "#/components/schemas/ValueType"}}}}},
                "example": {"entity": "ticker", "timestamp_field": "ts", "fields": [{"name": "close", "type": "float64"}]}},
            "FeatureGroup": {"type": "object", "required": ["entity", "features", "producer"], "properties": {
                "entity": {"type": "string"},
                "features": {"type": "array", "items": {"type": "object", "required": ["name", "type"], "properties": {"name": {"type": "string"}, "type": {"$ref": "#/components/schemas/ValueType"}, "description": {"type": "string"}}}},
                "freshness": {"type": "object", "properties": {"expected_interval_seconds": {"type": "integer"}, "max_age_seconds": {"type": "integer"}, "online_ttl_seconds": {"type": "integer"}}},
                "producer": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "enum": ["push", "batch", "on_demand"]}, "transform": {"type": "string"}, "version": {"type": "string"}, "source": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}, "lookback": {"type": "integer"}, "schedule_seconds": {"type": "integer"}, "params": {"type": "object"}, "inputs": {"type": "array", "items": {"type": "string"}}, "request_fields": {"type": "array"}}}},
                "example": {"entity": "ticker", "features": [{"name": "sma_20", "type": "float64"}], "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
                            "producer": {"kind": "batch", "transform": "indicators", "source": "prices", "lookback": 252}}},
            "FeatureWrite": {"type": "object", "required": ["feature_group", "rows"], "properties": {"feature_group": {"type": "string"}, "rows": {"type": "array", "items": {"type": "object", "required": ["entity", "event_timestamp", "values"], "properties": {"entity": {"type": "object"}, "event_timestamp": {"type": "string", "format": "date-time"}, "created_timestamp": {"type": "string", "format": "date-time"}, "values": {"type": "object"}}}}}},
            "OnlineRequest": {"type": "object", "required": ["entities"], "properties": {
                "entities": {"type": "array", "items": {"type": "object"}}, "features": {"type": "array", "items": {"type": "string"}},
                "feature_groups": {"type": "array", "items": {"type": "string"}}, "request_context": {"type": "object"},
                "fallback": {"type": "string", "enum": ["compute", "none"]}, "timeout_ms": {"type": "integer"},
                "include_provenance": {"type": "boolean", "default": false, "description": "Also answer per requested group the transform version that computed the row served: results[].provenance = {group: Provenance | null}"}},
                "example": {"entities": [{"ticker": "AAPL"}], "features": ["technical:sma_20", "technical:rsi_14"]}},
            "HistoricalRequest": {"type": "object", "required": ["entity_rows", "features"], "properties": {
                "entity_rows": {"type": "array", "items": {"type": "object", "description": "Join keys, event_timestamp (RFC 3339, naive = UTC, or a date), any other columns (passed through; request fields of on-demand groups)"}},
                "features": {"type": "array", "items": {"type": "string"}}, "created_cutoff": {"type": "boolean", "default": false},
                "include_provenance": {"type": "boolean", "default": false, "description": "Add one <group>:__provenance column per requested group (a Provenance object, null for pushed rows)"}},
                "example": {"entity_rows": [{"ticker": "AAPL", "event_timestamp": "2024-05-01T00:00:00Z"}], "features": ["technical:sma_20", "risk:beta"], "created_cutoff": true}},
            "MaterializeRequest": {"type": "object", "required": ["feature_group"], "properties": {"feature_group": {"type": "string"}, "entities": {"type": "array"}, "incremental": {"type": "boolean"}},
                                   "example": {"feature_group": "technical", "entities": ["AAPL"], "incremental": false}},
            "Invoke": {"type": "object", "properties": {"version": {"type": "string"}, "entity": {"type": "string"}, "sources": {"type": "object"}, "related": {"type": "object"}, "features": {"type": "object"}, "request": {"type": "object"}, "params": {"type": "object"}}}
        }}
    })
}
