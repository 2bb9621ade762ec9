//! The OpenAPI paths and schemas of prompt enrichment and its monitor.

use serde_json::{Value, json};

fn error_responses() -> Value {
    let error = json!({"description": "Error envelope", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({"4XX": error.clone(), "5XX": error})
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn with_errors(mut responses: Value) -> Value {
    if let (Some(map), Value::Object(errors)) = (responses.as_object_mut(), error_responses()) {
        map.extend(errors);
    }
    responses
}

/// Path items by path, added to the document's `paths`.
pub(super) fn paths() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/v1/enrich",
            json!({"post": {
                "summary": "Enrich an LLM prompt with the features relevant to its task type: fresh values only, in a compact [Context] block within max_feature_tokens (estimated as ceil(characters / 4)), least important features dropped first. Never an error for store trouble: past timeout_ms, or when the task is not enabled or switched off by the monitor, the prompt comes back untouched with features_available false and skipped_reason",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EnrichRequest"}}}},
                "responses": with_errors(json!({"200": json_response("The prompt, enriched or untouched", "EnrichResponse")}))
            }}),
        ),
        (
            "/v1/enrich/feedback",
            json!({"post": {
                "summary": "Record a quality score (0 to 1) for an enrichment id, or with task_type alone for a baseline answered without enrichment. 404 for an unknown id, 409 when the id was already rated",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EnrichFeedback"}}}},
                "responses": with_errors(json!({"200": {"description": "Recorded", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["task_type", "with_features"], "properties": {
                        "task_type": {"type": "string"}, "with_features": {"type": "boolean", "description": "whether the score counts as quality with features"}}},
                    "example": {"task_type": "product_recommendation", "with_features": true}}}}}))
            }}),
        ),
        (
            "/v1/enrich/stats",
            json!({"get": {
                "summary": "The enrichment monitor of this host: totals, average features and latency, quality with and without features per task type, store availability, and which task types are switched off and why",
                "responses": with_errors(json!({"200": json_response("Monitor state", "EnrichStats")}))
            }}),
        ),
        (
            "/v1/enrich/tasks",
            json!({"get": {
                "summary": "The task-feature mapping in effect (built-in tasks and the serving config), each feature with its entity type or why it cannot be used now, and the monitor settings",
                "responses": with_errors(json!({"200": {"description": "Tasks and monitor settings", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["tasks", "monitor"], "properties": {
                        "tasks": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                            "enabled": {"type": "boolean"}, "freshness_threshold_seconds": {"type": "integer"}, "description": {"type": "string"},
                            "features": {"type": "array", "items": {"type": "object", "required": ["feature", "entity", "usable"], "properties": {
                                "feature": {"type": "string"}, "entity": {"type": ["string", "null"]}, "usable": {"type": "boolean"},
                                "reason": {"type": "string", "enum": ["not_registered", "on_demand"]}}}}}}},
                        "monitor": {"$ref": "#/components/schemas/EnrichMonitorSettings"}}},
                    "example": {"tasks": {"product_recommendation": {"enabled": true, "freshness_threshold_seconds": 3600,
                        "description": "What the user likes and buys, and what the product is",
                        "features": [{"feature": "user_profile:preferred_categories", "entity": "user", "usable": true},
                                     {"feature": "product_catalog:avg_rating", "entity": null, "usable": false, "reason": "not_registered"}]}},
                        "monitor": {"min_samples": 20, "min_quality_gain": 0.0, "window": 200, "store_failures": 5, "retry_after_seconds": 30, "probe_every": 10}}}}}}))
            }}),
        ),
    ]
}

/// Schemas by name, added to `components.schemas`.
pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("EnrichRequest", request()),
        ("EnrichResponse", response()),
        ("EnrichFeedback", feedback()),
        ("EnrichStats", stats()),
        ("EnrichMonitorSettings", monitor_settings()),
    ]
}

fn request() -> Value {
    json!({"type": "object", "required": ["prompt", "task_type"], "additionalProperties": false, "properties": {
        "prompt": {"type": "string"},
        "task_type": {"type": "string", "description": "built in: product_recommendation, customer_support, content_generation, code_generation; more in the serving config"},
        "entities": {"type": "object", "description": "entity type -> key: one join key's value, or an object of join keys", "additionalProperties": true},
        "max_feature_tokens": {"type": "integer", "minimum": 1, "maximum": 8192, "default": 200},
        "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 200},
        "freshness_threshold_seconds": {"type": "integer", "minimum": 0, "description": "default: the task's (3600 for the built-in tasks)"}},
        "example": {"prompt": "Which shoes should I buy next?", "entities": {"user": "u1", "product": "p9"},
                    "task_type": "product_recommendation", "max_feature_tokens": 200, "timeout_ms": 200}})
}

fn response() -> Value {
    let reasons = json!([
        "task_not_enabled",
        "store_failing",
        "no_quality_gain",
        "timeout",
        "store_unavailable",
        "no_entities",
        "no_features",
        "no_fresh_features",
        "budget_too_small",
        null
    ]);
    json!({"type": "object", "required": ["enriched_prompt", "features_used", "feature_tokens_added", "enrichment_latency_ms", "features_available", "enrichment_id", "task_type", "skipped_reason", "features_dropped"],
        "properties": {
            "enriched_prompt": {"type": "string"},
            "features_used": {"type": "array", "items": {"type": "string"}, "description": "refs in the block, most important first"},
            "feature_tokens_added": {"type": "integer", "description": "estimated tokens of the block: ceil(characters / 4)"},
            "enrichment_latency_ms": {"type": "number"},
            "features_available": {"type": "boolean"},
            "enrichment_id": {"type": "string", "description": "for POST /v1/enrich/feedback"},
            "task_type": {"type": "string"},
            "skipped_reason": {"type": ["string", "null"], "enum": reasons},
            "features_dropped": {"type": "array", "items": {"type": "object", "required": ["feature", "reason"], "properties": {
                "feature": {"type": "string"},
                "reason": {"type": "string", "enum": ["not_registered", "no_entity", "on_demand", "missing", "stale", "over_budget"]}}}}},
        "example": {
            "enriched_prompt": "[Context]\n- preferred_categories: [running, trail, outdoor, hiking, camping, +2 more]\n- price_sensitivity: 0.35\n- category: footwear\n[/Context]\n\nWhich shoes should I buy next?",
            "features_used": ["user_profile:preferred_categories", "user_profile:price_sensitivity", "product_catalog:category"],
            "feature_tokens_added": 37, "enrichment_latency_ms": 0.412, "features_available": true,
            "enrichment_id": "enr_5f0c2a9be1d34c7a8e61f0b2", "task_type": "product_recommendation", "skipped_reason": null,
            "features_dropped": [{"feature": "user_activity:recent_purchases", "reason": "stale"}]}})
}

fn feedback() -> Value {
    json!({"type": "object", "required": ["quality"], "additionalProperties": false, "properties": {
        "enrichment_id": {"type": "string", "description": "the enrichment rated (counts as with or without features, as it was answered)"},
        "task_type": {"type": "string", "description": "alone: a baseline answered without enrichment"},
        "quality": {"type": "number", "minimum": 0, "maximum": 1}},
        "example": {"enrichment_id": "enr_5f0c2a9be1d34c7a8e61f0b2", "quality": 0.8}})
}

fn stats() -> Value {
    let side = json!({"type": "object", "properties": {"samples": {"type": "integer"}, "total": {"type": "integer"}, "mean": {"type": ["number", "null"]}}});
    json!({"type": "object", "required": ["total_enrichments", "successful_enrichments", "avg_features_used", "avg_latency_ms", "store", "tasks"], "properties": {
        "total_enrichments": {"type": "integer"}, "successful_enrichments": {"type": "integer"},
        "avg_features_used": {"type": ["number", "null"]}, "avg_latency_ms": {"type": ["number", "null"]},
        "store": {"type": "object", "properties": {"available": {"type": "boolean"}, "consecutive_failures": {"type": "integer"},
                  "last_error": {"type": ["string", "null"]}, "last_failure_at": {"type": ["string", "null"], "format": "date-time"}}},
        "tasks": {"type": "array", "items": {"type": "object", "properties": {
            "task_type": {"type": "string"}, "enabled": {"type": "boolean"}, "active": {"type": "boolean"},
            "disabled_reason": {"type": ["string", "null"], "enum": ["task_not_enabled", "store_failing", "no_quality_gain", null]},
            "disabled_detail": {"type": ["string", "null"]}, "retry_at": {"type": ["string", "null"], "format": "date-time"},
            "requests": {"type": "integer"}, "enriched": {"type": "integer"},
            "avg_features_used": {"type": ["number", "null"]}, "avg_latency_ms": {"type": ["number", "null"]},
            "quality": {"type": "object", "properties": {"with_features": side.clone(), "without_features": side, "delta": {"type": ["number", "null"]}}}}}}},
        "example": {"total_enrichments": 1200, "successful_enrichments": 1130, "avg_features_used": 5.2, "avg_latency_ms": 0.61,
            "store": {"available": true, "consecutive_failures": 0, "last_error": null, "last_failure_at": null},
            "tasks": [{"task_type": "product_recommendation", "enabled": true, "active": true, "disabled_reason": null, "disabled_detail": null, "retry_at": null,
                       "requests": 1200, "enriched": 1130, "avg_features_used": 5.2, "avg_latency_ms": 0.61,
                       "quality": {"with_features": {"samples": 200, "total": 640, "mean": 0.82}, "without_features": {"samples": 120, "total": 120, "mean": 0.71}, "delta": 0.11}}]}})
}

fn monitor_settings() -> Value {
    json!({"type": "object", "properties": {
        "min_samples": {"type": "integer", "description": "scores needed on each side before quality can switch a task off"},
        "min_quality_gain": {"type": "number", "description": "how much higher mean quality with features must be"},
        "window": {"type": "integer", "description": "recent scores kept per side and task"},
        "store_failures": {"type": "integer", "description": "failing enrichments in a row that switch a task off"},
        "retry_after_seconds": {"type": "integer"},
        "probe_every": {"type": "integer", "description": "while off for no quality gain, every n-th request is still enriched"}},
        "example": {"min_samples": 20, "min_quality_gain": 0.0, "window": 200, "store_failures": 5, "retry_after_seconds": 30, "probe_every": 10}})
}
