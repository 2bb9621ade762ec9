//! Transform plugins (admin): versions, lifecycle, limits and dry runs
//! (`api/transforms.rs`, `model/transform.rs`). Shadowing is in `shadow.rs`.

use super::common::{Op, answer, extend, json_body, name_param, no_content, object, path_param, schema_ref, timestamp};
use serde_json::{Value, json};

/// A sha256 for the examples.
pub(super) const SHA: &str = "3b6d621f6a8bd1cb1f1e1b1d3b3f5f2d8c9e0a7b6c5d4e3f2a1b0c9d8e7f6a5b";

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let name = || name_param("transform", "indicators");
    let version = || path_param("version", "A semantic version X.Y.Z (optional pre-release or build suffix)", "1.0.0");
    let lifecycle = |id: &str, summary: &str| {
        Op::new(id, summary).respond("200", answer("The transform after the change", "Transform")).build()
    };
    vec![
        (
            "/v1/transforms",
            json!({"get": Op::new("listTransforms", "List transforms with versions and call statistics")
            .respond("200", answer("Every transform", "TransformList")).build()}),
        ),
        (
            "/v1/transforms/{name}",
            json!({"parameters": [name()],
            "get": Op::new("getTransform", "A transform: versions, active one, sha256, status, call and error counts")
                .respond("200", answer("The transform", "Transform")).build()}),
        ),
        (
            "/v1/transforms/{name}/versions/{version}",
            json!({"parameters": [name(), version()],
            "get": Op::new("getTransformVersion", "A published version and its descriptor")
                .respond("200", answer("The version", "TransformVersion")).build(),
            "put": publish(),
            "delete": Op::new("deleteTransformVersion", "Delete a version (409 while a feature group pins it, or it is the active version or the rollback target)")
                .respond("204", no_content("Deleted")).build()}),
        ),
        (
            "/v1/transforms/{name}/activate",
            json!({"parameters": [name()],
            "post": Op::new("activateTransform", "Activate a version (the active one becomes the rollback target)")
                .body(json_body("ActivateRequest", json!({"version": "1.0.0"})))
                .respond("200", answer("The transform after the change", "Transform")).build()}),
        ),
        (
            "/v1/transforms/{name}/disable",
            json!({"parameters": [name()],
            "post": lifecycle("disableTransform", "Disable the transform: nothing runs it until a version is activated")}),
        ),
        (
            "/v1/transforms/{name}/rollback",
            json!({"parameters": [name()],
            "post": lifecycle("rollbackTransform", "Re-activate the previously active version")}),
        ),
        (
            "/v1/transforms/{name}/limits",
            json!({"parameters": [name()],
            "put": Op::new("setTransformLimits", "Replace the transform's limit overrides (absent fields: server default; {} restores all). The transform's answer shows `limits.overrides` and `limits.effective`")
                .describe("Memory and module size may only be lowered below the server's caps: those size the instance pool and the upload limit.")
                .body(json_body("LimitOverrides", json!({"call_timeout_ms": 500, "breaker_failures": 3})))
                .respond("200", answer("The transform with its new limits", "Transform")).build()}),
        ),
        ("/v1/transforms/{name}/invoke", json!({"parameters": [name()], "post": invoke()})),
    ]
}

fn publish() -> Value {
    let wasm = json!({"schema": {"type": "string", "format": "binary", "contentMediaType": "application/wasm"},
                      "example": "\u{0}asm\r\u{0}\u{1}\u{0}"});
    Op::new("publishTransformVersion", "Publish a version (component bytes). 201 new, 200 same bytes again, 409 different bytes, 400 invalid")
        .describe("The body is a WebAssembly component of the wafer world (the example shows the component preamble, 00 61 73 6d 0d 00 01 00); a missing content type is taken as application/wasm. It is validated (a component of our world, describe succeeds, limits respected); an invalid one is refused with invalid_component and the reason (including a describe over the descriptor caps: about 256 KiB in all, 1,024 entries per list, 64-byte names, 4 KiB descriptions), one over the size cap with module_too_large.")
        .body(json!({"required": true, "content": {"application/wasm": wasm.clone(), "application/octet-stream": wasm}}))
        .respond("201", answer("Published", "TransformVersion"))
        .respond("200", answer("Already published with the same bytes", "TransformVersion"))
        .build()
}

fn invoke() -> Value {
    let example = json!({"version": "1.0.0", "entity": "AAPL", "sources": {"prices": {
        "timestamps": ["2024-04-29T00:00:00Z", "2024-04-30T00:00:00Z", "2024-05-01T00:00:00Z"],
        "columns": {"close": [173.5, 170.3, 169.3]}}}});
    Op::new("invokeTransform", "Dry run on inline input, for authors: nothing is stored")
        .describe("Batch transforms take entity, sources (and related series); on-demand ones take features and request columns. Columns are typed as the transform declares them, else inferred from their first non-null value. Params default to the transform's declared defaults.")
        .body(json_body("InvokeRequest", example))
        .respond("200", answer("The transform's output table and the version that ran", "InvokeResponse"))
        .build()
}

fn version_properties() -> Value {
    json!({
        "name": {"type": "string"},
        "version": {"type": "string"},
        "sha256": {"type": "string", "description": "Hex sha256 of the component bytes"},
        "size_bytes": {"type": "integer", "minimum": 0},
        "kind": {"type": "string", "enum": ["batch", "on_demand"]},
        "inputs": {"type": "array", "items": schema_ref("Field"), "description": "Source fields (batch) or group:feature refs (on-demand) the transform reads"},
        "request_fields": {"type": "array", "items": schema_ref("Field"), "description": "On-demand: fields the caller sends per read"},
        "outputs": {"type": "array", "items": schema_ref("Field"), "description": "The features it computes"},
        "params": {"type": "array", "items": schema_ref("ParamSpec")},
        "min_history": {"type": "integer", "minimum": 0, "description": "Source rows per entity the transform needs at least"},
        "related": {"type": "array", "items": schema_ref("RelatedSeries"), "description": "Other entities' series it reads (e.g. a benchmark named in params)"},
        "description": {"type": "string"},
        "created_at": timestamp("When the version was published")
    })
}

const VERSION_REQUIRED: [&str; 13] = [
    "name",
    "version",
    "sha256",
    "size_bytes",
    "kind",
    "inputs",
    "request_fields",
    "outputs",
    "params",
    "min_history",
    "related",
    "description",
    "created_at",
];

fn version_example() -> Value {
    json!({
        "name": "indicators", "version": "1.0.0", "sha256": SHA, "size_bytes": 184_320, "kind": "batch",
        "inputs": [{"name": "close", "type": "float64", "description": "Daily close, read from the first source"}],
        "request_fields": [],
        "outputs": [{"name": "sma_20", "type": "float64", "description": "Mean of the last 20 closes"},
                    {"name": "rsi_14", "type": "float64", "description": "Wilder's 14-day RSI (0-100), averages seeded with simple means of the first 14 changes"}],
        "params": [], "min_history": 200, "related": [],
        "description": "Technical indicators of daily closes: SMAs, EMAs, RSI, MACD, Bollinger bands",
        "created_at": "2024-05-01T12:00:00Z"
    })
}

fn version_state_example() -> Value {
    let mut v = version_example();
    v["active"] = json!(true);
    v["stats"] = json!({"calls": 42, "errors": 0, "traps": 0, "timeouts": 0, "mean_micros": 2100.5});
    v["breaker"] = json!({"state": "closed", "consecutive_failures": 0, "threshold": 5, "times_opened": 0});
    v
}

pub(super) fn transform_example() -> Value {
    json!({
        "name": "indicators", "status": "active", "active_version": "1.0.0", "previous_version": null, "shadow": null,
        "limits": {"overrides": {}, "effective": {"call_timeout_ms": 2000, "memory_bytes": 67_108_864, "module_bytes": 33_554_432,
                                                  "output_bytes": 16_777_216, "breaker_failures": 5}},
        "versions": [version_state_example()]
    })
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("TransformVersion", object(&VERSION_REQUIRED, version_properties(), Some(version_example()))),
        ("TransformVersionState", version_state()),
        (
            "ParamSpec",
            object(
                &["name", "type"],
                json!({
            "name": {"type": "string"}, "type": schema_ref("ValueType"),
            "default": {"type": "string", "description": "Omitted when there is none"},
            "description": {"type": "string", "description": "Omitted when empty"}}),
                Some(
                    json!({"name": "benchmark", "type": "string", "default": "SPY", "description": "Ticker the beta is measured against"}),
                ),
            ),
        ),
        (
            "RelatedSeries",
            object(
                &["name", "source", "entity_param"],
                json!({
            "name": {"type": "string"}, "source": {"type": "string"},
            "entity_param": {"type": "string", "description": "The param naming the other entity"}}),
                Some(json!({"name": "benchmark", "source": "prices", "entity_param": "benchmark"})),
            ),
        ),
        (
            "CallStats",
            object(
                &["calls", "errors", "traps", "timeouts", "mean_micros"],
                json!({
            "calls": {"type": "integer"}, "errors": {"type": "integer"}, "traps": {"type": "integer"}, "timeouts": {"type": "integer"},
            "mean_micros": {"type": "number", "description": "Mean wall time per call (0 with no calls)"}}),
                Some(json!({"calls": 42, "errors": 0, "traps": 0, "timeouts": 0, "mean_micros": 2100.5})),
            ),
        ),
        ("BreakerStatus", breaker_status()),
        ("Transform", transform()),
        (
            "TransformList",
            object(
                &["transforms"],
                json!({"transforms": {"type": "array", "items": schema_ref("Transform")}}),
                Some(json!({"transforms": [transform_example()]})),
            ),
        ),
        (
            "ShadowSpec",
            object(
                &["version", "tolerance", "started_at"],
                json!({
            "version": {"type": "string", "description": "The candidate"},
            "tolerance": {"type": "number"},
            "started_at": timestamp("When this comparison started")}),
                Some(json!({"version": "1.1.0", "tolerance": 1e-6, "started_at": "2024-05-01T12:00:00Z"})),
            ),
        ),
        ("LimitOverrides", limit_overrides()),
        (
            "EffectiveLimits",
            object(
                &["call_timeout_ms", "memory_bytes", "module_bytes", "output_bytes", "breaker_failures"],
                json!({
            "call_timeout_ms": {"type": "integer"}, "memory_bytes": {"type": "integer"}, "module_bytes": {"type": "integer"},
            "output_bytes": {"type": "integer"}, "breaker_failures": {"type": "integer"}}),
                Some(
                    json!({"call_timeout_ms": 2000, "memory_bytes": 67_108_864, "module_bytes": 33_554_432, "output_bytes": 16_777_216, "breaker_failures": 5}),
                ),
            ),
        ),
        (
            "ActivateRequest",
            object(&["version"], json!({"version": {"type": "string"}}), Some(json!({"version": "1.1.0"}))),
        ),
        (
            "InvokeTable",
            object(
                &["timestamps"],
                json!({
            "timestamps": {"type": "array", "items": {"type": "string", "format": "date-time"}},
            "columns": {"type": "object", "additionalProperties": {"type": "array", "items": schema_ref("FeatureValue")},
                        "description": "Equal-length columns by field name"}}),
                Some(json!({"timestamps": ["2024-05-01T00:00:00Z"], "columns": {"close": [169.3]}})),
            ),
        ),
        ("InvokeRequest", invoke_request()),
        ("InvokeResponse", invoke_response()),
    ]
}

fn version_state() -> Value {
    let mut required = VERSION_REQUIRED.to_vec();
    required.extend(["active", "stats", "breaker"]);
    let properties = extend(
        version_properties(),
        json!({
        "active": {"type": "boolean"},
        "stats": schema_ref("CallStats"),
        "breaker": schema_ref("BreakerStatus")}),
    );
    object(&required, properties, Some(version_state_example()))
}

fn breaker_status() -> Value {
    object(
        &["state", "consecutive_failures", "threshold", "times_opened"],
        json!({
        "state": {"type": "string", "enum": ["closed", "open", "half_open"], "description": "half_open: a trial call is under way after the cool-down"},
        "consecutive_failures": {"type": "integer"},
        "threshold": {"type": "integer", "description": "Consecutive failures that open it (limits.breaker_failures)"},
        "times_opened": {"type": "integer", "description": "Since this host started"},
        "opened_at": timestamp("Only while open"),
        "retry_at": timestamp("Open only: when the next trial call is let through"),
        "last_error": {"type": "string", "description": "Omitted when none"}}),
        Some(json!({"state": "open", "consecutive_failures": 5, "threshold": 5, "times_opened": 1,
                    "opened_at": "2024-05-01T12:00:00Z", "retry_at": "2024-05-01T12:00:30Z", "last_error": "transform trapped: unreachable"})),
    )
}

fn transform() -> Value {
    object(
        &["name", "status", "active_version", "previous_version", "shadow", "limits", "versions"],
        json!({
        "name": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "disabled", "inactive"], "description": "inactive: published, never activated"},
        "active_version": {"type": ["string", "null"]},
        "previous_version": {"type": ["string", "null"], "description": "The rollback target"},
        "shadow": {"anyOf": [schema_ref("ShadowSpec"), {"type": "null"}], "description": "The candidate shadowing the active version, if any"},
        "limits": object(&["overrides", "effective"], json!({
            "overrides": schema_ref("LimitOverrides"), "effective": schema_ref("EffectiveLimits")}), None),
        "versions": {"type": "array", "items": schema_ref("TransformVersionState")},
        "shadow_report": {"allOf": [schema_ref("ShadowReport")], "description": "Only in the answer of promote: the comparison the promotion was based on"}}),
        Some(transform_example()),
    )
}

fn limit_overrides() -> Value {
    object(
        &[],
        json!({
        "call_timeout_ms": {"type": "integer", "minimum": 1, "maximum": 60000, "description": "default 2000"},
        "memory_bytes": {"type": "integer", "minimum": 1_048_576, "description": "at most the server's cap (default 64 MiB)"},
        "module_bytes": {"type": "integer", "minimum": 1, "description": "at most the server's cap (default 32 MiB)"},
        "output_bytes": {"type": "integer", "minimum": 1, "maximum": 268_435_456, "description": "default 16 MiB"},
        "breaker_failures": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "consecutive failed calls that open a version's breaker; default 5"}}),
        Some(json!({"call_timeout_ms": 500, "breaker_failures": 3})),
    )
}

fn invoke_request() -> Value {
    let columns = |what: &str| json!({"type": "object", "additionalProperties": {"type": "array", "items": schema_ref("FeatureValue")}, "description": what});
    object(
        &[],
        json!({
        "version": {"type": "string", "description": "Default: the active version"},
        "entity": {"type": "string", "description": "Batch: the entity key passed to the transform (default \"invoke\")"},
        "sources": {"type": "object", "additionalProperties": schema_ref("InvokeTable"), "description": "Batch: the source tables by source name"},
        "related": {"type": "object", "additionalProperties": schema_ref("InvokeTable"), "description": "Batch: related series by name"},
        "features": columns("On-demand: input columns by group:feature ref"),
        "request": columns("On-demand: request columns by field name"),
        "params": {"type": "object", "additionalProperties": true, "description": "Params by name (non-strings passed as their JSON text)"}}),
        Some(
            json!({"features": {"technical:sma_20": [188.7], "technical:sma_50": [180.2]}, "request": {"price": [191.5]}}),
        ),
    )
}

fn invoke_response() -> Value {
    object(
        &["timestamps", "columns", "transform"],
        json!({
        "timestamps": {"type": "array", "items": {"type": "string", "format": "date-time"}},
        "columns": {"type": "object", "additionalProperties": {"type": "array", "items": schema_ref("FeatureValue")}, "description": "Output columns by feature name"},
        "transform": object(&["name", "version", "sha256"], json!({"name": {"type": "string"}, "version": {"type": "string"}, "sha256": {"type": "string"}}), None)}),
        Some(json!({"timestamps": ["2024-04-29T00:00:00Z", "2024-04-30T00:00:00Z", "2024-05-01T00:00:00Z"],
                    "columns": {"sma_20": [null, null, null], "rsi_14": [null, null, null]},
                    "transform": {"name": "indicators", "version": "1.0.0", "sha256": SHA}})),
    )
}
