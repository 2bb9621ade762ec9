//! The audit trail (`GET /v1/audit`): every registry and plugin change made
//! through the API, newest first, with the token's role and id as actor and
//! never the token itself; admins only. Runs on both backend pairs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(registry_and_plugin_changes_are_audited_with_their_actor_newest_first,);

const ADMIN: &str = "admin-token-for-audit";
const READER: &str = "read-token-for-audit";

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn registry_and_plugin_changes_are_audited_with_their_actor_newest_first(backend: Backend) {
    let app = TestApp::spawn_on(backend, |c| {
        c.tokens = vec![("admin".into(), ADMIN.into()), ("read".into(), READER.into())];
    })
    .await;
    use reqwest::Method as M;
    let (status, _) = call(&app, M::PUT, "/v1/entities/ticker", ADMIN, Some(json!({"join_keys": ["ticker"]}))).await;
    assert_eq!(status, StatusCode::OK);
    let group =
        json!({"entity": "ticker", "features": [{"name": "x", "type": "float64"}], "producer": {"kind": "push"}});
    let (status, _) = call(&app, M::PUT, "/v1/feature-groups/profile", ADMIN, Some(group)).await;
    assert_eq!(status, StatusCode::OK);
    let publish = app
        .client
        .put(app.url("/v1/transforms/indicators/versions/1.0.0"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/wasm")
        .body(wafer_host::bundled::INDICATORS.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), StatusCode::CREATED);
    let (status, _) =
        call(&app, M::POST, "/v1/transforms/indicators/activate", ADMIN, Some(json!({"version": "1.0.0"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, M::POST, "/v1/transforms/indicators/disable", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, M::DELETE, "/v1/feature-groups/profile", ADMIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Not changes: a failed change, a read, and publishing the same bytes again.
    let (status, _) = call(&app, M::DELETE, "/v1/feature-groups/nope", ADMIN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, M::GET, "/v1/entities/ticker", READER, None).await;
    assert_eq!(status, StatusCode::OK);

    // Readers may not see the trail, and nobody without a token.
    let (status, body) = call(&app, M::GET, "/v1/audit", READER, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = call(&app, M::GET, "/v1/audit", "wrong", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, trail) = call(&app, M::GET, "/v1/audit?limit=50", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{trail}");
    let entries = trail.as_array().expect("a list");
    let actions: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap())).collect();
    assert_eq!(
        actions,
        [
            ("feature_group.delete", "profile"),
            ("transform.disable", "indicators"),
            ("transform.activate", "indicators"),
            ("transform.publish", "indicators@1.0.0"),
            ("feature_group.put", "profile"),
            ("entity.put", "ticker"),
        ]
    );
    let text = trail.to_string();
    assert!(!text.contains(ADMIN), "the token itself is never recorded");
    for e in entries {
        let actor = e["actor"].as_str().unwrap();
        assert!(actor.starts_with("admin:") && actor.len() == 14, "{e}");
        assert!(wafer_host::model::Timestamp::parse(e["at"].as_str().unwrap()).is_ok(), "{e}");
    }
    assert_eq!(entries[2]["details"]["active_version"], json!("1.0.0"), "{}", entries[2]);
    assert_eq!(entries[1]["details"]["status"], json!("disabled"), "{}", entries[1]);
    assert_eq!(entries[4]["details"]["definition"]["features"][0]["name"], json!("x"), "{}", entries[4]);
    assert_eq!(entries[3]["details"]["sha256"].as_str().map(str::len), Some(64), "{}", entries[3]);

    let (_, newest) = call(&app, M::GET, "/v1/audit?limit=1", ADMIN, None).await;
    assert_eq!(newest.as_array().map(Vec::len), Some(1));
    let (status, _) = call(&app, M::GET, "/v1/audit?limit=many", ADMIN, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Without tokens (loopback only) changes are still recorded, as anonymous.
#[tokio::test]
async fn changes_without_tokens_are_recorded_as_anonymous() {
    let app = TestApp::spawn().await;
    let (status, _) = app.put_json("/v1/entities/user", &json!({"join_keys": ["user_id"]})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, trail) = app.get("/v1/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trail[0]["actor"], json!("anonymous"), "{trail}");
    assert_eq!(trail[0]["action"], json!("entity.put"), "{trail}");
}
