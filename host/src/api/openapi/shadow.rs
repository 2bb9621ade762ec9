//! Shadow mode and promotion (`api/transforms.rs`, `service/shadow.rs`):
//! a candidate version runs beside the active one, compared, never served.

use super::common::{Op, answer, json_body, name_param, object, schema_ref, timestamp};
use super::transforms::transform_example;
use serde_json::{Value, json};

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let report = |description: &str| answer(description, "ShadowReport");
    let shadow = json!({
        "parameters": [name_param("transform", "indicators")],
        "post": Op::new("startShadow", "Start (or restart) shadowing: the candidate version runs beside the active one on materialization and on-demand calls, outputs compared per feature; never served")
            .body(json_body("ShadowRequest", json!({"version": "1.1.0", "tolerance": 1e-6})))
            .respond("200", report("The comparison so far (empty)"))
            .build(),
        "get": Op::new("getShadowReport", "The shadow report: matches, mismatches with examples per feature, candidate errors, relative latency, verdict (404 when no shadow runs)")
            .respond("200", report("The comparison so far"))
            .build(),
        "delete": Op::new("stopShadow", "Stop shadowing; answers the final report")
            .respond("200", report("The final comparison"))
            .build()
    });
    let mut promoted = transform_example();
    promoted["previous_version"] = json!("1.0.0");
    promoted["active_version"] = json!("1.1.0");
    promoted["shadow_report"] = shadow_report_example();
    let promote = Op::new("promoteShadow", "Activate the shadow candidate and stop shadowing (409 without one); the answer is the transform with `shadow_report`, the comparison it was based on")
        .respond("200", json!({"description": "The transform after the promotion, with shadow_report",
            "content": {"application/json": {"schema": schema_ref("Transform"), "example": promoted}}}))
        .build();
    vec![
        ("/v1/transforms/{name}/shadow", shadow),
        (
            "/v1/transforms/{name}/promote",
            json!({"parameters": [name_param("transform", "indicators")], "post": promote}),
        ),
    ]
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ShadowRequest",
            object(
                &["version"],
                json!({
            "version": {"type": "string", "description": "The candidate: a published version other than the active one"},
            "tolerance": {"type": "number", "default": 1e-9, "description": "numbers match when |a - b| <= tolerance * max(1, |a|, |b|)"}}),
                Some(json!({"version": "1.1.0", "tolerance": 1e-6})),
            ),
        ),
        ("ShadowReport", shadow_report()),
    ]
}

fn shadow_report_example() -> Value {
    json!({"transform": "indicators", "active_version": "1.0.0", "candidate_version": "1.1.0", "tolerance": 1e-6, "started_at": "2026-11-22T10:00:00Z",
           "calls": {"shadowed": 2, "compared": 2, "candidate_errors": 0, "skipped": 0},
           "latency": {"active_mean_micros": 2100.0, "candidate_mean_micros": 2310.0, "candidate_relative": 1.1},
           "features": [{"name": "rsi_14", "compared": 504, "matches": 503, "mismatches": 1, "max_abs_diff": 0.5,
                         "examples": [{"active": 61.2, "candidate": 61.7, "entity": "AAPL", "event_timestamp": "2026-11-20T00:00:00Z"}]}],
           "recent_errors": [], "suspended": false, "verdict": "mismatch"})
}

fn shadow_report() -> Value {
    let count = |d: &str| json!({"type": "integer", "minimum": 0, "description": d});
    let calls = object(
        &["shadowed", "compared", "candidate_errors", "skipped"],
        json!({
        "shadowed": count("Active calls the candidate also ran for (compared + errors)"),
        "compared": count("Calls whose outputs were compared"),
        "candidate_errors": count("Candidate calls that failed"),
        "skipped": count("Active calls the candidate did not run for (too many queued, or suspended)")}),
        None,
    );
    let latency = object(
        &["active_mean_micros", "candidate_mean_micros", "candidate_relative"],
        json!({
        "active_mean_micros": {"type": "number"}, "candidate_mean_micros": {"type": "number"},
        "candidate_relative": {"type": ["number", "null"], "description": "Candidate over active mean time: 1.2 is 20% slower"}}),
        None,
    );
    let example = object(
        &["active", "candidate"],
        json!({
        "active": schema_ref("FeatureValue"),
        "candidate": {"description": "The candidate's value, or \"(missing)\" when it did not produce the feature"},
        "entity": {"type": "string", "description": "Materialization: the entity key"},
        "event_timestamp": timestamp("Materialization: the row's event time"),
        "row": {"type": "integer", "description": "On-demand calls: the row of the call"}}),
        None,
    );
    let feature = object(
        &["name", "compared", "matches", "mismatches", "max_abs_diff", "examples"],
        json!({
        "name": {"type": "string"}, "compared": count("Values compared"), "matches": count("Within tolerance"),
        "mismatches": count("Outside tolerance"), "max_abs_diff": {"type": "number"},
        "examples": {"type": "array", "maxItems": 5, "items": example, "description": "The first mismatches"}}),
        None,
    );
    object(
        &[
            "transform",
            "active_version",
            "candidate_version",
            "tolerance",
            "started_at",
            "calls",
            "latency",
            "features",
            "recent_errors",
            "suspended",
            "verdict",
        ],
        json!({
        "transform": {"type": "string"}, "active_version": {"type": ["string", "null"]}, "candidate_version": {"type": "string"},
        "tolerance": {"type": "number"}, "started_at": timestamp("When this comparison started"),
        "calls": calls, "latency": latency,
        "features": {"type": "array", "items": feature},
        "recent_errors": {"type": "array", "maxItems": 5, "items": {"type": "string"}},
        "suspended": {"type": "boolean", "description": "True once the candidate failed 5 times in a row: no more candidate calls until the shadow is restarted"},
        "verdict": {"type": "string", "enum": ["no_data", "candidate_errors", "mismatch", "match"]}}),
        Some(shadow_report_example()),
    )
}
