//! The main path over HTTP: publish a transform, register definitions,
//! ingest prices, materialize, serve online with freshness, survive a
//! restart. Expected feature values are computed here from the prices the
//! test sent, independently of the transform. Every test runs on both
//! backend pairs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::time::Duration;
use wafer_host::bundled::INDICATORS;
use wafer_host::demo::technical_group_json;
use wafer_host::model::Timestamp;
use wafer_tests::harness::{Bar, assert_close};
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    publishing_is_idempotent_for_the_same_bytes_and_conflicts_for_different_bytes,
    materialized_features_are_served_fresh_then_stale_then_expired_as_the_clock_moves,
    materializing_without_waiting_returns_a_job_that_can_be_polled_to_completion,
    values_and_transforms_survive_a_restart_without_republishing,
    registry_objects_can_be_listed_read_and_deleted_but_not_while_in_use,
);

/// More than the 200 closes `sma_200` needs.
const DAYS: usize = 260;
const REL: f64 = 1e-9;

fn technical_features() -> Vec<String> {
    technical_group_json()["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| format!("technical:{}", f["name"].as_str().expect("feature name")))
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Population standard deviation (ddof 0), two-pass.
fn population_std(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64).sqrt()
}

fn value(features: &Value, name: &str) -> f64 {
    features[format!("technical:{name}")]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("technical:{name} has no number in {features}"))
}

/// Checks the window-defined indicators against the last 20 closes.
fn assert_bollinger_matches(features: &Value, closes: &[f64], ticker: &str) {
    let last20 = &closes[closes.len() - 20..];
    let (m, sd) = (mean(last20), population_std(last20));
    assert_close(value(features, "sma_20"), m, REL, &format!("{ticker} sma_20"));
    assert_close(value(features, "bollinger_middle"), m, REL, &format!("{ticker} bollinger_middle"));
    assert_close(value(features, "bollinger_upper"), m + 2.0 * sd, REL, &format!("{ticker} bollinger_upper"));
    assert_close(value(features, "bollinger_lower"), m - 2.0 * sd, REL, &format!("{ticker} bollinger_lower"));
    let last200 = &closes[closes.len() - 200..];
    assert_close(value(features, "sma_200"), mean(last200), REL, &format!("{ticker} sma_200"));
}

fn result_for<'a>(body: &'a Value, ticker: &str) -> &'a Value {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["entity"]["ticker"] == json!(ticker))
        .unwrap_or_else(|| panic!("no result for {ticker} in {body}"))
}

fn statuses(features: &Value) -> Vec<(String, String)> {
    features
        .as_object()
        .expect("features object")
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap_or("?").to_string()))
        .collect()
}

fn assert_all(features: &Value, status: &str, source: &str) {
    for (name, v) in features.as_object().expect("features object") {
        assert_eq!(v["status"], json!(status), "{name}: {v}");
        assert_eq!(v["source"], json!(source), "{name}: {v}");
    }
}

/// A component with an extra custom section: valid, but different bytes.
fn with_custom_section(bytes: &[u8]) -> Vec<u8> {
    let name = b"wafer-test";
    let payload = b"same code, different bytes";
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

async fn publishing_is_idempotent_for_the_same_bytes_and_conflicts_for_different_bytes(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let path = "/v1/transforms/indicators/versions/1.0.0";

    let (status, first) = app.put_bytes(path, INDICATORS).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["sha256"], json!(hex(&Sha256::digest(INDICATORS))));
    assert_eq!(first["kind"], json!("batch"));
    let outputs: Vec<&str> =
        first["outputs"].as_array().expect("outputs").iter().filter_map(|o| o["name"].as_str()).collect();
    for f in technical_features() {
        let name = f.trim_start_matches("technical:");
        assert!(outputs.contains(&name), "indicators does not declare {name}: {outputs:?}");
    }

    let (status, again) = app.put_bytes(path, INDICATORS).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["sha256"], first["sha256"]);

    let other = with_custom_section(INDICATORS);
    let (status, conflict) = app.put_bytes(path, &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["error"]["code"], json!("conflict"));

    // The other bytes are a fine component in their own right.
    let (status, newer) = app.put_bytes("/v1/transforms/indicators/versions/1.0.1", &other).await;
    assert_eq!(status, StatusCode::CREATED, "{newer}");
    assert_eq!(newer["sha256"], json!(hex(&Sha256::digest(&other))));

    let (status, t) = app.get("/v1/transforms/indicators").await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["versions"].as_array().map(Vec::len), Some(2), "{t}");
    assert_eq!(t["active_version"], Value::Null, "nothing was activated: {t}");
}

async fn materialized_features_are_served_fresh_then_stale_then_expired_as_the_clock_moves(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let prices = app.setup_technical(&["AAPL", "MSFT"], DAYS).await;

    // A third ticker arrives as JSON rows rather than CSV.
    let nvda = wafer_host::demo::prices_csv("NVDA", DAYS, prices.end);
    let rows = csv_to_json_rows(&nvda);
    let (status, body) = app.post_json("/v1/sources/prices/rows", &json!({"rows": rows})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["written"], json!(DAYS));
    let nvda_closes: Vec<f64> = Bar::parse_csv(&nvda).iter().map(|b| b.close).collect();

    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["errors"], json!([]), "{job}");
    assert_eq!(job["entities_total"], json!(3), "{job}");
    assert_eq!(job["entities_done"], json!(3), "{job}");
    assert!(job["rows_written"].as_u64().unwrap_or(0) > 0, "{job}");

    let (status, full) = app.read_groups(&["AAPL", "MSFT", "NVDA"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{full}");
    for (ticker, closes) in [("AAPL", prices.closes("AAPL")), ("MSFT", prices.closes("MSFT")), ("NVDA", nvda_closes)] {
        let features = &result_for(&full, ticker)["features"];
        let names: BTreeSet<&String> = features.as_object().expect("features").keys().collect();
        assert_eq!(names, technical_features().iter().collect(), "{ticker}");
        assert_all(features, "fresh", "online");
        for (name, v) in features.as_object().expect("features") {
            assert!(v["value"].is_f64(), "{ticker} {name}: {v}");
            assert_eq!(ts(&v["event_timestamp"]), prices.end, "{ticker} {name} is not of the last bar: {v}");
            let age = v["age_seconds"].as_f64().expect("age");
            assert!((0.0..1.0).contains(&age), "{ticker} {name}: age {age}");
        }
        assert_bollinger_matches(features, &closes, ticker);
    }

    // Single refs: exactly the ones asked for.
    let refs = ["technical:bollinger_upper", "technical:sma_20"];
    let (status, body) =
        app.post_json("/v1/features/online", &json!({"entities": [{"ticker": "AAPL"}], "features": refs})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got: BTreeSet<&str> =
        body["results"][0]["features"].as_object().expect("features").keys().map(|k| k.as_str()).collect();
    assert_eq!(got, refs.into_iter().collect());
    let upper = &body["results"][0]["features"]["technical:bollinger_upper"];
    assert_eq!(upper["value"], result_for(&full, "AAPL")["features"]["technical:bollinger_upper"]["value"]);

    // Freshness: expected interval 1 h, max age 2 h, measured from the bar.
    let interval = technical_group_json()["freshness"]["expected_interval_seconds"].as_i64().expect("interval");
    let max_age = technical_group_json()["freshness"]["max_age_seconds"].as_i64().expect("max age");
    app.clock.set(prices.end.plus_secs(interval + 1));
    let (_, body) = app.read_groups(&["AAPL"], &["technical"], "none").await;
    let features = &result_for(&body, "AAPL")["features"];
    assert_all(features, "stale", "online");
    let age = features["technical:sma_20"]["age_seconds"].as_f64().expect("age");
    assert_close(age, (interval + 1) as f64, 1e-9, "stale age");

    app.clock.set(prices.end.plus_secs(max_age + 1));
    let (_, body) = app.read_groups(&["AAPL"], &["technical"], "none").await;
    let features = &result_for(&body, "AAPL")["features"];
    assert_all(features, "expired", "online");
    assert_bollinger_matches(features, &prices.closes("AAPL"), "AAPL");

    // An entity nobody ingested is missing, not an error.
    let (status, body) = app.read_groups(&["NOPE"], &["technical"], "compute").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = statuses(&result_for(&body, "NOPE")["features"]);
    assert!(s.iter().all(|(_, st)| st == "missing"), "{s:?}");
}

async fn materializing_without_waiting_returns_a_job_that_can_be_polled_to_completion(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.setup_technical(&["AAPL", "GOOG"], DAYS).await;

    let (status, started) = app.post_json("/v1/materialize", &json!({"feature_group": "technical"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["job_id"].as_str().expect("job_id").to_string();

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let job = loop {
        let (status, job) = app.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        assert_eq!(job["id"], json!(id));
        let state = job["state"].as_str().expect("state").to_string();
        assert!(["queued", "running", "succeeded", "failed"].contains(&state.as_str()), "{job}");
        if state == "succeeded" || state == "failed" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["entities_done"], json!(2), "{job}");
    assert_eq!(job["entities_total"], json!(2), "{job}");
    assert!(job["rows_written"].as_u64().unwrap_or(0) > 0, "{job}");

    let (status, _) = app.get("/v1/jobs/job-that-never-ran").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn values_and_transforms_survive_a_restart_without_republishing(backend: Backend) {
    let mut app = TestApp::spawn_on(backend, |_| {}).await;
    // Exactly `lookback` days, so a value recomputed from the last 252 bars
    // after the restart must equal the materialized one to the last bit of
    // tolerance (EMAs depend on where their window starts).
    let days = technical_group_json()["producer"]["lookback"].as_u64().expect("lookback") as usize;
    let prices = app.setup_technical(&["AAPL", "MSFT"], days).await;
    let first_job = app.materialize_and_wait("technical").await;
    assert_eq!(first_job["state"], json!("succeeded"), "{first_job}");
    let (_, before) = app.read_groups(&["AAPL", "MSFT"], &["technical"], "none").await;

    let (status, t) = app.get("/v1/transforms/indicators").await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["active_version"], json!("1.0.0"), "{t}");
    assert_eq!(t["status"], json!("active"), "{t}");
    let v = &t["versions"][0];
    assert_eq!(v["sha256"], json!(hex(&Sha256::digest(INDICATORS))), "{t}");
    assert_eq!(v["active"], json!(true), "{t}");
    assert!(v["stats"]["calls"].as_u64().unwrap_or(0) >= 2, "one call per ticker at least: {t}");
    assert_eq!(v["stats"]["errors"], json!(0), "{t}");
    let (status, list) = app.get("/v1/transforms").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        list["transforms"].as_array().expect("transforms").iter().any(|x| x["name"] == json!("indicators")),
        "{list}"
    );

    app.restart().await;

    let (status, health) = app.get("/healthz").await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
    let (status, after) = app.read_groups(&["AAPL", "MSFT"], &["technical"], "compute").await;
    assert_eq!(status, StatusCode::OK, "{after}");
    for ticker in ["AAPL", "MSFT"] {
        let (b, a) = (&result_for(&before, ticker)["features"], &result_for(&after, ticker)["features"]);
        for name in technical_features() {
            let (bv, av) = (&b[&name], &a[&name]);
            assert_eq!(av["status"], json!("fresh"), "{ticker} {name} after restart: {av}");
            assert_eq!(av["event_timestamp"], bv["event_timestamp"], "{ticker} {name}");
            let (x, y) = (bv["value"].as_f64().expect("before"), av["value"].as_f64().expect("after"));
            assert_close(y, x, REL, &format!("{ticker} {name} after restart"));
        }
        assert_bollinger_matches(a, &prices.closes(ticker), ticker);
    }

    // The registry still knows the version; nothing was published again.
    let (_, t_after) = app.get("/v1/transforms/indicators").await;
    assert_eq!(t_after["active_version"], json!("1.0.0"), "{t_after}");
    assert_eq!(t_after["versions"].as_array().map(Vec::len), Some(1), "{t_after}");
    assert_eq!(t_after["versions"][0]["sha256"], v["sha256"]);
    assert_eq!(t_after["versions"][0]["created_at"], v["created_at"]);
    let (_, group) = app.get("/v1/feature-groups/technical").await;
    assert_eq!(group["features"].as_array().map(Vec::len), Some(12), "{group}");

    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["entities_done"], json!(2), "{job}");
    let (_, reread) = app.read_groups(&["AAPL"], &["technical"], "none").await;
    let features = &result_for(&reread, "AAPL")["features"];
    assert_all(features, "fresh", "online");
    assert_bollinger_matches(features, &prices.closes("AAPL"), "AAPL");

    // Job history outlives the process too.
    let (status, old_job) = app.get(&format!("/v1/jobs/{}", first_job["id"].as_str().expect("id"))).await;
    assert_eq!(status, StatusCode::OK, "{old_job}");
    assert_eq!(old_job["state"], json!("succeeded"), "{old_job}");
    assert_eq!(old_job["rows_written"], first_job["rows_written"], "{old_job}");
}

async fn registry_objects_can_be_listed_read_and_deleted_but_not_while_in_use(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;

    let (status, entities) = app.get("/v1/entities").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entities["entities"][0]["name"], json!("ticker"), "{entities}");
    assert_eq!(entities["entities"][0]["join_keys"], json!(["ticker"]), "{entities}");
    let (status, sources) = app.get("/v1/sources").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sources["sources"][0]["name"], json!("prices"), "{sources}");
    assert_eq!(sources["sources"][0]["fields"].as_array().map(Vec::len), Some(5), "{sources}");
    let (status, groups) = app.get("/v1/feature-groups").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(groups["feature_groups"].as_array().map(Vec::len), Some(1), "{groups}");
    let (status, group) = app.get("/v1/feature-groups/technical").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["producer"]["transform"], json!("indicators"), "{group}");
    assert_eq!(group["features"], technical_group_json()["features"], "{group}");

    let (status, body) = app.delete("/v1/entities/ticker").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], json!("conflict"));
    let (status, body) = app.delete("/v1/sources/prices").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("technical"), "{body}");

    let (status, _) = app.delete("/v1/feature-groups/technical").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/v1/feature-groups/technical").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], json!("not_found"));
    let (status, _) = app.delete("/v1/sources/prices").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.delete("/v1/entities/ticker").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, entities) = app.get("/v1/entities").await;
    assert_eq!(entities, json!({"entities": []}));
    let (status, body) = app.delete("/v1/entities/ticker").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ts(v: &Value) -> Timestamp {
    Timestamp::parse(v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"))).expect("RFC 3339")
}

/// CSV rows as JSON objects with typed values, as a client would send them.
fn csv_to_json_rows(csv: &str) -> Vec<Value> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut row = serde_json::Map::new();
            for (name, cell) in header.iter().zip(line.split(',')) {
                let v = match *name {
                    "ticker" | "ts" => json!(cell),
                    "volume" => json!(cell.parse::<i64>().expect("volume")),
                    _ => json!(cell.parse::<f64>().expect("price")),
                };
                row.insert(name.to_string(), v);
            }
            Value::Object(row)
        })
        .collect()
}
