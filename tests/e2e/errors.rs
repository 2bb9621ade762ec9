//! What clients see when things go wrong: the error envelope with its
//! stable codes, for bad requests and for transforms that misbehave. A
//! misbehaving transform must fail only its own call and leave the server
//! serving. Every test runs on both backend pairs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use wafer_host::demo::technical_group_json;
use wafer_tests::guests::{BLOAT, EVIL, evil_input};
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    malformed_json_is_rejected_with_invalid_json_and_where_it_broke,
    unknown_feature_refs_are_rejected_listing_what_the_group_offers,
    unknown_groups_are_a_bad_ref_in_features_and_not_found_elsewhere,
    publishing_invalid_wasm_is_rejected_with_reason,
    publishing_a_component_describing_200000_outputs_is_refused_naming_the_cap_and_the_server_keeps_serving,
    publishing_under_a_version_that_is_not_semantic_is_rejected,
    csv_with_an_unknown_column_is_rejected_naming_the_column,
    json_rows_with_a_wrongly_typed_field_are_rejected_naming_it_and_nothing_is_written,
    a_trapping_transform_fails_its_call_with_transform_trapped_and_the_server_keeps_serving,
    a_looping_transform_is_stopped_at_its_deadline_with_transform_timeout,
    an_allocating_transform_hits_its_memory_cap_with_transform_memory_limit,
    a_transform_that_returns_an_error_is_reported_as_transform_failed_with_its_message,
    online_reads_keep_succeeding_while_transforms_loop_and_allocate,
    a_materialize_job_over_a_trapping_transform_ends_failed_with_the_error,
    malformed_query_parameters_are_rejected_as_json_naming_the_parameter,
    malformed_path_parameters_are_rejected_as_json_naming_the_parameter,
    oversized_raw_bodies_are_refused_as_json_with_payload_too_large,
    unknown_paths_and_unserved_methods_answer_the_json_envelope,
);

/// Short limits so the sandbox tests answer quickly.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
const MEMORY_BYTES: usize = 32 << 20;

#[track_caller]
fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], json!(want_code), "{body}");
    assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty(), "no message: {body}");
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

/// Sends `req` and returns the status, the content type and the body as
/// JSON (`Value::Null` with the text when it is not JSON, for the message).
async fn send_raw(req: reqwest::RequestBuilder) -> (StatusCode, String, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_string();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"not_json": text}));
    (status, content_type, body)
}

/// The envelope with `code` and `status`, as `application/json`.
#[track_caller]
fn assert_envelope(at: &str, (status, content_type, body): &(StatusCode, String, Value), want: StatusCode, code: &str) {
    assert_eq!(*status, want, "{at}: {content_type} {body}");
    assert_eq!(content_type, "application/json", "{at}: {status} {body}");
    assert_eq!(body["error"]["code"], json!(code), "{at}: {body}");
    assert!(!message(body).is_empty(), "{at}: no message: {body}");
    assert!(body["error"]["details"].is_object(), "{at}: no details: {body}");
}

async fn malformed_query_parameters_are_rejected_as_json_naming_the_parameter(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.setup_technical(&["AAPL"], 30).await;
    let materialize = json!({"feature_group": "technical"});
    let cases = [
        ("limit", app.client.get(app.url("/v1/jobs?limit=-1"))),
        ("limit", app.client.get(app.url("/v1/jobs?limit=lots"))),
        ("limit", app.client.get(app.url("/v1/jobs?limit=99999999999"))),
        ("wait", app.client.post(app.url("/v1/materialize?wait=null")).json(&materialize)),
        ("wait", app.client.post(app.url("/v1/materialize?wait=maybe")).json(&materialize)),
        ("limit", app.client.get(app.url("/v1/audit?limit=ten"))),
        (
            "created_cutoff",
            app.client
                .post(app.url("/v1/features/historical?features=technical:sma_20&created_cutoff=sometimes"))
                .header("content-type", "text/csv")
                .body("ticker,event_timestamp\nAAPL,2024-05-01T00:00:00Z\n"),
        ),
    ];
    for (parameter, req) in cases {
        let at = format!("{req:?}");
        let answer = send_raw(req).await;
        assert_envelope(&at, &answer, StatusCode::BAD_REQUEST, "invalid_request");
        let body = &answer.2;
        assert_eq!(body["error"]["details"], json!({"in": "query", "parameter": parameter}), "{at}: {body}");
        assert!(message(body).contains(parameter), "{at}: the message does not name {parameter}: {body}");
    }

    // A refused unknown parameter has no value to blame, but is named.
    let answer = send_raw(app.client.get(app.url("/v1/audit?limits=10"))).await;
    assert_envelope("GET /v1/audit?limits=10", &answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(message(&answer.2).contains("limits"), "{}", answer.2);

    // Nothing was started by the refused materializations.
    let (status, jobs) = app.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::OK, "{jobs}");
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
}

async fn malformed_path_parameters_are_rejected_as_json_naming_the_parameter(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    // %FF and %C3%28 decode to bytes that are not UTF-8.
    let cases = [
        ("name", app.client.get(app.url("/v1/entities/%FF"))),
        ("name", app.client.delete(app.url("/v1/sources/%C3%28"))),
        ("name", app.client.get(app.url("/v1/feature-groups/%FF/statistics"))),
        ("id", app.client.get(app.url("/v1/jobs/job-%FF"))),
        ("version", app.client.get(app.url("/v1/transforms/indicators/versions/1.0.%FF"))),
        ("name", app.client.post(app.url("/v1/transforms/%FF/rollback"))),
        (
            "name",
            app.client
                .put(app.url("/v1/transforms/%FF/versions/1.0.0"))
                .header("content-type", "application/wasm")
                .body(wafer_host::bundled::INDICATORS),
        ),
        (
            "name",
            app.client
                .post(app.url("/v1/sources/%FF/rows"))
                .header("content-type", "text/csv")
                .body("ticker,ts,close\nAAPL,2024-05-01T00:00:00Z,1.0\n"),
        ),
    ];
    for (parameter, req) in cases {
        let at = format!("{req:?}");
        let answer = send_raw(req).await;
        assert_envelope(&at, &answer, StatusCode::BAD_REQUEST, "invalid_request");
        let body = &answer.2;
        assert_eq!(body["error"]["details"], json!({"in": "path", "parameter": parameter}), "{at}: {body}");
        assert!(message(body).contains(parameter), "{at}: the message does not name {parameter}: {body}");
    }

    // A well-formed path that is not a valid version is the service's
    // invalid_request, naming the version.
    let answer = send_raw(app.client.get(app.url("/v1/transforms/indicators/versions/not.a.version"))).await;
    assert_eq!(answer.1, "application/json", "{}", answer.2);
    assert!(answer.0.is_client_error(), "{:?}", answer);
}

async fn oversized_raw_bodies_are_refused_as_json_with_payload_too_large(backend: Backend) {
    let app = TestApp::spawn_on(backend, |config| config.max_body_bytes = 4 << 10).await;
    let big_csv = format!("ticker,ts,close\n{}", "AAPL,2024-05-01T00:00:00Z,1.0\n".repeat(400));
    let cases = [
        app.client.post(app.url("/v1/sources/prices/rows")).header("content-type", "text/csv").body(big_csv.clone()),
        app.client
            .put(app.url("/v1/transforms/indicators/versions/2.0.0"))
            .header("content-type", "application/wasm")
            .body(wafer_host::bundled::INDICATORS),
        app.client
            .post(app.url("/v1/features/historical?features=technical:sma_20"))
            .header("content-type", "text/csv")
            .body(big_csv.replace("ts,close", "event_timestamp,x")),
        app.client.post(app.url("/v1/features/online")).json(&json!({"entities": [{"ticker": "A".repeat(8 << 10)}]})),
        // Far over the limit and over the kernel's socket buffers: the
        // server must read it away before closing, or the client's socket
        // is reset before it reads the answer.
        app.client
            .post(app.url("/v1/sources/prices/rows"))
            .header("content-type", "text/csv")
            .body(big_csv.repeat(300)),
    ];
    for req in cases {
        let at = format!("{req:?}");
        let answer = send_raw(req).await;
        assert_envelope(&at, &answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
}

async fn unknown_paths_and_unserved_methods_answer_the_json_envelope(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let answer = send_raw(app.client.get(app.url("/v1/nothing-here"))).await;
    assert_envelope("GET /v1/nothing-here", &answer, StatusCode::NOT_FOUND, "not_found");
    let answer = send_raw(app.client.get(app.url("/v1/entities/ticker/extra/segments"))).await;
    assert_envelope("GET /v1/entities/ticker/extra/segments", &answer, StatusCode::NOT_FOUND, "not_found");

    for (method, path) in [("DELETE", "/v1/jobs"), ("PATCH", "/v1/entities/ticker"), ("GET", "/v1/materialize")] {
        let req = app.client.request(method.parse().expect("method"), app.url(path));
        let resp = req.send().await.expect("request");
        let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let status = resp.status();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_envelope(
            &format!("{method} {path}"),
            &(status, content_type, body),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        );
        assert!(!allow.is_empty(), "{method} {path}: a 405 names the methods served in Allow");
    }
}

async fn malformed_json_is_rejected_with_invalid_json_and_where_it_broke(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let (status, body) = app.post_raw("/v1/features/online", "application/json", "{\"entities\": [").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(message(&body).contains("line 1"), "no position in {body}");

    let (status, body) = app.post_raw("/v1/sources/prices/rows", "application/json", "{rows: }").await;
    assert!(status.is_client_error(), "{status} {body}");

    let put = app
        .client
        .put(app.url("/v1/entities/ticker"))
        .header("content-type", "application/json")
        .body("{\"join_keys\": [\"ticker\"")
        .send()
        .await
        .expect("request");
    let status = put.status();
    let body: Value = put.json().await.expect("JSON error body");
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_json");

    // Well-formed JSON of the wrong shape uses the same code.
    let (status, body) = app.put_json("/v1/entities/ticker", &json!({"join_keys": "ticker"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_json");
}

async fn unknown_feature_refs_are_rejected_listing_what_the_group_offers(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;

    let request = json!({"entities": [{"ticker": "AAPL"}], "features": ["technical:sma_20", "technical:sma_21"]});
    let (status, body) = app.post_json("/v1/features/online", &request).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "unknown_feature");
    assert_eq!(body["error"]["details"]["unknown"], json!(["technical:sma_21"]), "{body}");
    let available: BTreeSet<String> = body["error"]["details"]["available"]
        .as_array()
        .expect("details.available")
        .iter()
        .map(|v| v.as_str().expect("ref").to_string())
        .collect();
    let declared: BTreeSet<String> = technical_group_json()["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| format!("technical:{}", f["name"].as_str().expect("name")))
        .collect();
    assert_eq!(available, declared);
    assert!(message(&body).contains("technical:sma_21"), "{body}");
}

async fn unknown_groups_are_a_bad_ref_in_features_and_not_found_elsewhere(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;

    // As a ref, an unknown group is an unknown feature, with what exists.
    let request = json!({"entities": [{"ticker": "AAPL"}], "features": ["fundamentals:pe_ratio"]});
    let (status, body) = app.post_json("/v1/features/online", &request).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "unknown_feature");
    let available = body["error"]["details"]["available"].as_array().expect("available");
    assert!(available.contains(&json!("technical:sma_20")), "{body}");

    // Named as a group, it is a missing resource.
    let request = json!({"entities": [{"ticker": "AAPL"}], "feature_groups": ["fundamentals"]});
    let (status, body) = app.post_json("/v1/features/online", &request).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert!(message(&body).contains("fundamentals"), "{body}");

    let (status, body) = app.post_json("/v1/materialize", &json!({"feature_group": "fundamentals"})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app.get("/v1/feature-groups/fundamentals").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // A ref that is not group:feature at all.
    let request = json!({"entities": [{"ticker": "AAPL"}], "features": ["sma_20"]});
    let (status, body) = app.post_json("/v1/features/online", &request).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
}

async fn publishing_invalid_wasm_is_rejected_with_reason(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let (status, body) = app.put_bytes("/v1/transforms/junk/versions/1.0.0", b"this is not wasm at all").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_component");

    // A valid core module is still not a component.
    let (status, body) = app.put_bytes("/v1/transforms/junk/versions/1.0.0", b"\0asm\x01\0\0\0").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_component");

    let (status, body) = app.put_bytes("/v1/transforms/junk/versions/1.0.0", b"").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_component");

    // Nothing was stored.
    let (status, body) = app.get("/v1/transforms/junk").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

async fn publishing_a_component_describing_200000_outputs_is_refused_naming_the_cap_and_the_server_keeps_serving(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let (status, body) = app.put_bytes("/v1/transforms/bloat/versions/0.1.0", BLOAT).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_component");
    // The size estimate is checked first, so it is the cap named.
    assert!(message(&body).contains("describe is about"), "{body}");
    assert!(message(&body).contains("bytes, over the cap of 262144"), "{body}");

    // Nothing was stored.
    let (status, body) = app.get("/v1/transforms/bloat").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // The server keeps serving: health, and a sane component publishes and runs.
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    let (status, body) = app.invoke_evil("ok").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["columns"]["x"], json!([3.0, -4.0, 8.5]), "{body}");
}

async fn publishing_under_a_version_that_is_not_semantic_is_rejected(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    for version in ["1.0", "v1.0.0", "latest", "1.0.0.0"] {
        let (status, body) = app
            .put_bytes(&format!("/v1/transforms/indicators/versions/{version}"), wafer_host::bundled::INDICATORS)
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
        assert!(message(&body).contains(version), "{version}: {body}");
    }
    let (status, body) = app.get("/v1/transforms").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["transforms"], json!([]), "{body}");
}

async fn csv_with_an_unknown_column_is_rejected_naming_the_column(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;
    let csv = "ticker,ts,close,colour\nAAPL,2024-05-01T00:00:00Z,190.5,red\n";
    let (status, body) = app.post_csv("/v1/sources/prices/rows", csv).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(message(&body).contains("colour"), "{body}");

    let csv = "ticker,ts,close\nAAPL,2024-05-01T00:00:00Z,cheap\n";
    let (status, body) = app.post_csv("/v1/sources/prices/rows", csv).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(message(&body).contains("close") && message(&body).contains("row 1"), "{body}");
}

async fn json_rows_with_a_wrongly_typed_field_are_rejected_naming_it_and_nothing_is_written(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;
    app.ingest_prices(&["AAPL"], 30).await;

    let rows = json!({"rows": [
        {"ticker": "NEWCO", "ts": "2024-05-01T00:00:00Z", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 10},
        {"ticker": "NEWCO", "ts": "2024-05-02T00:00:00Z", "open": 1.0, "high": 1.0, "low": 1.0, "close": "one", "volume": 10}
    ]});
    let (status, body) = app.post_json("/v1/sources/prices/rows", &rows).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(message(&body).contains("row 1") && message(&body).contains("close"), "{body}");

    // The valid first row was not written either: only AAPL has prices.
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["entities_total"], json!(1), "NEWCO has rows: {job}");
}

/// A server with short limits, the evil guest published as `evil`, and the
/// `technical` group materialized for AAPL so reads have something to serve.
async fn sandbox_app(backend: Backend) -> TestApp {
    let app = TestApp::spawn_on(backend, |config| {
        config.limits.call_timeout = CALL_TIMEOUT;
        config.limits.memory_bytes = MEMORY_BYTES;
    })
    .await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    app.setup_technical(&["AAPL"], 60).await;
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    app
}

fn fresh_read() -> Value {
    json!({"entities": [{"ticker": "AAPL"}], "features": ["technical:sma_20", "technical:rsi_14"], "fallback": "none"})
}

/// Health answers, a well-behaved call of the same module works, and online
/// reads are served.
async fn assert_still_serving(app: &TestApp) {
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = app.invoke_evil("ok").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["columns"]["x"], json!([3.0, -4.0, 8.5]), "{body}");
    assert_eq!(body["timestamps"], evil_input("ok")["sources"]["s"]["timestamps"], "{body}");
    let (status, body) = app.post_json("/v1/features/online", &fresh_read()).await;
    assert_read_served(status, &body);
}

#[track_caller]
fn assert_read_served(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::OK, "{body}");
    for (name, v) in body["results"][0]["features"].as_object().expect("features") {
        assert_eq!(v["status"], json!("fresh"), "{name}: {v}");
        assert!(v["value"].is_f64(), "{name}: {v}");
    }
}

async fn a_trapping_transform_fails_its_call_with_transform_trapped_and_the_server_keeps_serving(backend: Backend) {
    let app = sandbox_app(backend).await;
    let (status, body) = app.invoke_evil("trap").await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR, "transform_trapped");
    assert!(message(&body).contains("evil"), "the message names the transform: {body}");
    assert_still_serving(&app).await;

    let (_, t) = app.get("/v1/transforms/evil").await;
    let stats = &t["versions"][0]["stats"];
    assert!(stats["traps"].as_u64().unwrap_or(0) >= 1, "{t}");
    assert!(stats["errors"].as_u64().unwrap_or(0) >= 1, "{t}");
}

async fn a_looping_transform_is_stopped_at_its_deadline_with_transform_timeout(backend: Backend) {
    let app = sandbox_app(backend).await;
    let started = Instant::now();
    let (status, body) = app.invoke_evil("loop").await;
    let took = started.elapsed();
    assert_error(status, &body, StatusCode::GATEWAY_TIMEOUT, "transform_timeout");
    assert!(took >= CALL_TIMEOUT, "answered before the deadline ({took:?}): {body}");
    assert!(took < Duration::from_secs(5), "took {took:?} for a {CALL_TIMEOUT:?} deadline");
    assert_still_serving(&app).await;
}

async fn an_allocating_transform_hits_its_memory_cap_with_transform_memory_limit(backend: Backend) {
    let app = sandbox_app(backend).await;
    let (status, body) = app.invoke_evil("alloc").await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR, "transform_memory_limit");
    assert_still_serving(&app).await;
}

async fn a_transform_that_returns_an_error_is_reported_as_transform_failed_with_its_message(backend: Backend) {
    let app = sandbox_app(backend).await;
    let (status, body) = app.invoke_evil("error").await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "transform_failed");
    // The evil guest's documented refusal.
    assert!(message(&body).contains("refusing on purpose"), "{body}");
    assert_still_serving(&app).await;
}

async fn online_reads_keep_succeeding_while_transforms_loop_and_allocate(backend: Backend) {
    let app = std::sync::Arc::new(sandbox_app(backend).await);
    let mut misbehaving = tokio::task::JoinSet::new();
    for mode in ["loop", "alloc", "loop"] {
        let app = app.clone();
        misbehaving.spawn(async move { (mode, app.invoke_evil(mode).await) });
    }

    let started = Instant::now();
    let mut reads = 0;
    // Keep reading for as long as a looping call may run, and then some.
    while started.elapsed() < CALL_TIMEOUT * 2 || reads < 50 {
        let (status, body) = app.post_json("/v1/features/online", &fresh_read()).await;
        assert_read_served(status, &body);
        reads += 1;
    }
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let app = app.clone();
        burst.spawn(async move { app.post_json("/v1/features/online", &fresh_read()).await });
    }
    while let Some(done) = burst.join_next().await {
        let (status, body) = done.expect("read task");
        assert_read_served(status, &body);
    }

    while let Some(done) = misbehaving.join_next().await {
        let (mode, (status, body)) = done.expect("invoke task");
        let code = if mode == "loop" { "transform_timeout" } else { "transform_memory_limit" };
        assert_eq!(body["error"]["code"], json!(code), "{mode}: {status} {body}");
    }
    assert_still_serving(&app).await;
}

async fn a_materialize_job_over_a_trapping_transform_ends_failed_with_the_error(backend: Backend) {
    let app = sandbox_app(backend).await;
    let (status, body) = app
        .put_json(
            "/v1/sources/xs",
            &json!({"entity": "ticker", "timestamp_field": "ts", "fields": [{"name": "x", "type": "float64"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = json!({
        "entity": "ticker",
        "features": [{"name": "x", "type": "float64"}],
        "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
        "producer": {"kind": "batch", "transform": "evil", "source": "xs", "lookback": 10, "params": {"mode": "trap"}}
    });
    let (status, body) = app.put_json("/v1/feature-groups/doomed", &group).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let csv =
        "ticker,ts,x\nAAPL,2024-05-01T00:00:00Z,1.0\nAAPL,2024-05-02T00:00:00Z,2.0\nMSFT,2024-05-01T00:00:00Z,3.0\n";
    let (status, body) = app.post_csv("/v1/sources/xs/rows", csv).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let job = app.materialize_and_wait("doomed").await;
    assert_eq!(job["state"], json!("failed"), "{job}");
    assert_eq!(job["rows_written"], json!(0), "{job}");
    let errors = job["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "one error per entity: {job}");
    for ticker in ["AAPL", "MSFT"] {
        assert!(
            errors.iter().any(|e| e.as_str().is_some_and(|e| e.contains(ticker) && e.contains("trap"))),
            "no trap error for {ticker}: {job}"
        );
    }
    let (status, polled) = app.get(&format!("/v1/jobs/{}", job["id"].as_str().expect("id"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(polled["state"], json!("failed"), "{polled}");

    let (status, body) = app.read_groups(&["AAPL"], &["doomed"], "none").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["features"]["doomed:x"]["status"], json!("missing"), "{body}");
    assert_still_serving(&app).await;
}
