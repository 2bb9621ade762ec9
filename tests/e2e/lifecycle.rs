//! Plugin lifecycle beyond publish and activate: deleting versions, refused
//! while a feature group pins one or it is active or the rollback target.
//! Runs on both backend pairs.

use reqwest::StatusCode;
use serde_json::json;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(a_version_is_deleted_only_once_nothing_pins_activates_or_rolls_back_to_it,);

async fn a_version_is_deleted_only_once_nothing_pins_activates_or_rolls_back_to_it(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.setup_technical(&["AAPL"], 60).await;
    // The same bytes under a second version: the module is shared.
    app.publish_and_activate("indicators", "1.1.0", wafer_host::bundled::INDICATORS).await;
    let (status, body) = app.put_bytes("/v1/transforms/indicators/versions/0.9.0", b"not a component").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut pinned = wafer_host::demo::technical_group_json();
    pinned["producer"]["version"] = json!("1.0.0");
    let (status, body) = app.put_json("/v1/feature-groups/technical", &pinned).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = app.delete("/v1/transforms/indicators/versions/1.0.0").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("pinned by feature group(s) technical"), "{body}");
    let (status, body) = app.delete("/v1/transforms/indicators/versions/1.1.0").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("the active version"), "{body}");

    // Unpinned, 1.0.0 is still the rollback target (it was active before 1.1.0).
    let (status, body) = app.put_json("/v1/feature-groups/technical", &wafer_host::demo::technical_group_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.delete("/v1/transforms/indicators/versions/1.0.0").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("rollback target"), "{body}");

    // Another activation moves the rollback target to 1.1.0; 1.0.0 can go.
    app.publish_and_activate("indicators", "1.2.0", wafer_host::bundled::INDICATORS).await;
    let (status, body) = app.delete("/v1/transforms/indicators/versions/1.0.0").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = app.get("/v1/transforms/indicators/versions/1.0.0").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete("/v1/transforms/indicators/versions/1.0.0").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, t) = app.get("/v1/transforms/indicators").await;
    let versions: Vec<&str> =
        t["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.1.0", "1.2.0"], "{t}");

    // The shared module is still there: the active version runs.
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["transform"], json!("indicators@1.2.0"), "{job}");
    let (_, trail) = app.get("/v1/audit?limit=1").await;
    assert_eq!(trail[0]["action"], json!("transform.delete_version"), "{trail}");
    assert_eq!(trail[0]["target"], json!("indicators@1.0.0"), "{trail}");
}
