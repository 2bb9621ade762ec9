//! The served OpenAPI document describes the API as it is, on both backend
//! pairs: every documented operation is routed, every JSON request example
//! is read as a well-formed request, and the answers of a server with the
//! seed catalog fit the documented schemas, key for key.

// The document's schema checker, shared with its unit tests in the host
// (whose openapi module is private, so it is included by path).
#[path = "../../host/src/api/openapi/check.rs"]
mod check;

use check::{Direction, resolve, violations};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    every_documented_operation_is_served_by_the_router,
    every_json_request_example_is_read_as_a_well_formed_request,
    the_seeded_servers_answers_fit_the_documented_schemas
);

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

async fn every_documented_operation_is_served_by_the_router(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], Value::from("3.1.0"));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "only {} paths documented", paths.len());
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in paths {
        let concrete =
            path.replace("{name}", "nothing-here").replace("{version}", "9.9.9").replace("{id}", "nothing-here");
        for (method, op) in item.as_object().expect("path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let m: Method = method.to_uppercase().parse().expect("an HTTP method");
            assert!(op["responses"].is_object(), "{method} {path} documents no responses");
            let resp = client
                .request(m, app.url(&concrete))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
            assert!(!text.contains("no such endpoint"), "{method} {path} is documented but not routed: {text}");
            checked += 1;
        }
    }
    assert!(checked >= 25, "checked only {checked} operations");
}

/// A media type's example: its own, the first of its `examples`, or its
/// schema component's.
fn example_of<'a>(doc: &'a Value, media: &'a Value) -> Option<&'a Value> {
    let component = media["schema"]["$ref"].as_str().and_then(|r| resolve(doc, r));
    media
        .get("example")
        .or_else(|| media["examples"].as_object().and_then(|e| e.values().find_map(|x| x.get("value"))))
        .or_else(|| component.and_then(|c| c.get("example")))
}

/// `path` with its parameters named after the seeded catalog: the
/// `indicators` transform, the `prices` source, the `technical` group and
/// the `ticker` entity; a `PUT` of a registry object gets a new name so
/// the seeded ones stay as they are.
fn concrete(path: &str, method: &str) -> String {
    let name = if path.starts_with("/v1/transforms/") {
        "indicators"
    } else if path == "/v1/sources/{name}/rows" {
        "prices"
    } else if method == "put" {
        "openapi_example"
    } else if path.starts_with("/v1/feature-groups/") {
        "technical"
    } else if path.starts_with("/v1/sources/") {
        "prices"
    } else if path.starts_with("/v1/entities/") {
        "ticker"
    } else {
        "openapi_example"
    };
    let mut out = path.replace("{name}", name).replace("{version}", "1.0.0");
    // Parameters of parts added later: any harmless name.
    while let Some(start) = out.find('{') {
        let end = out[start..].find('}').map_or(out.len(), |e| start + e + 1);
        out.replace_range(start..end, "openapi_example");
    }
    out
}

/// Operations whose documented example must not only parse but succeed on
/// the seeded server.
const MUST_SUCCEED: [(&str, &str); 11] = [
    ("put", "/v1/entities/{name}"),
    ("put", "/v1/sources/{name}"),
    ("put", "/v1/feature-groups/{name}"),
    ("post", "/v1/sources/{name}/rows"),
    ("post", "/v1/features/online"),
    ("post", "/v1/features/historical"),
    ("post", "/v1/transforms/{name}/activate"),
    ("put", "/v1/transforms/{name}/limits"),
    ("post", "/v1/transforms/{name}/invoke"),
    ("post", "/v1/materialize"),
    ("post", "/v1/features/write"),
];

async fn every_json_request_example_is_read_as_a_well_formed_request(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.setup_technical(&["AAPL"], 60).await;
    // The example of POST /v1/features/write writes the contract's
    // `valuation` group, a push group here so the example can succeed.
    let valuation = json!({"entity": "ticker", "features": [{"name": "pe_ratio", "type": "float64"}, {"name": "market_cap", "type": "float64"}],
                           "producer": {"kind": "push"}});
    let (status, body) = app.put_json("/v1/feature-groups/valuation", &valuation).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, doc) = app.get("/openapi.json").await;

    let (mut sent, mut failures) = (Vec::new(), Vec::new());
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let at = format!("{} {path}", method.to_uppercase());
            // Destructive, and no DELETE takes a body: nothing to send.
            if method == "delete" {
                continue;
            }
            // Operations without a JSON body (wasm uploads, CSV-only
            // bodies, none at all) have no JSON example to send.
            let Some(media) = op["requestBody"]["content"].get("application/json") else { continue };
            let example = example_of(&doc, media).unwrap_or_else(|| panic!("{at}: no JSON request example"));
            for v in violations(&doc, &media["schema"], example, Direction::Request) {
                failures.push(format!("{at}: the served example does not fit the served schema: {v}"));
            }
            let m: Method = method.to_uppercase().parse().expect("an HTTP method");
            let resp =
                app.client.request(m, app.url(&concrete(path, method))).json(example).send().await.expect("request");
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let code =
                serde_json::from_str::<Value>(&text).ok().and_then(|b| b["error"]["code"].as_str().map(String::from));
            // Our envelope names the code; the Feast endpoints answer in
            // Feast's own error shape, with the same parser messages.
            let malformed = matches!(code.as_deref(), Some("invalid_json" | "unsupported_media_type"))
                || text.contains("malformed JSON")
                || text.contains("invalid request body");
            let refused =
                [StatusCode::BAD_REQUEST, StatusCode::UNSUPPORTED_MEDIA_TYPE, StatusCode::UNPROCESSABLE_ENTITY];
            if (refused.contains(&status) && malformed) || status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                failures.push(format!("{at}: the example {example} was refused as malformed: {status} {text}"));
            } else if MUST_SUCCEED.contains(&(method.as_str(), path.as_str())) && !status.is_success() {
                failures.push(format!("{at}: the example {example} failed on the seeded server: {status} {text}"));
            }
            sent.push((method.clone(), path.clone()));
        }
    }
    assert!(failures.is_empty(), "request examples:\n  {}", failures.join("\n  "));
    for (method, path) in MUST_SUCCEED {
        assert!(sent.contains(&(method.to_string(), path.to_string())), "{method} {path}: no JSON example was sent");
    }
    assert!(sent.len() >= 14, "sent only {} examples: {sent:?}", sent.len());
}

/// The documented schema of `method path`'s `status` JSON answer.
fn answer_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let schema = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} documents no JSON {status} answer");
    schema
}

/// Every key of `answer`, at every level, is a documented property (the
/// checker refuses keys an object schema does not list), every required one
/// is there, and every value has its documented type.
fn assert_fits(doc: &Value, method: &str, path: &str, status: &str, answer: &Value) {
    let schema = answer_schema(doc, method, path, status);
    let problems = violations(doc, schema, answer, Direction::Response);
    assert!(
        problems.is_empty(),
        "{} {path} {status}: the answer does not fit the documented schema:\n  {}\nanswer: {answer}",
        method.to_uppercase(),
        problems.join("\n  ")
    );
}

async fn the_seeded_servers_answers_fit_the_documented_schemas(backend: Backend) {
    let app = TestApp::spawn_on(backend, |config| {
        let briefing = wafer_host::service::enrich::TaskConfig {
            enabled: true,
            features: vec!["technical:rsi_14".into(), "technical:sma_20".into()],
            freshness_threshold_seconds: 86_400,
            description: "Momentum of one ticker".into(),
        };
        config.serving.enrichment.tasks.insert("briefing".into(), briefing);
    })
    .await;
    let prices = app.setup_technical(&["AAPL"], 60).await;
    let (_, doc) = app.get("/openapi.json").await;

    let job = app.materialize_and_wait("technical").await;
    assert_fits(&doc, "post", "/v1/materialize", "200", &job);
    let (status, started) = app.post_json("/v1/materialize", &json!({"feature_group": "technical"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_fits(&doc, "post", "/v1/materialize", "202", &started);

    let job_path = format!("/v1/jobs/{}", job["id"].as_str().expect("job id"));
    let gets = [
        ("/healthz", "/healthz".to_string()),
        ("/readyz", "/readyz".to_string()),
        ("/openapi.json", "/openapi.json".to_string()),
        ("/v1/entities", "/v1/entities".to_string()),
        ("/v1/entities/{name}", "/v1/entities/ticker".to_string()),
        ("/v1/sources", "/v1/sources".to_string()),
        ("/v1/sources/{name}", "/v1/sources/prices".to_string()),
        ("/v1/feature-groups", "/v1/feature-groups".to_string()),
        ("/v1/feature-groups/{name}", "/v1/feature-groups/technical".to_string()),
        ("/v1/feature-groups/{name}/statistics", "/v1/feature-groups/technical/statistics".to_string()),
        ("/v1/freshness", "/v1/freshness".to_string()),
        ("/v1/transforms", "/v1/transforms".to_string()),
        ("/v1/transforms/{name}", "/v1/transforms/indicators".to_string()),
        ("/v1/transforms/{name}/versions/{version}", "/v1/transforms/indicators/versions/1.0.0".to_string()),
        ("/v1/jobs", "/v1/jobs".to_string()),
        ("/v1/jobs/{id}", job_path),
        ("/v1/audit", "/v1/audit".to_string()),
        ("/v1/enrich/tasks", "/v1/enrich/tasks".to_string()),
    ];
    for (path, url) in gets {
        let (status, answer) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "GET {url}: {answer}");
        assert_fits(&doc, "get", path, "200", &answer);
    }

    let read = json!({"entities": [{"ticker": "AAPL"}, {"ticker": "NOPE"}], "feature_groups": ["technical"], "include_provenance": true});
    let (status, online) = app.post_json("/v1/features/online", &read).await;
    assert_eq!(status, StatusCode::OK, "{online}");
    assert_fits(&doc, "post", "/v1/features/online", "200", &online);
    assert_eq!(online["results"][0]["features"]["technical:sma_20"]["status"], "fresh", "{online}");

    let rows = json!({"entity_rows": [{"ticker": "AAPL", "event_timestamp": prices.end.to_rfc3339(), "label": 1}],
                      "features": ["technical:sma_20"], "include_provenance": true});
    let (status, training) = app.post_json("/v1/features/historical", &rows).await;
    assert_eq!(status, StatusCode::OK, "{training}");
    assert_fits(&doc, "post", "/v1/features/historical", "200", &training);

    let closes: Vec<Value> = prices.closes("AAPL").into_iter().map(Value::from).collect();
    let timestamps: Vec<Value> = prices.bars["AAPL"].iter().map(|b| Value::from(b.ts.to_rfc3339())).collect();
    let invoke =
        json!({"entity": "AAPL", "sources": {"prices": {"timestamps": timestamps, "columns": {"close": closes}}}});
    let (status, output) = app.post_json("/v1/transforms/indicators/invoke", &invoke).await;
    assert_eq!(status, StatusCode::OK, "{output}");
    assert_fits(&doc, "post", "/v1/transforms/{name}/invoke", "200", &output);

    let (status, limited) = app.put_json("/v1/transforms/indicators/limits", &json!({"call_timeout_ms": 1500})).await;
    assert_eq!(status, StatusCode::OK, "{limited}");
    assert_fits(&doc, "put", "/v1/transforms/{name}/limits", "200", &limited);

    let (status, published) =
        app.put_bytes("/v1/transforms/indicators/versions/1.0.0", wafer_host::bundled::INDICATORS).await;
    assert_eq!(status, StatusCode::OK, "the same bytes again: {published}");
    assert_fits(&doc, "put", "/v1/transforms/{name}/versions/{version}", "200", &published);

    let ask = json!({"prompt": "Buy?", "task_type": "briefing", "entities": {"ticker": "AAPL"}});
    let (status, enriched) = app.post_json("/v1/enrich", &ask).await;
    assert_eq!(status, StatusCode::OK, "{enriched}");
    assert_eq!(enriched["features_available"], json!(true), "{enriched}");
    assert_fits(&doc, "post", "/v1/enrich", "200", &enriched);
    let (status, untouched) = app.post_json("/v1/enrich", &json!({"prompt": "Hi", "task_type": "haiku"})).await;
    assert_eq!(status, StatusCode::OK, "{untouched}");
    assert_fits(&doc, "post", "/v1/enrich", "200", &untouched);
    let rating = json!({"enrichment_id": enriched["enrichment_id"], "quality": 0.9});
    let (status, rated) = app.post_json("/v1/enrich/feedback", &rating).await;
    assert_eq!(status, StatusCode::OK, "{rated}");
    assert_fits(&doc, "post", "/v1/enrich/feedback", "200", &rated);
    let (status, stats) = app.get("/v1/enrich/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_fits(&doc, "get", "/v1/enrich/stats", "200", &stats);

    let (status, error) = app.get("/v1/feature-groups/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_fits(&doc, "get", "/v1/feature-groups/{name}", "4XX", &error);
}
