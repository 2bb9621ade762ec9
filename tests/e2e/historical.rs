//! Point-in-time training data (`POST /v1/features/historical`): the value
//! known at each entity row's time, never one from its future, checked
//! against a brute-force reference on randomized data and against textbook
//! indicator values; JSON and CSV both ways; streaming; errors. Every
//! behavioural test runs on both backend pairs.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use wafer_host::model::Timestamp;
use wafer_tests::harness::assert_close;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    randomized_requests_match_a_brute_force_point_in_time_join,
    batch_features_at_past_dates_equal_their_textbook_values,
    on_demand_features_are_computed_over_the_inputs_known_at_each_row,
    a_large_csv_request_streams_every_row_in_input_order,
    the_created_cutoff_hides_only_created_times_their_writer_gave,
);

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200;
/// Seconds between the grid points of event times.
const STEP: i64 = 10;
/// `short`'s max age: exactly three grid steps, so rows land on the bound.
const SHORT_MAX_AGE: i64 = 30;

/// A POST whose answer is read as text, with its headers.
async fn post_text(
    app: &TestApp,
    path: &str,
    content_type: &str,
    accept: &str,
    body: String,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .header("accept", accept)
        .body(body)
        .send()
        .await
        .expect("request");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.expect("whole body"))
}

fn ts(secs: i64, micros: i64) -> String {
    Timestamp(secs * 1_000_000 + micros).to_rfc3339()
}

/// One stored feature row as the test wrote it.
#[derive(Clone, Debug)]
struct Written {
    user: String,
    event: i64,
    /// Seconds; [`STAMPED`] for a row written without `created_timestamp`.
    created: i64,
    values: Value,
}

/// The `created` of rows pushed without a created time: the server stamps
/// its clock (the test's now, years after every event and every given
/// created time here), so they win ties and the created cutoff, which
/// compares only writer-given times, never hides them.
const STAMPED: i64 = i64::MAX / 1_000_000;

impl Written {
    fn created_given(&self) -> bool {
        self.created != STAMPED
    }
}

/// Entity `user`; push groups `short` (x float64, tag string; max age 30 s)
/// and `long` (y int64; no max age).
async fn register_users(app: &TestApp) {
    let (status, body) = app.put_json("/v1/entities/user", &json!({"join_keys": ["user_id"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let short = json!({
        "entity": "user",
        "features": [{"name": "x", "type": "float64"}, {"name": "tag", "type": "string"}],
        "freshness": {"expected_interval_seconds": STEP, "max_age_seconds": SHORT_MAX_AGE},
        "producer": {"kind": "push"}
    });
    let (status, body) = app.put_json("/v1/feature-groups/short", &short).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let long = json!({"entity": "user", "features": [{"name": "y", "type": "int64"}], "producer": {"kind": "push"}});
    let (status, body) = app.put_json("/v1/feature-groups/long", &long).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Random rows on a 10 s grid, each (user, event) with one to three
/// versions created at or after it (late corrections), one in four of them
/// pushed without a created time (backfills the server stamps); users u8
/// and u9 have none.
fn random_rows(rng: &mut SmallRng, group: &str) -> Vec<Written> {
    let mut rows: BTreeMap<(String, i64, i64), Written> = BTreeMap::new();
    for u in 0..8 {
        let user = format!("u{u}");
        for _ in 0..rng.gen_range(0..25) {
            let event = T0 + rng.gen_range(0..30) * STEP;
            for _ in 0..rng.gen_range(1..4) {
                let created = if rng.gen_bool(0.25) { STAMPED } else { event + rng.gen_range(0..4) * 5 };
                let values = match group {
                    "short" => json!({"x": rng.gen_range(-1e6..1e6), "tag": format!("t{}", rng.gen_range(0..1000))}),
                    _ => json!({"y": rng.gen_range(-1_000_000i64..1_000_000)}),
                };
                rows.insert((user.clone(), event, created), Written { user: user.clone(), event, created, values });
            }
        }
    }
    rows.into_values().collect()
}

async fn write_rows(app: &TestApp, group: &str, rows: &[Written]) {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut row = json!({"entity": {"user_id": r.user}, "event_timestamp": ts(r.event, 0), "values": r.values});
            if r.created_given() {
                row["created_timestamp"] = json!(ts(r.created, 0));
            }
            row
        })
        .collect();
    let (status, body) = app.post_json("/v1/features/write", &json!({"feature_group": group, "rows": rows})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The row known at `at` (microseconds), by definition: event time in
/// `[at - max_age, at]`, under the cutoff a writer-given created time at or
/// before `at` (server-stamped rows always pass), then the latest event
/// time and the latest created time.
fn reference<'a>(
    rows: &'a [Written],
    user: &str,
    at: i64,
    max_age: Option<i64>,
    created_cutoff: bool,
) -> Option<&'a Written> {
    rows.iter()
        .filter(|r| r.user == user)
        .filter(|r| r.event * 1_000_000 <= at)
        .filter(|r| max_age.is_none_or(|m| r.event * 1_000_000 >= at - m * 1_000_000))
        .filter(|r| !created_cutoff || !r.created_given() || r.created * 1_000_000 <= at)
        .max_by_key(|r| (r.event, r.created))
}

async fn randomized_requests_match_a_brute_force_point_in_time_join(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_users(&app).await;
    let mut rng = SmallRng::seed_from_u64(0x0007_0001);
    let short = random_rows(&mut rng, "short");
    let long = random_rows(&mut rng, "long");
    write_rows(&app, "short", &short).await;
    write_rows(&app, "long", &long).await;

    // Points on the grid, a microsecond either side of it, and between;
    // some users without rows; more rows than one slice.
    let entity_rows: Vec<(String, i64, i64)> = (0..4_500)
        .map(|i| {
            let user = format!("u{}", rng.gen_range(0..10));
            let at = (T0 + rng.gen_range(-1..34) * STEP) * 1_000_000 + [0, 0, 1, -1, 5_000_000][rng.gen_range(0..5)];
            (user, at, i)
        })
        .collect();
    let features = ["short:x", "long:y", "short:tag"];

    for created_cutoff in [false, true] {
        // JSON in, JSON out.
        let rows: Vec<Value> = entity_rows
            .iter()
            .map(|(u, at, i)| json!({"user_id": u, "event_timestamp": Timestamp(*at).to_rfc3339(), "row": i}))
            .collect();
        let body = json!({"entity_rows": rows, "features": features, "created_cutoff": created_cutoff});
        let (status, answer) = app.post_json("/v1/features/historical", &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let answer = answer["rows"].as_array().expect("rows");
        assert_eq!(answer.len(), entity_rows.len());
        let mut hits = [0; 2];
        for ((user, at, i), (sent, got)) in entity_rows.iter().zip(rows.iter().zip(answer)) {
            let what = format!("row {i}: {user} at {} (cutoff {created_cutoff}): {got}", Timestamp(*at));
            for (k, v) in sent.as_object().unwrap() {
                assert_eq!(&got[k], v, "{what}: input column {k} comes back as sent");
            }
            let s = reference(&short, user, *at, Some(SHORT_MAX_AGE), created_cutoff);
            let l = reference(&long, user, *at, None, created_cutoff);
            assert_eq!(got["short:x"], s.map_or(Value::Null, |r| r.values["x"].clone()), "{what}");
            assert_eq!(got["short:tag"], s.map_or(Value::Null, |r| r.values["tag"].clone()), "{what}");
            assert_eq!(got["long:y"], l.map_or(Value::Null, |r| r.values["y"].clone()), "{what}");
            hits[0] += usize::from(s.is_some());
            hits[1] += usize::from(l.is_some());
            let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["user_id", "event_timestamp", "row", "short:x", "long:y", "short:tag"], "{what}");
        }
        assert!(hits.iter().all(|&h| h > 100 && h < entity_rows.len() - 100), "hits and misses both: {hits:?}");

        // CSV in, CSV out: the same answer as text.
        let mut csv = String::from("user_id,event_timestamp,row\n");
        for (u, at, i) in &entity_rows {
            csv.push_str(&format!("{u},{},{i}\n", Timestamp(*at).to_rfc3339()));
        }
        let path = format!("/v1/features/historical?features={}&created_cutoff={created_cutoff}", features.join(","));
        let (status, headers, text) = post_text(&app, &path, "text/csv", "text/csv", csv).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
        assert_eq!(headers["x-wafer-entity-rows"], "4500");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["user_id", "event_timestamp", "row", "short:x", "long:y", "short:tag"]
        );
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("CSV record")).collect();
        assert_eq!(records.len(), entity_rows.len());
        for ((user, at, i), (record, json_row)) in entity_rows.iter().zip(records.iter().zip(answer)) {
            assert_eq!((&record[0], &record[2]), (user.as_str(), i.to_string().as_str()));
            assert_eq!(Timestamp::parse(&record[1]).unwrap(), Timestamp(*at));
            let x = json_row["short:x"].as_f64();
            assert_eq!(record[3].parse::<f64>().ok(), x, "row {i}: CSV x {:?}", &record[3]);
            assert_eq!(record[4].parse::<i64>().ok(), json_row["long:y"].as_i64(), "row {i}");
            assert_eq!(&record[5], json_row["short:tag"].as_str().unwrap_or(""), "row {i}");
        }
    }
}

async fn batch_features_at_past_dates_equal_their_textbook_values(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let prices = app.setup_technical(&["AAPL", "MSFT"], 260).await;
    app.materialize_and_wait("technical").await;
    let bars = &prices.bars["AAPL"];
    let closes = prices.closes("AAPL");
    let sma = |n: usize, k: usize| (k + 1 >= n).then(|| closes[k + 1 - n..=k].iter().sum::<f64>() / n as f64);

    // `technical` has a max age of 2 h: a bar's values are known from its
    // time until two hours later, and the bar before is known until then.
    let at = |k: usize, secs: i64| bars[k].ts.plus_secs(secs).to_rfc3339();
    let cases: Vec<(String, &str, Option<usize>)> = vec![
        (at(10, 0), "AAPL", None),          // too little history for sma_20: null
        (at(19, 0), "AAPL", Some(19)),      // the first sma_20
        (at(100, 0), "AAPL", Some(100)),    // exactly at a bar
        (at(100, 3600), "AAPL", Some(100)), // an hour later, still within max age
        (at(100, 7200), "AAPL", Some(100)), // max age is inclusive
        (at(100, 7201), "AAPL", None),      // past max age: null
        (at(101, -1), "AAPL", None),        // just before bar 101: bar 100 is 24 h old
        (at(259, 0), "AAPL", Some(259)),    // the newest bar
        (at(0, -86_400), "AAPL", None),     // before any data
        (at(100, 0), "NOPE", None),         // an unknown ticker: null, still answered
        (at(100, 0), "AAPL", Some(100)),    // a duplicate row gives a duplicate answer
    ];
    let entity_rows: Vec<Value> =
        cases.iter().map(|(t, ticker, _)| json!({"ticker": ticker, "event_timestamp": t})).collect();
    let body = json!({"entity_rows": entity_rows, "features": ["technical:sma_50", "technical:sma_20"]});
    let (status, answer) = app.post_json("/v1/features/historical", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), cases.len());
    for ((t, ticker, bar), row) in cases.iter().zip(rows) {
        assert_eq!((row["ticker"].as_str(), row["event_timestamp"].as_str()), (Some(*ticker), Some(t.as_str())));
        for (feature, n) in [("technical:sma_20", 20), ("technical:sma_50", 50)] {
            match bar.and_then(|k| sma(n, k)) {
                Some(expected) => assert_close(row[feature].as_f64().expect(feature), expected, 1e-12, feature),
                None => assert!(row[feature].is_null(), "{ticker} at {t}: {feature} should be null: {row}"),
            }
        }
    }
}

async fn on_demand_features_are_computed_over_the_inputs_known_at_each_row(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let prices = app.setup_technical(&["AAPL"], 120).await;
    app.materialize_and_wait("technical").await;
    app.publish_and_activate("signals", "1.0.0", wafer_host::bundled::SIGNALS).await;
    let (status, body) = app.put_json("/v1/feature-groups/signals", &wafer_host::demo::signals_group_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bars = &prices.bars["AAPL"];
    let closes = prices.closes("AAPL");
    let sma20 = |k: usize| closes[k - 19..=k].iter().sum::<f64>() / 20.0;

    // The request field `price` comes from a column of the entity rows.
    let csv = format!(
        "ticker,event_timestamp,price\nAAPL,{},101.5\nAAPL,{},99\nAAPL,{},100\n",
        bars[60].ts.to_rfc3339(),
        bars[119].ts.to_rfc3339(),
        bars[5].ts.to_rfc3339()
    );
    let path = "/v1/features/historical?features=signals:pct_from_sma_20,technical:sma_20";
    let (status, _, text) = post_text(&app, path, "text/csv", "text/csv", csv).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    for (record, (k, price)) in records.iter().zip([(60, 101.5), (119, 99.0)]) {
        let expected = (price - sma20(k)) / sma20(k);
        assert_close(record[3].parse().unwrap(), expected, 1e-12, "pct_from_sma_20");
        assert_close(record[4].parse().unwrap(), sma20(k), 1e-12, "sma_20");
    }
    assert_eq!((&records[2][3], &records[2][4]), ("", ""), "no sma_20 at bar 5, so no signal either");

    // A request field the rows lack is named.
    let csv = format!("ticker,event_timestamp\nAAPL,{}\n", bars[60].ts.to_rfc3339());
    let (status, _, text) = post_text(&app, path, "text/csv", "text/csv", csv).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("request field 'price'"), "{text}");
}

async fn a_large_csv_request_streams_every_row_in_input_order(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_users(&app).await;
    let rows: Vec<Written> = (0..50)
        .map(|u| Written { user: format!("u{u}"), event: T0, created: T0, values: json!({"y": u * 1000}) })
        .collect();
    write_rows(&app, "long", &rows).await;
    let n = 30_000;
    let mut csv = String::from("event_timestamp,user_id,seq\n");
    for i in 0..n {
        // Users in a scrambled order, half of them before T0 (null).
        let u = (i * 7919) % 50;
        let at = if i % 2 == 0 { ts(T0, 0) } else { ts(T0, -1) };
        csv.push_str(&format!("{at},u{u},{i}\n"));
    }
    let response = app
        .client
        .post(app.url("/v1/features/historical?features=long:y"))
        .header("content-type", "text/csv")
        .header("accept", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.content_length().is_none(), "a large answer is streamed (chunked), not buffered");
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut count = 0;
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        assert_eq!(record[2].parse::<usize>().unwrap(), i, "input order");
        let u = (i * 7919) % 50;
        let expected = if i % 2 == 0 { (u * 1000).to_string() } else { String::new() };
        assert_eq!((&record[1], &record[3]), (format!("u{u}").as_str(), expected.as_str()), "row {i}");
        count += 1;
    }
    assert_eq!(count, n);
}

/// Feast's rule: a backfill pushed without created times (the server stamps
/// its clock, long after the events) is answered under `created_cutoff`; a
/// correction whose writer says it was created later is hidden until then.
async fn the_created_cutoff_hides_only_created_times_their_writer_gave(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_users(&app).await;
    // u1: a backfill of two days, stamped now by the server. u2: a row
    // created with its event, and a correction created a day later.
    let rows = json!([
        {"entity": {"user_id": "u1"}, "event_timestamp": ts(T0, 0), "values": {"y": 1}},
        {"entity": {"user_id": "u1"}, "event_timestamp": ts(T0 + 86_400, 0), "values": {"y": 2}},
        {"entity": {"user_id": "u2"}, "event_timestamp": ts(T0, 0), "created_timestamp": ts(T0, 0), "values": {"y": 10}},
        {"entity": {"user_id": "u2"}, "event_timestamp": ts(T0, 0), "created_timestamp": ts(T0 + 86_400, 0), "values": {"y": 11}},
    ]);
    let (status, body) = app.post_json("/v1/features/write", &json!({"feature_group": "long", "rows": rows})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let points = [("u1", T0), ("u1", T0 + 86_400), ("u2", T0 + 3600), ("u2", T0 + 86_400)];
    let entity_rows: Vec<Value> =
        points.iter().map(|(u, t)| json!({"user_id": u, "event_timestamp": ts(*t, 0)})).collect();
    let mut answers = Vec::new();
    for cutoff in [true, false] {
        let body = json!({"entity_rows": entity_rows, "features": ["long:y"], "created_cutoff": cutoff});
        let (status, body) = app.post_json("/v1/features/historical", &body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        answers.push(body["rows"].as_array().unwrap().iter().map(|r| r["long:y"].clone()).collect::<Vec<_>>());
    }
    assert_eq!(answers[0], [json!(1), json!(2), json!(10), json!(11)], "with the cutoff");
    assert_eq!(answers[1], [json!(1), json!(2), json!(11), json!(11)], "without it");
}

/// The same data on SQLite and on PostgreSQL gives byte-identical answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_offline_backends_give_identical_answers() {
    if !Backend::Production.runs(concat!(module_path!(), "::both_offline_backends_give_identical_answers")) {
        return;
    }
    let mut answers = Vec::new();
    for backend in [Backend::Embedded, Backend::Production] {
        let app = TestApp::spawn_on(backend, |_| {}).await;
        register_users(&app).await;
        let mut rng = SmallRng::seed_from_u64(42);
        write_rows(&app, "short", &random_rows(&mut rng, "short")).await;
        write_rows(&app, "long", &random_rows(&mut rng, "long")).await;
        let mut csv = String::from("user_id,event_timestamp\n");
        for _ in 0..3_000 {
            let at = (T0 + rng.gen_range(-1..34) * STEP) * 1_000_000 + rng.gen_range(-1..2);
            csv.push_str(&format!("u{},{}\n", rng.gen_range(0..10), Timestamp(at).to_rfc3339()));
        }
        for cutoff in [false, true] {
            let path = format!("/v1/features/historical?features=short:x,short:tag,long:y&created_cutoff={cutoff}");
            let (status, _, text) = post_text(&app, &path, "text/csv", "text/csv", csv.clone()).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            answers.push(text);
        }
    }
    assert_eq!(answers[0], answers[2], "SQLite and PostgreSQL differ without the created cutoff");
    assert_eq!(answers[1], answers[3], "SQLite and PostgreSQL differ with the created cutoff");
    assert_ne!(answers[0], answers[1], "the cutoff changes something in this data");
}

/// Bad requests fail before any output, naming what is wrong.
#[tokio::test]
async fn bad_requests_are_refused_with_the_row_and_column_named() {
    let app = TestApp::spawn().await;
    register_users(&app).await;
    let post = |body: Value| {
        let app = &app;
        async move { app.post_json("/v1/features/historical", &body).await }
    };
    let row = |t: &str| json!({"user_id": "u1", "event_timestamp": t});

    let (status, body) = post(json!({"entity_rows": [row("2024-01-01")], "features": ["long:nope"]})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_feature")), "{body}");
    assert!(body["error"]["details"]["available"].to_string().contains("long:y"), "{body}");

    let (status, body) = post(json!({"entity_rows": [row("2024-01-01"), row("soon")], "features": ["long:y"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("entity_rows[1]: event_timestamp"), "{body}");

    let (status, body) = post(json!({"entity_rows": [{"user_id": "u1"}], "features": ["long:y"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("'event_timestamp' column"), "{body}");

    let (status, body) =
        post(json!({"entity_rows": [{"event_timestamp": "2024-01-01", "uid": "u1"}], "features": ["long:y"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("join key 'user_id'"), "{body}");

    let (status, body) = post(json!({"entity_rows": [row("2024-01-01")], "features": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = post(json!({"entity_rows": [row("2024-01-01")], "features": ["long:y"], "as_of": 1})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")), "{body}");

    let (status, _, text) = post_text(
        &app,
        "/v1/features/historical?features=long:y",
        "text/csv",
        "text/csv",
        "user_id,event_timestamp\nu1,2024-01-01\nu2,2024-13-01\n".into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("CSV row 2: event_timestamp"), "{text}");

    let (status, body) = app.post_raw("/v1/features/historical", "text/plain", "hello").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    // No rows: an empty answer, not an error.
    let (status, body) = post(json!({"entity_rows": [], "features": ["long:y"]})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"rows": []})));
}

/// A body over the limit is a 413 that says how to get the rows through.
#[tokio::test]
async fn an_oversized_request_is_refused_with_a_way_out() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1024).await;
    register_users(&app).await;
    let mut csv = String::from("user_id,event_timestamp\n");
    for i in 0..100 {
        csv.push_str(&format!("u{i},2024-01-01T00:00:00Z\n"));
    }
    let (status, _, text) =
        post_text(&app, "/v1/features/historical?features=long:y", "text/csv", "text/csv", csv).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], json!("payload_too_large"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("several requests"), "{body}");
}
