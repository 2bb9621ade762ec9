//! Materialization jobs (`api/jobs.rs`, `model/job.rs`).

use super::common::{Op, answer, json_body, object, path_param, query_param, schema_ref, timestamp};
use serde_json::{Value, json};

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let materialize = Op::new("materialize", "Start a materialization job (202 with job_id; ?wait=true answers 200 with the finished job)")
        .describe("Job workers on this host or any other sharing the store run the job. A job that computed some entities and failed others ends failed with the errors listed; the rows it wrote stay written.")
        .param(query_param("wait", "Answer when the job has finished, with the job", json!({"type": "boolean", "default": false})))
        .body(json_body("MaterializeRequest", json!({"feature_group": "technical", "entities": ["AAPL"], "incremental": false})))
        .respond("202", answer("Started", "JobAccepted"))
        .respond("200", answer("With ?wait=true: the finished job", "Job"))
        .build();
    let list = Op::new("listJobs", "Job history, newest first")
        .param(query_param(
            "feature_group",
            "Only this group's jobs",
            json!({"type": "string", "example": "technical"}),
        ))
        .param(query_param(
            "limit",
            "Jobs to answer",
            json!({"type": "integer", "minimum": 0, "default": 50, "maximum": 1000}),
        ))
        .respond("200", answer("Jobs, newest first", "JobList"))
        .build();
    let one = Op::new("getJob", "A job's state and progress (hosts: entities computed per host)")
        .respond("200", answer("The job", "Job"))
        .build();
    vec![
        ("/v1/materialize", json!({"post": materialize})),
        ("/v1/jobs", json!({"get": list})),
        (
            "/v1/jobs/{id}",
            json!({"parameters": [path_param("id", "The job id from POST /v1/materialize", "job-20240501T120000-1a2b3c4d")], "get": one}),
        ),
    ]
}

fn job_example() -> Value {
    json!({"id": "job-20240501T120000-1a2b3c4d", "feature_group": "technical", "state": "succeeded", "incremental": false,
           "entities_done": 1, "entities_total": 1, "rows_written": 252, "errors": [],
           "created_at": "2024-05-01T12:00:00Z", "started_at": "2024-05-01T12:00:00Z", "finished_at": "2024-05-01T12:00:01Z",
           "transform": "indicators@1.0.0", "sources_ingested_until": "2024-05-01T12:00:00Z", "hosts": {"host-a": 1}})
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let state = json!({"type": "string", "enum": ["queued", "running", "succeeded", "failed"]});
    let count = |d: &str| json!({"type": "integer", "minimum": 0, "description": d});
    vec![
        (
            "MaterializeRequest",
            object(
                &["feature_group"],
                json!({
            "feature_group": {"type": "string", "description": "A batch group"},
            "entities": {"type": "array", "items": {"type": ["string", "integer", "object"]},
                         "description": "Entity keys: strings or integers for single-key entities, objects of join keys otherwise. Omitted = every entity with source rows"},
            "incremental": {"type": "boolean", "default": false, "description": "Only entities with source rows newer than their latest feature row, and only those newer rows are written"}}),
                Some(json!({"feature_group": "technical", "entities": ["AAPL", "MSFT"], "incremental": true})),
            ),
        ),
        (
            "JobAccepted",
            object(
                &["job_id", "state"],
                json!({"job_id": {"type": "string"}, "state": state.clone()}),
                Some(json!({"job_id": "job-20240501T120000-1a2b3c4d", "state": "running"})),
            ),
        ),
        (
            "Job",
            object(
                &[
                    "id",
                    "feature_group",
                    "state",
                    "incremental",
                    "entities_done",
                    "entities_total",
                    "rows_written",
                    "errors",
                    "created_at",
                ],
                json!({
            "id": {"type": "string"},
            "feature_group": {"type": "string"},
            "state": state,
            "incremental": {"type": "boolean"},
            "entities_done": count("Entities computed (or failed) so far"),
            "entities_total": count("Entities the job covers"),
            "rows_written": count("Feature rows written"),
            "errors": {"type": "array", "maxItems": 51, "items": {"type": "string"}, "description": "Per-entity errors; after 50, one \"further errors omitted\""},
            "created_at": timestamp("When the job was created"),
            "started_at": timestamp("Omitted until started"),
            "finished_at": timestamp("Omitted until finished"),
            "transform": {"type": "string", "description": "name@version of the transform that ran"},
            "sources_ingested_until": timestamp("Every source row ingested up to this time was visible to the job; the next incremental run looks for rows ingested after it"),
            "hosts": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "Entities computed per host; omitted when none"}}),
                Some(job_example()),
            ),
        ),
        (
            "JobList",
            object(
                &["jobs"],
                json!({"jobs": {"type": "array", "items": schema_ref("Job")}}),
                Some(json!({"jobs": [job_example()]})),
            ),
        ),
    ]
}
