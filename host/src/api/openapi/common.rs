//! Building blocks every part of the document uses: the operation builder,
//! request and response helpers, and the shapes shared across resources
//! (the error envelope, value types, fields, timestamps, provenance).

use crate::api::error::ApiError;
use serde_json::{Value, json};

/// Every `code` an error body can carry: the codes of
/// [`ApiError::status`]'s table plus `internal`. The unit tests check this
/// list against `api/error.rs` and every `ApiError::new` in `api/`.
pub(super) const ERROR_CODES: [&str; 22] = [
    "invalid_json",
    "invalid_request",
    "invalid_timestamp",
    "unknown_feature",
    "invalid_component",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "payload_too_large",
    "module_too_large",
    "unsupported_media_type",
    "transform_failed",
    "transform_bad_output",
    "transform_trapped",
    "transform_memory_limit",
    "transform_timeout",
    "unavailable",
    "busy",
    "transform_disabled",
    "internal",
];

/// The keys of a path item that hold operations.
pub(super) const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// An operation under construction. [`Op::build`] adds the error envelope
/// as the `4XX` and `5XX` answers, so no operation forgets them.
pub(super) struct Op(Value);

impl Op {
    pub fn new(id: &str, summary: &str) -> Op {
        Op(json!({"operationId": id, "summary": summary, "responses": {}}))
    }

    pub fn describe(mut self, text: &str) -> Op {
        self.0["description"] = json!(text);
        self
    }

    pub fn param(mut self, param: Value) -> Op {
        match self.0["parameters"].as_array_mut() {
            Some(params) => params.push(param),
            None => self.0["parameters"] = json!([param]),
        }
        self
    }

    pub fn body(mut self, body: Value) -> Op {
        self.0["requestBody"] = body;
        self
    }

    pub fn respond(mut self, status: &str, response: Value) -> Op {
        self.0["responses"][status] = response;
        self
    }

    pub fn build(mut self) -> Value {
        self.0["responses"]["4XX"] = errors();
        self.0["responses"]["5XX"] = errors();
        self.0
    }
}

/// `{"$ref": "#/components/schemas/<name>"}`.
pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A required JSON body of the named schema with its own example (request
/// examples differ from the component's when it has read-only fields).
pub(super) fn json_body(schema: &str, example: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema_ref(schema), "example": example}}})
}

/// A JSON answer of the named schema; the example is the component's.
pub(super) fn answer(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_ref(schema)}}})
}

/// A JSON answer of the named schema with an example of its own.
pub(super) fn answer_with(description: &str, schema: &str, example: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_ref(schema), "example": example}}})
}

/// A 204 answer: no body.
pub(super) fn no_content(description: &str) -> Value {
    json!({"description": description})
}

/// The error envelope, as the `4XX` and `5XX` answers.
pub(super) fn errors() -> Value {
    answer(
        "Error envelope (application/json, whatever went wrong): the code names the failure (see the Error schema for the codes and statuses); an unknown path is 404 not_found, a method the path does not serve 405 method_not_allowed",
        "Error",
    )
}

/// The `400` answer of an operation with path or query parameters.
fn parameter_errors() -> Value {
    answer(
        "Error envelope. A path or query parameter that does not parse (a non-integer limit, a boolean that is not true or false, an unknown query parameter where they are refused, text that is not UTF-8) is invalid_request, whose message names the parameter and details holds {\"in\": \"query\" or \"path\", \"parameter\": name}; other codes as the Error schema lists",
        "Error",
    )
}

/// Documents the `400` envelope on every operation that takes path or
/// query parameters (on the operation or its path item), so a client sees
/// where a malformed parameter is answered.
pub(super) fn add_parameter_errors(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        let shared = item.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
        for (method, op) in item.iter_mut() {
            if !METHODS.contains(&method.as_str()) || !op.is_object() {
                continue;
            }
            let own = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            if (shared || own) && op["responses"].get("400").is_none() {
                op["responses"]["400"] = parameter_errors();
            }
        }
    }
}

/// A required path parameter.
pub(super) fn path_param(name: &str, description: &str, example: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string"}, "example": example})
}

/// The `{name}` of a registry object or transform.
pub(super) fn name_param(of: &str, example: &str) -> Value {
    path_param("name", &format!("The {of}'s name: 1-64 letters, digits, '_' or '-', starting with a letter"), example)
}

/// An optional query parameter.
pub(super) fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// An RFC 3339 timestamp in UTC, as the server writes them.
pub(super) fn timestamp(description: &str) -> Value {
    json!({"type": "string", "format": "date-time", "description": description})
}

/// A timestamp or `null`.
pub(super) fn timestamp_or_null(description: &str) -> Value {
    json!({"type": ["string", "null"], "format": "date-time", "description": description})
}

/// An object schema from its properties; every property not listed is
/// refused (the request types deny unknown fields; the answers have fixed
/// shapes).
pub(super) fn object(required: &[&str], properties: Value, example: Option<Value>) -> Value {
    let mut schema = json!({"type": "object", "required": required, "additionalProperties": false,
                            "properties": properties});
    if let Some(example) = example {
        schema["example"] = example;
    }
    schema
}

/// `properties` with more added, for shapes that extend others.
pub(super) fn extend(mut properties: Value, more: Value) -> Value {
    if let (Some(props), Value::Object(more)) = (properties.as_object_mut(), more) {
        props.extend(more);
    }
    properties
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("Error", error_schema()),
        (
            "ValueType",
            json!({"type": "string", "enum": ["float64", "int64", "bool", "string", "float64_list", "string_list"],
                             "description": "The declared type of a source field or feature", "example": "float64"}),
        ),
        (
            "FeatureValue",
            json!({"type": ["number", "integer", "boolean", "string", "array", "null"],
                                "items": {"type": ["number", "string"]},
                                "description": "A value of a declared type: float64 and int64 as numbers, bool, string, float64_list and string_list as arrays; null when absent (and for a non-finite float)",
                                "example": 189.21}),
        ),
        (
            "Field",
            object(
                &["name", "type"],
                json!({
            "name": {"type": "string", "description": "1-64 letters, digits or '_', starting with a letter"},
            "type": schema_ref("ValueType"),
            "description": {"type": "string", "description": "Omitted from answers when empty"}}),
                Some(json!({"name": "close", "type": "float64", "description": "Daily close"})),
            ),
        ),
        (
            "EntityKeys",
            json!({"type": "object", "additionalProperties": {"type": ["string", "integer"]},
                              "description": "An entity's join-key values by join key, as strings or integers (42 and \"42\" name the same entity)",
                              "example": {"ticker": "AAPL"}}),
        ),
        (
            "Provenance",
            object(
                &["transform", "version", "sha256"],
                json!({
            "transform": {"type": "string"}, "version": {"type": "string"},
            "sha256": {"type": "string", "description": "Hex sha256 of the component bytes"}}),
                Some(json!({"transform": "indicators", "version": "1.0.0",
                        "sha256": "3b6d621f6a8bd1cb1f1e1b1d3b3f5f2d8c9e0a7b6c5d4e3f2a1b0c9d8e7f6a5b"})),
            ),
        ),
    ]
}

fn error_schema() -> Value {
    let table: Vec<String> =
        ERROR_CODES.iter().map(|code| format!("{code} ({})", ApiError::new(code, "").status().as_u16())).collect();
    let code = json!({"type": "string", "enum": ERROR_CODES,
                      "description": format!("Stable code clients branch on, with its status: {}", table.join(", "))});
    let inner = object(
        &["code", "message", "details"],
        json!({
        "code": code,
        "message": {"type": "string", "description": "For people; may change"},
        "details": {"type": "object", "description": "Machine-readable specifics, e.g. {\"unknown\": [...], \"available\": [...]} for unknown_feature, {\"backend\": ...} for unavailable; {} when none"}}),
        None,
    );
    let mut schema = object(&["error"], json!({"error": inner}), None);
    schema["example"] = json!({"error": {"code": "unknown_feature", "message": "unknown feature technical:sma_21",
                                          "details": {"unknown": ["technical:sma_21"], "available": ["sma_20", "sma_50", "sma_200"]}}});
    schema
}

/// Adds per operation the role its bearer token needs (from the same
/// function the auth middleware uses, so the two cannot disagree) and
/// marks the open endpoints.
pub(super) fn add_security(doc: &mut Value) {
    use crate::api::auth::required_role;
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            if !METHODS.contains(&method.as_str()) || !op.is_object() {
                continue;
            }
            let Ok(m) = method.to_uppercase().parse::<axum::http::Method>() else { continue };
            match required_role(&m, path) {
                None => op["security"] = json!([]),
                Some(role) => {
                    op["security"] = json!([{"bearer": []}]);
                    op["x-wafer-role"] = json!(role.name());
                }
            }
        }
    }
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "Tokens are configured as role=token pairs (WAFER_API_TOKENS); roles read < write < admin, and each operation's x-wafer-role names the least it needs. Without configured tokens the server serves without auth (on loopback only)."}});
}
