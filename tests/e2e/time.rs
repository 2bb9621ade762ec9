//! Times the store refuses: event and created times past the server's clock
//! plus `--max-future-skew`, or before year 1000, on every way rows come in
//! (JSON and CSV source rows, `POST /v1/features/write`, Feast's `/push` and
//! `/write-to-online-store`), and batch transform outputs whose timestamps
//! are out of order or out of that window. Each refusal is a 400 (or 422 for
//! a transform's output) naming the row, and nothing of the request is
//! written: a row stamped in year 9999 would otherwise be served `fresh`
//! forever and hide every later write of its entity.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafer_host::clock::Clock;
use wafer_host::model::Timestamp;
use wafer_tests::guests::EVIL;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    source_rows_stamped_past_the_skew_or_before_year_1000_are_refused_and_nothing_of_the_request_is_written,
    pushed_feature_rows_with_an_impossible_event_or_created_time_are_refused_and_later_writes_still_win,
    feast_pushes_and_writes_with_future_times_are_refused_in_feasts_error_shape,
    epoch_milliseconds_sent_as_a_timestamp_are_refused_with_a_hint,
    timestamps_that_cannot_be_read_are_refused_naming_the_row_and_column,
    the_future_skew_is_configurable,
    a_batch_transform_returning_disordered_or_impossible_timestamps_fails_and_stores_nothing,
    a_dry_run_on_disordered_or_impossible_input_times_is_refused_before_the_call,
);

#[track_caller]
fn assert_time_refused(status: StatusCode, body: &Value, row: usize, message_part: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], json!("invalid_timestamp"), "{body}");
    assert_eq!(body["error"]["details"]["row"], json!(row), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(message_part), "'{message_part}' not in: {message}");
}

fn now(app: &TestApp) -> Timestamp {
    app.clock.now()
}

/// The latest `technical:sma_20` event time served for `ticker` (from the
/// online store, no fallback).
async fn served_event_time(app: &TestApp, ticker: &str) -> Value {
    let body = json!({"entities": [{"ticker": ticker}], "features": ["technical:sma_20"], "fallback": "none"});
    let (status, body) = app.post_json("/v1/features/online", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"][0]["features"]["technical:sma_20"]["event_timestamp"].clone()
}

async fn source_rows_stamped_past_the_skew_or_before_year_1000_are_refused_and_nothing_of_the_request_is_written(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let prices = app.setup_technical(&["AAPL"], 40).await;
    let end = prices.end;
    let bar = |ts: String| json!({"ticker": "AAPL", "ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10});
    // A good next day first, then the bad row: the whole request is refused.
    let next_day = end.plus_secs(60).to_rfc3339();
    for (bad, part) in [
        ("9999-12-31T00:00:00Z".to_string(), "event time 9999-12-31T00:00:00Z is after"),
        (now(&app).plus_secs(2 * 3600).to_rfc3339(), "the latest time accepted"),
        ("0999-12-31T23:59:59Z".to_string(), "is before year 1000"),
    ] {
        let rows = json!({"rows": [bar(next_day.clone()), bar(bad.clone())]});
        let (status, body) = app.post_json("/v1/sources/prices/rows", &rows).await;
        assert_time_refused(status, &body, 1, part);
        assert!(body["error"]["message"].as_str().unwrap().starts_with("row 1: "), "{body}");

        let csv = format!(
            "ticker,ts,open,high,low,close,volume\nAAPL,{next_day},1,2,0.5,1.5,10\nAAPL,{bad},1,2,0.5,1.5,10\n"
        );
        let (status, body) = app.post_csv("/v1/sources/prices/rows", &csv).await;
        assert_time_refused(status, &body, 2, part);
        assert!(body["error"]["message"].as_str().unwrap().starts_with("CSV row 2, column 'ts': "), "{body}");
        assert_eq!(body["error"]["details"]["column"], json!("ts"), "{body}");
    }
    // Within the skew is fine: an hour ahead is still accepted.
    let soon = now(&app).plus_secs(1800);
    let (status, body) = app.post_json("/v1/sources/prices/rows", &json!({"rows": [bar(soon.to_rfc3339())]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Nothing of the refused requests was written: materializing serves the
    // accepted row as the newest, not the year-9999 one nor the next day's
    // row that came with the bad ones.
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    let served = served_event_time(&app, "AAPL").await;
    assert_eq!(served, json!(soon.to_rfc3339()), "served {served}");
}

fn push_group() -> Value {
    json!({"entity": "ticker", "features": [{"name": "pe", "type": "float64"}],
           "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200}, "producer": {"kind": "push"}})
}

async fn register_push_group(app: &TestApp) {
    let (status, body) = app.put_json("/v1/entities/ticker", &json!({"join_keys": ["ticker"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.put_json("/v1/feature-groups/valuation", &push_group()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The online `valuation:pe` of `ticker`: (value, status, event time).
async fn served_pe(app: &TestApp, ticker: &str) -> (Value, Value, Value) {
    let body = json!({"entities": [{"ticker": ticker}], "features": ["valuation:pe"], "fallback": "none"});
    let (status, body) = app.post_json("/v1/features/online", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let f = &body["results"][0]["features"]["valuation:pe"];
    (f["value"].clone(), f["status"].clone(), f["event_timestamp"].clone())
}

async fn pushed_feature_rows_with_an_impossible_event_or_created_time_are_refused_and_later_writes_still_win(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_push_group(&app).await;
    let t = wafer_tests::harness::whole_second(now(&app).plus_secs(-60));
    let row = |ticker: &str, event: &str, created: Option<&str>, pe: f64| {
        let mut r = json!({"entity": {"ticker": ticker}, "event_timestamp": event, "values": {"pe": pe}});
        if let Some(c) = created {
            r["created_timestamp"] = json!(c);
        }
        r
    };
    let good = row("MSFT", &t.to_rfc3339(), None, 30.0);
    for (bad, part) in [
        (row("AAPL", "9999-12-31T00:00:00Z", None, 1.0), "event time 9999-12-31T00:00:00Z is after"),
        (row("AAPL", "0001-01-01T00:00:00Z", None, 1.0), "event time 0001-01-01T00:00:00Z is before year 1000"),
        (row("AAPL", &t.to_rfc3339(), Some("9999-12-31T00:00:00Z"), 1.0), "created time 9999-12-31T00:00:00Z is after"),
    ] {
        let body = json!({"feature_group": "valuation", "rows": [good.clone(), bad]});
        let (status, body) = app.post_json("/v1/features/write", &body).await;
        assert_time_refused(status, &body, 1, part);
    }
    // Nothing was written, the good row of each request included.
    for ticker in ["AAPL", "MSFT"] {
        assert_eq!(served_pe(&app, ticker).await.1, json!("missing"), "{ticker}");
    }
    // A correct write for the entity is served: no far-future row hides it.
    let body = json!({"feature_group": "valuation", "rows": [row("AAPL", &t.to_rfc3339(), None, 28.5)]});
    let (status, body) = app.post_json("/v1/features/write", &body).await;
    assert_eq!((status, &body["written"]), (StatusCode::OK, &json!(1)), "{body}");
    assert_eq!(served_pe(&app, "AAPL").await, (json!(28.5), json!("fresh"), json!(t.to_rfc3339())));
    // Historical reads see none of the refused rows either.
    let far = "9999-12-31T00:00:00Z";
    let request = json!({"entity_rows": [{"ticker": "MSFT", "event_timestamp": far}], "features": ["valuation:pe"]});
    let (status, body) = app.post_json("/v1/features/historical", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["valuation:pe"], Value::Null, "{body}");
}

async fn feast_pushes_and_writes_with_future_times_are_refused_in_feasts_error_shape(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_push_group(&app).await;
    let ok = now(&app).plus_secs(-60).to_rfc3339();
    let far = "9999-12-31T00:00:00";
    let requests = [
        (
            "/push",
            json!({"push_source_name": "valuation", "df": {"ticker": ["AAPL", "MSFT"], "pe": [1.0, 2.0], "event_timestamp": [ok, far]}}),
        ),
        (
            "/push",
            json!({"push_source_name": "valuation", "to": "offline", "df": {"ticker": ["AAPL", "MSFT"], "pe": [1.0, 2.0], "event_timestamp": [ok, far]}}),
        ),
        (
            "/write-to-online-store",
            json!({"feature_view_name": "valuation", "df": {"ticker": ["AAPL", "MSFT"], "pe": [1.0, 2.0], "event_timestamp": [ok, ok], "created": [ok, far]}}),
        ),
    ];
    for (path, request) in requests {
        let (status, body) = app.post_json(path, &request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        let text = body.as_str().unwrap_or_else(|| panic!("{path}: Feast errors are JSON strings: {body}"));
        let detail: Value = serde_json::from_str(text).expect("Feast error detail");
        assert_eq!(detail["class"], json!("FeastError"), "{detail}");
        let message = detail["message"].as_str().unwrap();
        assert!(
            message.starts_with("row 1: ") && message.contains("9999-12-31T00:00:00Z is after"),
            "{path}: {message}"
        );
    }
    for ticker in ["AAPL", "MSFT"] {
        assert_eq!(served_pe(&app, ticker).await.1, json!("missing"), "{ticker}");
    }
    let request = json!({"entity_rows": [{"ticker": "AAPL", "event_timestamp": "9999-12-31T00:00:00Z"}], "features": ["valuation:pe"]});
    let (status, body) = app.post_json("/v1/features/historical", &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["valuation:pe"], Value::Null, "the offline-only push wrote nothing: {body}");
}

async fn epoch_milliseconds_sent_as_a_timestamp_are_refused_with_a_hint(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.setup_technical(&["AAPL"], 1).await;
    let millis = now(&app).micros() / 1000;
    let as_millis = wafer_tests::harness::whole_second(Timestamp(millis * 1000)).to_rfc3339();
    let bar = json!({"ticker": "AAPL", "ts": millis, "close": 1.5});
    let (status, body) = app.post_json("/v1/sources/prices/rows", &json!({"rows": [bar]})).await;
    assert_time_refused(status, &body, 0, "as epoch milliseconds would be");
    assert!(body["error"]["message"].as_str().unwrap().contains(&as_millis[..16]), "{body}");

    let csv = format!("ticker,ts,close\nAAPL,{millis},1.5\n");
    let (status, body) = app.post_csv("/v1/sources/prices/rows", &csv).await;
    assert_time_refused(status, &body, 1, "as epoch milliseconds would be");

    // Pushed rows: refused the same way, naming the row and the column.
    register_push_group(&app).await;
    let body = json!({"feature_group": "valuation", "rows": [
        {"entity": {"ticker": "AAPL"}, "event_timestamp": now(&app).to_rfc3339(), "values": {"pe": 1.0}},
        {"entity": {"ticker": "AAPL"}, "event_timestamp": now(&app).to_rfc3339(), "created_timestamp": millis, "values": {"pe": 1.0}},
    ]});
    let (status, body) = app.post_json("/v1/features/write", &body).await;
    assert_time_refused(status, &body, 1, "row 1: created_timestamp: timestamps are RFC 3339 strings");
    assert!(body["error"]["message"].as_str().unwrap().contains("as epoch milliseconds would be"), "{body}");
    assert_eq!(body["error"]["details"]["column"], json!("created_timestamp"), "{body}");
}

async fn timestamps_that_cannot_be_read_are_refused_naming_the_row_and_column(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.setup_technical(&["AAPL"], 1).await;
    register_push_group(&app).await;
    let good = now(&app).to_rfc3339();
    for (sent, part) in [
        (json!("+10000-01-01T00:00:00Z"), "is not an RFC 3339 timestamp"),
        (json!("yesterday"), "'yesterday' is not an RFC 3339 timestamp"),
        (json!(null), "must be an RFC 3339 string, not null"),
        (json!(true), "not a boolean"),
        (json!(1e300), "got 1e300"),
    ] {
        let rows = json!({"rows": [{"ticker": "AAPL", "ts": good, "close": 1.0}, {"ticker": "AAPL", "ts": sent, "close": 2.0}]});
        let (status, body) = app.post_json("/v1/sources/prices/rows", &rows).await;
        assert_time_refused(status, &body, 1, part);
        let write = json!({"feature_group": "valuation", "rows": [
            {"entity": {"ticker": "AAPL"}, "event_timestamp": good, "values": {"pe": 1.0}},
            {"entity": {"ticker": "AAPL"}, "event_timestamp": sent, "values": {"pe": 2.0}},
        ]});
        let (status, body) = app.post_json("/v1/features/write", &write).await;
        assert_time_refused(status, &body, 1, part);
        assert_eq!(body["error"]["details"]["column"], json!("event_timestamp"), "{body}");
    }
    let csv = format!("ticker,ts,close\nAAPL,{good},1\nAAPL,not-a-time,2\n");
    let (status, body) = app.post_csv("/v1/sources/prices/rows", &csv).await;
    assert_time_refused(status, &body, 2, "CSV row 2, column 'ts': 'not-a-time' is not an RFC 3339 timestamp");
    // Nothing of any of those requests was written.
    assert_eq!(served_pe(&app, "AAPL").await.1, json!("missing"));
}

async fn the_future_skew_is_configurable(backend: Backend) {
    let app = TestApp::spawn_on(backend, |config| config.max_future_skew = std::time::Duration::from_secs(10)).await;
    register_push_group(&app).await;
    let write = |secs: i64| {
        let t = now(&app).plus_secs(secs).to_rfc3339();
        json!({"feature_group": "valuation", "rows": [{"entity": {"ticker": "AAPL"}, "event_timestamp": t, "values": {"pe": 1.0}}]})
    };
    let (status, body) = app.post_json("/v1/features/write", &write(10)).await;
    assert_eq!(status, StatusCode::OK, "10 s ahead is within a 10 s skew: {body}");
    let (status, body) = app.post_json("/v1/features/write", &write(11)).await;
    assert_time_refused(status, &body, 0, "the latest time accepted");
}

async fn a_batch_transform_returning_disordered_or_impossible_timestamps_fails_and_stores_nothing(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    let (status, body) = app.put_json("/v1/entities/ticker", &json!({"join_keys": ["ticker"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let source = json!({"entity": "ticker", "timestamp_field": "ts", "fields": [{"name": "x", "type": "float64"}]});
    let (status, body) = app.put_json("/v1/sources/xs", &source).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let day = |d: i64| now(&app).plus_secs(-86_400 * d).to_rfc3339();
    let csv = format!("ticker,ts,x\nAAPL,{},1.0\nAAPL,{},2.0\nAAPL,{},3.0\n", day(3), day(2), day(1));
    let (status, body) = app.post_csv("/v1/sources/xs/rows", &csv).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (mode, part) in [
        ("ts_reversed", "is before row 0's"),
        ("ts_repeat", "repeats row 0's"),
        ("ts_max", "microseconds since the epoch is after"),
        ("ts_min", "microseconds since the epoch is before year 1000"),
        ("ts_9999", "9999-01-01T00:00:00Z is after"),
    ] {
        // Bad output is the guest's fault and counts towards its breaker;
        // activating the version again closes it for the next mode.
        let (status, body) = app.post_json("/v1/transforms/evil/activate", &json!({"version": "0.1.0"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let group = json!({
            "entity": "ticker", "features": [{"name": "x", "type": "float64"}],
            "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
            "producer": {"kind": "batch", "transform": "evil", "source": "xs", "lookback": 10, "params": {"mode": mode}}
        });
        let (status, body) = app.put_json(&format!("/v1/feature-groups/{mode}"), &group).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let job = app.materialize_and_wait(mode).await;
        assert_eq!(job["state"], json!("failed"), "{mode}: {job}");
        assert_eq!(job["rows_written"], json!(0), "{mode}: {job}");
        let error = job["errors"][0].as_str().unwrap_or("");
        assert!(error.contains("produced invalid output") && error.contains(part), "{mode}: {job}");

        // Nothing stored: not online, not offline, and not computed on a miss.
        let read = json!({"entities": [{"ticker": "AAPL"}], "feature_groups": [mode], "fallback": "none"});
        let (status, body) = app.post_json("/v1/features/online", &read).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["results"][0]["features"][format!("{mode}:x")]["status"], json!("missing"), "{mode}: {body}");
        let far = "9999-12-31T00:00:00Z";
        let request =
            json!({"entity_rows": [{"ticker": "AAPL", "event_timestamp": far}], "features": [format!("{mode}:x")]});
        let (status, body) = app.post_json("/v1/features/historical", &request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"][0][format!("{mode}:x")], Value::Null, "{mode}: {body}");
        let read = json!({"entities": [{"ticker": "AAPL"}], "feature_groups": [mode], "fallback": "compute"});
        let (status, body) = app.post_json("/v1/features/online", &read).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_ne!(body["results"][0]["features"][format!("{mode}:x")]["status"], json!("fresh"), "{mode}: {body}");
    }
}

async fn a_dry_run_on_disordered_or_impossible_input_times_is_refused_before_the_call(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    let invoke = |timestamps: Vec<&str>| json!({"params": {"mode": "ok"}, "sources": {"s": {"timestamps": timestamps, "columns": {"x": [1.0, 2.0]}}}});
    let calls = |body: Value| body["versions"][0]["stats"]["calls"].clone();
    let before = calls(app.get("/v1/transforms/evil").await.1);
    for (timestamps, row, part) in [
        (vec!["2024-05-02T00:00:00Z", "2024-05-01T00:00:00Z"], 1, "is before row 0's"),
        (vec!["2024-05-01T00:00:00Z", "2024-05-01T00:00:00Z"], 1, "repeats row 0's"),
        (vec!["2024-05-01T00:00:00Z", "9999-05-01T00:00:00Z"], 1, "9999-05-01T00:00:00Z is after"),
        (vec!["0999-05-01T00:00:00Z", "2024-05-01T00:00:00Z"], 0, "before year 1000"),
    ] {
        let (status, body) = app.post_json("/v1/transforms/evil/invoke", &invoke(timestamps)).await;
        assert_time_refused(status, &body, row, part);
        assert_eq!(body["error"]["details"]["column"], json!("sources.s.timestamps"), "{body}");
    }
    // Nothing ran: the version's call count did not move.
    let (status, body) = app.get("/v1/transforms/evil").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(calls(body), before);
    let ok = invoke(vec!["2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"]);
    let (status, body) = app.post_json("/v1/transforms/evil/invoke", &ok).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
