//! Health and ops: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`
//! (`api/health.rs` and this module's router).

use super::common::{Op, answer, answer_with, object};
use serde_json::{Value, json};

const METRICS_EXAMPLE: &str = "# HELP wafer_feature_groups Registered feature groups.\n\
# TYPE wafer_feature_groups gauge\n\
wafer_feature_groups 3\n\
# HELP wafer_transform_calls_total Transform calls by version.\n\
# TYPE wafer_transform_calls_total counter\n\
wafer_transform_calls_total{transform=\"indicators\",version=\"1.0.0\"} 42\n\
# HELP wafer_transform_errors_total Failed transform calls by version.\n\
# TYPE wafer_transform_errors_total counter\n\
wafer_transform_errors_total{transform=\"indicators\",version=\"1.0.0\"} 0\n";

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let healthz = Op::new("healthz", "Liveness: 200 while the process serves")
        .respond("200", answer("The process serves", "Health"))
        .build();
    let readyz = Op::new("readyz", "Readiness: 200 when every backend answers, else 503 naming the failing ones")
        .describe("Registry, offline store and online store are pinged together, each with a 1 s timeout. The 503 answer has this same shape, not the error envelope.")
        .respond("200", answer("Every backend answers", "Ready"))
        .respond("503", answer_with("A backend failed or did not answer; checks holds its error", "Ready", json!({
            "status": "unavailable",
            "checks": {"registry": "ok", "offline_store": "ok", "online_store": "did not answer within 1 s"}})))
        .build();
    let metrics =
        Op::new("metrics", "Prometheus metrics: registry sizes and per-transform-version call and error counters")
            .respond(
                "200",
                json!({"description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": METRICS_EXAMPLE}}}),
            )
            .build();
    let openapi = Op::new("openapi", "This document (OpenAPI 3.1)")
        .respond("200", answer("The OpenAPI document of this API", "OpenApiDocument"))
        .build();
    vec![
        ("/healthz", json!({"get": healthz})),
        ("/readyz", json!({"get": readyz})),
        ("/metrics", json!({"get": metrics})),
        ("/openapi.json", json!({"get": openapi})),
    ]
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let check = |what: &str| json!({"type": "string", "description": format!("\"ok\", or why the {what} failed")});
    vec![
        (
            "Health",
            object(&["status"], json!({"status": {"type": "string", "enum": ["ok"]}}), Some(json!({"status": "ok"}))),
        ),
        (
            "Ready",
            object(
                &["status", "checks"],
                json!({
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "checks": object(&["registry", "offline_store", "online_store"], json!({
                "registry": check("registry"), "offline_store": check("offline store"), "online_store": check("online store")}), None)}),
                Some(
                    json!({"status": "ready", "checks": {"registry": "ok", "offline_store": "ok", "online_store": "ok"}}),
                ),
            ),
        ),
        (
            "OpenApiDocument",
            json!({"type": "object", "required": ["openapi", "info", "paths", "components"],
            "additionalProperties": true,
            "properties": {"openapi": {"type": "string", "enum": ["3.1.0"]}, "info": {"type": "object"},
                           "paths": {"type": "object"}, "components": {"type": "object"}},
            "example": {"openapi": "3.1.0", "info": {"title": "wafer", "version": env!("CARGO_PKG_VERSION")},
                        "paths": {"/healthz": {"get": {"summary": "Liveness: 200 while the process serves"}}},
                        "components": {"schemas": {}}}}),
        ),
    ]
}
