//! The served OpenAPI document describes endpoints that exist, on both
//! backend pairs (the probes reach the stores).

use reqwest::{Method, StatusCode};
use serde_json::Value;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(every_documented_operation_is_served_by_the_router);

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
            if method == "parameters" {
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
