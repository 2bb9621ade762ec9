//! Where each backend pair keeps things, checked on both pairs (the rest of
//! the behavioural suite runs on both too, through `backend_tests!`): what
//! a restarted server finds, and what deleting a group removes.
//!
//! On PostgreSQL + Redis a restarted host finds the values still in Redis
//! (online hits) and the transforms and jobs in PostgreSQL; the embedded
//! pair's in-process online store starts empty, so the offline store
//! answers and refills it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafer_tests::harness::assert_close;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    a_restarted_server_serves_the_materialized_values_from_where_its_backend_keeps_them,
    a_deleted_group_created_again_starts_empty_online_and_offline,
);

const TICKERS: [&str; 2] = ["AAPL", "MSFT"];

fn features(body: &Value, i: usize) -> &serde_json::Map<String, Value> {
    body["results"][i]["features"].as_object().expect("features object")
}

/// The app's Redis keys of group `group` (empty on the embedded pair).
async fn online_keys_of(app: &TestApp, group: &str) -> Vec<String> {
    let keys = app.online_keys().await.unwrap_or_default();
    keys.into_iter().filter(|k| k.ends_with(&format!(":{group}"))).collect()
}

async fn assert_ready(app: &TestApp) {
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], json!("ready"), "{ready}");
}

async fn a_restarted_server_serves_the_materialized_values_from_where_its_backend_keeps_them(backend: Backend) {
    let mut app = TestApp::spawn_on(backend, |_| {}).await;
    assert_ready(&app).await;
    let prices = app.setup_technical(&TICKERS, 260).await;
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["entities_done"], json!(2), "{job}");
    if backend == Backend::Production {
        assert_eq!(online_keys_of(&app, "technical").await.len(), 2, "one Redis hash per entity");
    }

    let check = |body: &Value, source: &str| {
        for (i, ticker) in TICKERS.iter().enumerate() {
            let f = features(body, i);
            assert_eq!(f.len(), 12, "{body}");
            for (name, v) in f {
                assert_eq!(v["status"], json!("fresh"), "{ticker} {name}: {v}");
                assert_eq!(v["source"], json!(source), "{ticker} {name}: {v}");
            }
            let closes = prices.closes(ticker);
            let sma20 = closes[closes.len() - 20..].iter().sum::<f64>() / 20.0;
            assert_close(f["technical:sma_20"]["value"].as_f64().unwrap(), sma20, 1e-9, "sma_20");
        }
    };
    let (status, before) = app.read_groups(&TICKERS, &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{before}");
    check(&before, "online");

    // Same data dir, or same schema and key prefix.
    app.restart().await;
    assert_ready(&app).await;
    let (_, t) = app.get("/v1/transforms/indicators").await;
    assert_eq!(t["active_version"], json!("1.0.0"), "{t}");
    assert_eq!(t["status"], json!("active"), "{t}");
    let (status, old_job) = app.get(&format!("/v1/jobs/{}", job["id"].as_str().expect("job id"))).await;
    assert_eq!(status, StatusCode::OK, "{old_job}");

    let (status, after) = app.read_groups(&TICKERS, &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{after}");
    match backend {
        Backend::Production => check(&after, "online"),
        Backend::Embedded => check(&after, "offline"),
    }
    for i in 0..TICKERS.len() {
        for (name, v) in features(&after, i) {
            assert_eq!(v["value"], features(&before, i)[name]["value"], "{name}");
            assert_eq!(v["event_timestamp"], features(&before, i)[name]["event_timestamp"], "{name}");
        }
    }
    // The embedded read refilled the online store in the background.
    let mut online = Value::Null;
    for _ in 0..50 {
        online = app.read_groups(&TICKERS, &["technical"], "none").await.1;
        if (0..TICKERS.len()).all(|i| features(&online, i).values().all(|v| v["source"] == json!("online"))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    check(&online, "online");
}

async fn a_deleted_group_created_again_starts_empty_online_and_offline(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.setup_technical(&TICKERS, 260).await;
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");

    let (status, body) = app.delete("/v1/feature-groups/technical").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(online_keys_of(&app, "technical").await, Vec::<String>::new(), "Redis keys left behind");

    // The same definition again: nothing of the old group is served, not
    // from the online store and not from the offline one.
    let group = wafer_host::demo::technical_group_json();
    let (status, body) = app.put_json("/v1/feature-groups/technical", &group).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.read_groups(&TICKERS, &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for i in 0..TICKERS.len() {
        for (name, v) in features(&body, i) {
            assert_eq!(v["status"], json!("missing"), "{name}: {v}");
        }
    }
}
