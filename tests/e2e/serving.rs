//! Online serving paths beyond the materialized hit: compute on miss,
//! the offline store answering for an online miss (e.g. after a restart of
//! the in-process online store), and push writes with corrections. Every
//! test runs on both backend pairs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafer_tests::harness::whole_second;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    a_ticker_never_materialized_is_computed_on_demand_with_the_materialized_values,
    pushed_values_keep_the_newest_event_and_the_latest_correction_across_a_restart,
    an_incremental_run_computes_only_entities_with_new_source_rows_and_writes_only_new_rows,
    a_value_computed_on_a_miss_follows_each_acknowledged_source_write_at_once,
);

/// Ingests the same bars under several tickers, so their features must be
/// identical however they are produced.
async fn ingest_identical(app: &TestApp, tickers: &[&str], days: usize) {
    let end = whole_second(wafer_host::clock::Clock::now(&app.clock));
    let template = wafer_host::demo::prices_csv("TEMPLATE", days, end);
    for t in tickers {
        let csv = template.replace("TEMPLATE,", &format!("{t},"));
        let (status, body) = app.post_csv("/v1/sources/prices/rows", &csv).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn features_of(body: &Value, i: usize) -> &serde_json::Map<String, Value> {
    body["results"][i]["features"].as_object().expect("features object")
}

/// Reads `ticker`'s `technical` group until every value is an online hit.
/// Reads write what they found elsewhere back online in the background, so
/// the read right after a miss may still race that write (a Redis round
/// trip, or another worker thread).
async fn read_until_online(app: &TestApp, ticker: &str) -> Value {
    let mut body = Value::Null;
    for _ in 0..50 {
        let (status, read) = app.read_groups(&[ticker], &["technical"], "none").await;
        assert_eq!(status, StatusCode::OK, "{read}");
        body = read;
        if features_of(&body, 0).values().all(|v| v["source"] == json!("online")) {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{ticker} was not written back online: {body}");
}

async fn a_ticker_never_materialized_is_computed_on_demand_with_the_materialized_values(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;
    // 300 days: more than the 252-row lookback, so a path that used a
    // shorter window than materialization would give different EMAs.
    ingest_identical(&app, &["MAT", "LAZY", "NONE"], 300).await;
    let (status, job) =
        app.post_json("/v1/materialize?wait=true", &json!({"feature_group": "technical", "entities": ["MAT"]})).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["entities_done"], json!(1));

    let (status, body) = app.read_groups(&["MAT", "LAZY"], &["technical"], "compute").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (materialized, computed) = (features_of(&body, 0), features_of(&body, 1));
    assert_eq!(materialized.len(), 12);
    for (name, m) in materialized {
        let c = &computed[name];
        assert_eq!(m["source"], json!("online"), "{name}: {m}");
        assert_eq!(c["source"], json!("computed"), "{name}: {c}");
        assert_eq!(c["status"], json!("fresh"), "{name}: {c}");
        assert!(m["value"].is_f64(), "{name}: {m}");
        assert_eq!(c["value"], m["value"], "{name}: computed and materialized values differ");
        assert_eq!(c["event_timestamp"], m["event_timestamp"], "{name}");
    }

    // What was computed was written back: soon every read is an online hit.
    let again = read_until_online(&app, "LAZY").await;
    for (name, v) in features_of(&again, 0) {
        assert_eq!(v["value"], materialized[name]["value"], "{name}: {v}");
    }

    // Without fallback, a never-materialized ticker is reported missing.
    let (_, none) = app.read_groups(&["NONE"], &["technical"], "none").await;
    for (name, v) in features_of(&none, 0) {
        assert_eq!(v["status"], json!("missing"), "{name}: {v}");
        assert!(v["value"].is_null(), "{name}: {v}");
    }
}

async fn register_profile(app: &TestApp) {
    let (status, body) = app.put_json("/v1/entities/ticker", &json!({"join_keys": ["ticker"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = json!({
        "entity": "ticker",
        "features": [{"name": "pe_ratio", "type": "float64"}, {"name": "sector", "type": "string"}],
        "freshness": {"expected_interval_seconds": 86400, "max_age_seconds": 604800},
        "producer": {"kind": "push"}
    });
    let (status, body) = app.put_json("/v1/feature-groups/profile", &group).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn read_profile(app: &TestApp) -> Value {
    let body = json!({"entities": [{"ticker": "AAPL"}], "features": ["profile:pe_ratio", "profile:sector"]});
    let (status, body) = app.post_json("/v1/features/online", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"][0]["features"].clone()
}

async fn pushed_values_keep_the_newest_event_and_the_latest_correction_across_a_restart(backend: Backend) {
    let mut app = TestApp::spawn_on(backend, |_| {}).await;
    register_profile(&app).await;
    let now = whole_second(wafer_host::clock::Clock::now(&app.clock));
    let (t1, t2) = (now.plus_secs(-7200).to_rfc3339(), now.plus_secs(-3600).to_rfc3339());
    let write = |rows: Value| json!({"feature_group": "profile", "rows": rows});
    // The newer event first, then an older one that must not replace it.
    let (status, body) = app
        .post_json(
            "/v1/features/write",
            &write(json!([{"entity": {"ticker": "AAPL"}, "event_timestamp": t2, "values": {"pe_ratio": 30.0, "sector": "tech"}}])),
        )
        .await;
    assert_eq!((status, body["written"].clone()), (StatusCode::OK, json!(1)));
    let (status, _) = app
        .post_json(
            "/v1/features/write",
            &write(json!([{"entity": {"ticker": "AAPL"}, "event_timestamp": t1, "values": {"pe_ratio": 10.0, "sector": "old"}}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let f = read_profile(&app).await;
    assert_eq!(f["profile:pe_ratio"]["value"], json!(30.0), "{f}");
    assert_eq!(f["profile:sector"]["value"], json!("tech"), "{f}");

    // A correction: same event time, created later than the first write
    // (which the server stamped with its clock's now), wins.
    app.clock.advance_secs(120);
    let created = now.plus_secs(60).to_rfc3339();
    let (status, _) = app
        .post_json(
            "/v1/features/write",
            &write(json!([{"entity": {"ticker": "AAPL"}, "event_timestamp": t2, "created_timestamp": created,
                           "values": {"pe_ratio": 31.5, "sector": "tech"}}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read_profile(&app).await["profile:pe_ratio"]["value"], json!(31.5));

    // The acknowledged values survive a restart. Redis still holds them;
    // the in-process online store starts empty, so the offline store
    // answers and the read refills the online store in the background.
    app.restart().await;
    let f = read_profile(&app).await;
    let source = match backend {
        Backend::Embedded => "offline",
        Backend::Production => "online",
    };
    assert_eq!(f["profile:pe_ratio"]["value"], json!(31.5), "{f}");
    assert_eq!(f["profile:pe_ratio"]["source"], json!(source), "{f}");
    assert_eq!(f["profile:pe_ratio"]["event_timestamp"], json!(t2), "{f}");
    assert_eq!(f["profile:pe_ratio"]["status"], json!("fresh"), "{f}");
    let mut f = read_profile(&app).await;
    for _ in 0..50 {
        if f["profile:pe_ratio"]["source"] == json!("online") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        f = read_profile(&app).await;
    }
    assert_eq!(f["profile:pe_ratio"]["source"], json!("online"), "refilled online: {f}");
    assert_eq!(f["profile:pe_ratio"]["value"], json!(31.5), "{f}");
}

async fn an_incremental_run_computes_only_entities_with_new_source_rows_and_writes_only_new_rows(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let prices = app.setup_technical(&["AAPL", "MSFT"], 260).await;
    let full = app.materialize_and_wait("technical").await;
    assert_eq!(full["entities_done"], json!(2), "{full}");

    // Nothing new: an incremental run has nothing to do.
    let (status, idle) =
        app.post_json("/v1/materialize?wait=true", &json!({"feature_group": "technical", "incremental": true})).await;
    assert_eq!(status, StatusCode::OK, "{idle}");
    assert_eq!((idle["entities_total"].clone(), idle["rows_written"].clone()), (json!(0), json!(0)), "{idle}");

    // A day later, one new bar for AAPL only.
    app.clock.advance_secs(86_400);
    let next = prices.end.plus_secs(86_400);
    let csv = format!("ticker,ts,open,high,low,close,volume\nAAPL,{next},100,101,99,100.5,1000\n");
    let (status, body) = app.post_csv("/v1/sources/prices/rows", &csv).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, inc) =
        app.post_json("/v1/materialize?wait=true", &json!({"feature_group": "technical", "incremental": true})).await;
    assert_eq!(status, StatusCode::OK, "{inc}");
    assert_eq!(inc["state"], json!("succeeded"), "{inc}");
    assert_eq!((inc["entities_total"].clone(), inc["rows_written"].clone()), (json!(1), json!(1)), "{inc}");

    let (_, read) = app.read_groups(&["AAPL"], &["technical"], "none").await;
    let sma20 = &read["results"][0]["features"]["technical:sma_20"];
    assert_eq!(sma20["event_timestamp"], json!(next.to_rfc3339()), "{read}");
    let mut closes = prices.closes("AAPL");
    closes.push(100.5);
    let expected = closes[closes.len() - 20..].iter().sum::<f64>() / 20.0;
    wafer_tests::harness::assert_close(sma20["value"].as_f64().unwrap(), expected, 1e-9, "sma_20 after the new bar");
}

/// Bars of `ticker` as CSV: `closes[i]` on the day `first_day + i` (days
/// since the epoch).
fn bars_csv(ticker: &str, first_day: i64, closes: &[f64]) -> String {
    let mut csv = String::from("ticker,ts,open,high,low,close,volume\n");
    for (i, c) in closes.iter().enumerate() {
        let ts = wafer_host::model::Timestamp::from_secs((first_day + i as i64) * 86_400).to_rfc3339();
        csv.push_str(&format!("{ticker},{ts},{c},{},{},{c},1000\n", c + 1.0, c - 1.0));
    }
    csv
}

fn sma_20(closes: &[f64]) -> f64 {
    closes[closes.len() - 20..].iter().sum::<f64>() / 20.0
}

/// `technical:sma_20` of `ticker`, computing allowed: its value and source.
async fn sma_of(app: &TestApp, ticker: &str) -> (Option<f64>, Value) {
    let (status, body) = app.read_groups(&[ticker], &["technical"], "compute").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = &features_of(&body, 0)["technical:sma_20"];
    (v["value"].as_f64(), v["source"].clone())
}

async fn a_value_computed_on_a_miss_follows_each_acknowledged_source_write_at_once(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;
    // The bars end ten days before the clock, past the group's max age:
    // no stored row is ever served, so every read computes from history.
    let today = wafer_host::clock::Clock::now(&app.clock).micros() / 86_400_000_000;
    let first = today - 10 - 59;
    let mut closes: Vec<f64> = (0..60).map(|i| 50.0 + (i % 9) as f64 * 0.75 + i as f64 * 0.1).collect();
    let ingest = async |csv: String| {
        let (status, body) = app.post_csv("/v1/sources/prices/rows", &csv).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    };
    ingest(bars_csv("EDIT", first, &closes)).await;
    let close_to = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() <= 1e-9 * want.abs());
    for _ in 0..3 {
        let (got, source) = sma_of(&app, "EDIT").await;
        assert!(close_to(got, sma_20(&closes)), "{got:?} against {}", sma_20(&closes));
        assert_eq!(source, json!("computed"));
    }
    // No prices at all: nothing to compute, read after read.
    for _ in 0..3 {
        assert_eq!(sma_of(&app, "LATER").await, (None, Value::Null));
    }

    // A correction of the newest bar, a new bar, and LATER's first prices:
    // the very next reads compute from them.
    let last = closes.len() - 1;
    closes[last] = 120.0;
    closes.push(180.0);
    ingest(bars_csv("EDIT", first + last as i64, &closes[last..])).await;
    let (got, _) = sma_of(&app, "EDIT").await;
    assert!(close_to(got, sma_20(&closes)), "{got:?} against {}", sma_20(&closes));
    ingest(bars_csv("LATER", first, &closes[..25])).await;
    let (got, source) = sma_of(&app, "LATER").await;
    assert!(close_to(got, sma_20(&closes[..25])), "{got:?} against {}", sma_20(&closes[..25]));
    assert_eq!(source, json!("computed"));
}
