//! Columnar bodies: Parquet files and Arrow IPC streams as source rows and
//! pushed feature rows, validated as JSON and CSV rows are and read back
//! exactly. The bodies are built here with the Rust Arrow and Parquet
//! writers, as a pandas, Polars or Spark client would send them.

use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use wafer_host::clock::Clock;
use wafer_host::model::Timestamp;
use wafer_tests::harness::assert_close;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    parquet_and_arrow_source_rows_feed_materialization_like_csv_rows,
    parquet_feature_writes_read_back_exactly_with_nulls_lists_and_created_times,
    bad_columnar_bodies_are_refused_naming_the_row_and_column_and_nothing_is_written,
    a_columnar_bulk_write_serves_each_entitys_newest_row_online_and_keeps_every_row_offline,
    training_data_answered_as_parquet_holds_the_json_answer_in_typed_columns,
);

const PARQUET: &str = "application/vnd.apache.parquet";
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("a record batch")
}

fn parquet(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
    out
}

fn arrow_stream(batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batches[0].schema()).expect("writer");
    for b in batches {
        writer.write(b).expect("write");
    }
    writer.finish().expect("finish");
    drop(writer);
    out
}

fn micros(ts: &[Timestamp]) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(ts.iter().map(|t| t.micros()).collect::<Vec<_>>()).with_timezone("UTC"))
}

fn text(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

/// One ticker's daily bars as a prices batch.
fn prices_batch(ticker: &str, bars: &[(Timestamp, f64)]) -> RecordBatch {
    let n = bars.len();
    let closes: Vec<f64> = bars.iter().map(|b| b.1).collect();
    batch(vec![
        ("ticker", text(&vec![ticker; n])),
        ("ts", micros(&bars.iter().map(|b| b.0).collect::<Vec<_>>())),
        ("open", Arc::new(Float64Array::from(closes.clone()))),
        ("high", Arc::new(Float64Array::from(closes.iter().map(|c| c + 1.0).collect::<Vec<_>>()))),
        ("low", Arc::new(Float64Array::from(closes.iter().map(|c| c - 1.0).collect::<Vec<_>>()))),
        ("close", Arc::new(Float64Array::from(closes))),
        ("volume", Arc::new(Int64Array::from(vec![1_000; n]))),
    ])
}

async fn parquet_and_arrow_source_rows_feed_materialization_like_csv_rows(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    app.register_technical().await;
    let end = wafer_tests::harness::whole_second(app.clock.now());
    let bars = |k: f64| -> Vec<(Timestamp, f64)> {
        (0..30).map(|d| (end.plus_secs((d - 29) * 86_400), 100.0 + k * (d as f64).sin() + d as f64)).collect()
    };
    let (aapl, msft) = (bars(1.0), bars(3.0));
    let (status, body) =
        app.post_bytes("/v1/sources/prices/rows", PARQUET, parquet(&prices_batch("AAPL", &aapl))).await;
    assert_eq!((status, &body["written"]), (StatusCode::OK, &json!(30)), "{body}");
    // An Arrow stream of two batches.
    let stream = arrow_stream(&[prices_batch("MSFT", &msft[..10]), prices_batch("MSFT", &msft[10..])]);
    let (status, body) = app.post_bytes("/v1/sources/prices/rows", ARROW_STREAM, stream).await;
    assert_eq!((status, &body["written"]), (StatusCode::OK, &json!(30)), "{body}");

    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    let (status, read) = app.read_groups(&["AAPL", "MSFT"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{read}");
    for (i, bars) in [&aapl, &msft].into_iter().enumerate() {
        let sma = &read["results"][i]["features"]["technical:sma_20"];
        let expected = bars[10..].iter().map(|b| b.1).sum::<f64>() / 20.0;
        assert_close(sma["value"].as_f64().expect("sma_20"), expected, 1e-12, "sma_20 of the last 20 closes");
        assert_eq!(sma["event_timestamp"], json!(end.to_rfc3339()), "{sma}");
    }
}

async fn register_scores(app: &TestApp) {
    let (status, body) = app.put_json("/v1/entities/user", &json!({"join_keys": ["user_id"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = json!({"entity": "user", "producer": {"kind": "push"}, "features": [
        {"name": "score", "type": "float64"}, {"name": "visits", "type": "int64"},
        {"name": "active", "type": "bool"}, {"name": "tier", "type": "string"},
        {"name": "weights", "type": "float64_list"}, {"name": "tags", "type": "string_list"}]});
    let (status, body) = app.put_json("/v1/feature-groups/scores", &group).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn historical(app: &TestApp, rows: Value, cutoff: bool) -> Vec<Value> {
    let refs = ["scores:score", "scores:visits", "scores:active", "scores:tier", "scores:weights", "scores:tags"];
    let body = json!({"entity_rows": rows, "features": refs, "created_cutoff": cutoff});
    let (status, body) = app.post_json("/v1/features/historical", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["rows"].as_array().expect("rows").clone()
}

async fn parquet_feature_writes_read_back_exactly_with_nulls_lists_and_created_times(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_scores(&app).await;
    let t0 = Timestamp::parse("2024-01-01T00:00:00Z").unwrap();
    let day = |d: i64| t0.plus_secs(d * 86_400);
    let mut weights = ListBuilder::new(Float64Builder::new());
    for w in [Some(vec![0.25, 0.75]), None, Some(vec![])] {
        match w {
            Some(w) => {
                weights.values().append_slice(&w);
                weights.append(true);
            }
            None => weights.append(false),
        }
    }
    let mut tags = ListBuilder::new(StringBuilder::new());
    for t in [vec!["a", "b"], vec![], vec!["z"]] {
        for x in t {
            tags.values().append_value(x);
        }
        tags.append(true);
    }
    // u1 at day 0 (server-stamped) and day 1 (created on day 5 by its
    // writer); u2 at day 0, milliseconds in its time column.
    let rows = batch(vec![
        ("user_id", text(&["u1", "u1", "u2"])),
        ("event_timestamp", micros(&[day(0), day(1), day(0)])),
        (
            "created_timestamp",
            Arc::new(TimestampMillisecondArray::from(vec![None, Some(day(5).micros() / 1000), None])),
        ),
        ("score", Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.25), None]))),
        ("visits", Arc::new(Int64Array::from(vec![3, 4, i64::MAX]))),
        ("active", Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)]))),
        ("tier", text(&["gold", "silver", "bronze"])),
        ("weights", Arc::new(weights.finish())),
        ("tags", Arc::new(tags.finish())),
    ]);
    let (status, body) = app.post_bytes("/v1/features/write?feature_group=scores", PARQUET, parquet(&rows)).await;
    assert_eq!((status, &body["written"]), (StatusCode::OK, &json!(3)), "{body}");

    let points = json!([
        {"user_id": "u1", "event_timestamp": day(0).to_rfc3339()},
        {"user_id": "u1", "event_timestamp": day(2).to_rfc3339()},
        {"user_id": "u2", "event_timestamp": day(2).to_rfc3339()},
    ]);
    let got = historical(&app, points.clone(), false).await;
    let row = |r: &Value| {
        ["score", "visits", "active", "tier", "weights", "tags"].map(|f| r[format!("scores:{f}")].clone()).to_vec()
    };
    assert_eq!(
        row(&got[0]),
        [json!(1.5), json!(3), json!(true), json!("gold"), json!([0.25, 0.75]), json!(["a", "b"])]
    );
    assert_eq!(row(&got[1]), [json!(-2.25), json!(4), Value::Null, json!("silver"), Value::Null, json!([])]);
    assert_eq!(row(&got[2]), [Value::Null, json!(i64::MAX), json!(false), json!("bronze"), json!([]), json!(["z"])]);
    // Under the cutoff, u1's day-1 row (created on day 5 by its writer) is
    // not known on day 2; its day-0 row, stamped by the server now, is.
    let got = historical(&app, points, true).await;
    assert_eq!(got[1]["scores:score"], json!(1.5), "{:?}", got[1]);
    assert_eq!(got[2]["scores:tier"], json!("bronze"), "{:?}", got[2]);

    // Online serves the newest event of each entity.
    let read = json!({"entities": [{"user_id": "u1"}], "features": ["scores:tier"], "fallback": "none"});
    let (status, body) = app.post_json("/v1/features/online", &read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["features"]["scores:tier"]["value"], json!("silver"), "{body}");
}

async fn write_scores(app: &TestApp, b: RecordBatch) -> (StatusCode, Value) {
    app.post_bytes("/v1/features/write?feature_group=scores", PARQUET, parquet(&b)).await
}

#[track_caller]
fn assert_refused(status: StatusCode, body: &Value, code: &str, part: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(part), "'{part}' not in: {message}");
}

async fn bad_columnar_bodies_are_refused_naming_the_row_and_column_and_nothing_is_written(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_scores(&app).await;
    let now = app.clock.now();
    let users = || text(&["u1", "u2", "u3"]);
    let times = |third: Timestamp| micros(&[now.plus_secs(-60), now.plus_secs(-30), third]);
    let scores = || -> ArrayRef { Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) };

    let far = Timestamp::parse("9999-12-31T00:00:00Z").unwrap();
    let (status, body) =
        write_scores(&app, batch(vec![("user_id", users()), ("event_timestamp", times(far)), ("score", scores())]))
            .await;
    assert_refused(
        status,
        &body,
        "invalid_timestamp",
        "row 2, column 'event_timestamp': event time 9999-12-31T00:00:00Z is after",
    );
    assert_eq!(body["error"]["details"], json!({"row": 2, "column": "event_timestamp"}), "{body}");

    let epoch_millis: ArrayRef = Arc::new(Int64Array::from(vec![now.micros() / 1000; 3]));
    let (status, body) =
        write_scores(&app, batch(vec![("user_id", users()), ("event_timestamp", epoch_millis), ("score", scores())]))
            .await;
    assert_refused(status, &body, "invalid_timestamp", "as epoch milliseconds would be");

    let (status, body) =
        write_scores(&app, batch(vec![("user_id", users()), ("event_timestamp", times(now)), ("scroe", scores())]))
            .await;
    assert_refused(status, &body, "invalid_request", "column 'scroe' is not a join key");

    let nan: ArrayRef = Arc::new(Float64Array::from(vec![1.0, f64::NAN, 3.0]));
    let (status, body) =
        write_scores(&app, batch(vec![("user_id", users()), ("event_timestamp", times(now)), ("score", nan)])).await;
    assert_refused(status, &body, "invalid_request", "row 1, column 'score': NaN is not a finite number");

    // Of several faults the one a row-by-row reading meets first is
    // named, with its row counted across the body's batches: the second
    // batch's first row has a time past the window, its second a NaN.
    let nan: ArrayRef = Arc::new(Float64Array::from(vec![1.0, f64::NAN, 3.0]));
    let faulty = batch(vec![("user_id", users()), ("event_timestamp", times(far)), ("score", nan)]);
    let good = batch(vec![("user_id", users()), ("event_timestamp", times(now)), ("score", scores())]);
    let stream = arrow_stream(&[good.clone(), faulty.slice(2, 1), faulty.slice(1, 1)]);
    let (status, body) = app.post_bytes("/v1/features/write?feature_group=scores", ARROW_STREAM, stream).await;
    assert_refused(status, &body, "invalid_timestamp", "row 3, column 'event_timestamp': event time 9999-12-31");
    // On one row a cell's fault comes before the row's time.
    let nan_only: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN]));
    let both = batch(vec![("user_id", text(&["u1"])), ("event_timestamp", micros(&[far])), ("score", nan_only)]);
    let (status, body) = write_scores(&app, both).await;
    assert_refused(status, &body, "invalid_request", "row 0, column 'score': NaN is not a finite number");
    let empty_key = batch(vec![("user_id", text(&["u1", ""])), ("event_timestamp", micros(&[now, now]))]);
    let (status, body) = write_scores(&app, empty_key).await;
    assert_refused(status, &body, "invalid_request", "row 1, column 'user_id': empty join key");

    let words = text(&["1.0", "2.0", "3.0"]);
    let (status, body) =
        write_scores(&app, batch(vec![("user_id", users()), ("event_timestamp", times(now)), ("score", words)])).await;
    assert_refused(status, &body, "invalid_request", "row 0, column 'score': a Utf8 column cannot hold float64 values");

    let (status, body) = write_scores(&app, batch(vec![("user_id", users()), ("score", scores())])).await;
    assert_refused(status, &body, "invalid_request", "lacks required column 'event_timestamp'");

    let good = batch(vec![("user_id", users()), ("event_timestamp", times(now)), ("score", scores())]);
    let (status, body) = app.post_bytes("/v1/features/write", PARQUET, parquet(&good)).await;
    assert_refused(status, &body, "invalid_request", "?feature_group=NAME");
    let (status, body) =
        app.post_bytes("/v1/features/write?feature_group=scores", PARQUET, b"PAR1 not really".to_vec()).await;
    assert_refused(status, &body, "invalid_request", "the body is not a readable Parquet");
    let (status, body) =
        app.post_bytes("/v1/sources/nowhere/rows", ARROW_STREAM, arrow_stream(std::slice::from_ref(&good))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Nothing of the refused bodies was written.
    let read =
        json!({"entities": [{"user_id": "u1"}, {"user_id": "u2"}], "features": ["scores:score"], "fallback": "none"});
    let (status, body) = app.post_json("/v1/features/online", &read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for i in 0..2 {
        assert_eq!(body["results"][i]["features"]["scores:score"]["status"], json!("missing"), "{body}");
    }
    // The good body is accepted.
    let (status, body) = app.post_bytes("/v1/features/write?feature_group=scores", PARQUET, parquet(&good)).await;
    assert_eq!((status, &body["written"]), (StatusCode::OK, &json!(3)), "{body}");
}

/// A body of many rows per entity, out of time order, over two batches and
/// large enough to go to the table directly: online serves the row a
/// row-by-row write would leave (newest event, then newest created, the
/// later of equals), and every row is in the history.
async fn a_columnar_bulk_write_serves_each_entitys_newest_row_online_and_keeps_every_row_offline(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_scores(&app).await;
    let now = wafer_tests::harness::whole_second(app.clock.now());
    const DAYS: i64 = 2_000;
    let day = |d: i64| now.plus_secs((d - DAYS) * 86_400);
    // Entity e's value on day d is e * 10,000 + d; newest days first.
    let mut rows: Vec<(String, Timestamp, Option<Timestamp>, f64)> = Vec::new();
    for d in (0..DAYS).rev() {
        for e in 0..3 {
            rows.push((format!("u{e}"), day(d), None, (e * 10_000 + d) as f64));
        }
    }
    // u1's newest day corrected by its writer a minute from now; u2's
    // written again as it is, server-stamped alike: the later row wins.
    rows.push(("u1".into(), day(DAYS - 1), Some(now.plus_secs(60)), -1.0));
    rows.push(("u2".into(), day(DAYS - 1), None, -2.0));
    let part = |rows: &[(String, Timestamp, Option<Timestamp>, f64)]| {
        let created: Vec<Option<i64>> = rows.iter().map(|r| r.2.map(|t| t.micros())).collect();
        batch(vec![
            ("user_id", Arc::new(rows.iter().map(|r| Some(r.0.as_str())).collect::<StringArray>()) as ArrayRef),
            ("event_timestamp", micros(&rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            ("created_timestamp", Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC"))),
            ("score", Arc::new(Float64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()))),
        ])
    };
    let (first, second) = rows.split_at(3_000);
    let stream = arrow_stream(&[part(first), part(second)]);
    let (status, body) = app.post_bytes("/v1/features/write?feature_group=scores", ARROW_STREAM, stream).await;
    assert_eq!((status, &body["written"]), (StatusCode::OK, &json!(rows.len())), "{body}");

    let users = json!([{"user_id": "u0"}, {"user_id": "u1"}, {"user_id": "u2"}]);
    let read = json!({"entities": users, "features": ["scores:score"], "fallback": "none"});
    let (status, body) = app.post_json("/v1/features/online", &read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let online: Vec<Value> = (0..3).map(|i| body["results"][i]["features"]["scores:score"]["value"].clone()).collect();
    assert_eq!(online, [json!((DAYS - 1) as f64), json!(-1.0), json!(-2.0)], "{body}");

    let points: Vec<Value> = [(0, 0), (0, 777), (1, 1_500), (2, 1_998), (1, DAYS - 1), (2, DAYS - 1)]
        .iter()
        .map(|(e, d)| json!({"user_id": format!("u{e}"), "event_timestamp": day(*d).to_rfc3339()}))
        .collect();
    let got = historical(&app, json!(points), false).await;
    let scores: Vec<Value> = got.iter().map(|r| r["scores:score"].clone()).collect();
    let expected = [0.0, 777.0, 11_500.0, 21_998.0, -1.0, -2.0].map(|x| json!(x));
    assert_eq!(scores, expected, "{got:?}");
}

/// Reads a Parquet answer back into JSON rows keyed by column name, in the
/// types the JSON answer uses (timestamps as RFC 3339).
fn parquet_rows(bytes: Vec<u8>) -> Vec<serde_json::Map<String, Value>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_schema::DataType;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .expect("a Parquet file")
        .build()
        .expect("a reader");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("a batch");
        for i in 0..batch.num_rows() {
            let mut row = serde_json::Map::new();
            for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
                let cell = |a: &dyn Array, j: usize| -> Value {
                    if a.is_null(j) {
                        return Value::Null;
                    }
                    match a.data_type() {
                        DataType::Float64 => json!(a.as_primitive::<Float64Type>().value(j)),
                        DataType::Int64 => json!(a.as_primitive::<Int64Type>().value(j)),
                        DataType::Boolean => json!(a.as_boolean().value(j)),
                        DataType::Utf8 => json!(a.as_string::<i32>().value(j)),
                        DataType::Timestamp(_, tz) => {
                            assert_eq!(tz.as_deref(), Some("UTC"));
                            json!(Timestamp(a.as_primitive::<TimestampMicrosecondType>().value(j)).to_rfc3339())
                        }
                        other => panic!("unexpected column type {other}"),
                    }
                };
                let value = match col.data_type() {
                    DataType::List(_) if !col.is_null(i) => {
                        let items = col.as_list::<i32>().value(i);
                        Value::Array((0..items.len()).map(|j| cell(items.as_ref(), j)).collect())
                    }
                    _ => cell(col.as_ref(), i),
                };
                row.insert(field.name().clone(), value);
            }
            rows.push(row);
        }
    }
    rows
}

async fn training_data_answered_as_parquet_holds_the_json_answer_in_typed_columns(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_scores(&app).await;
    let t0 = Timestamp::parse("2024-01-01T00:00:00Z").unwrap();
    let users: Vec<String> = (0..50).map(|u| format!("u{u}")).collect();
    let n = users.len() * 10;
    let user_col: Vec<&str> = (0..n).map(|i| users[i % users.len()].as_str()).collect();
    let times: Vec<Timestamp> = (0..n).map(|i| t0.plus_secs((i / users.len()) as i64 * 86_400)).collect();
    let mut weights = ListBuilder::new(Float64Builder::new());
    let mut tags = ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        weights.values().append_slice(&[i as f64, 0.5]);
        weights.append(i % 7 != 0);
        tags.values().append_value(format!("t{}", i % 3));
        tags.append(true);
    }
    let rows = batch(vec![
        ("user_id", text(&user_col)),
        ("event_timestamp", micros(&times)),
        ("score", Arc::new((0..n).map(|i| (i % 5 != 0).then_some(i as f64 * 0.25)).collect::<Float64Array>())),
        ("visits", Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()))),
        ("active", Arc::new((0..n).map(|i| Some(i % 2 == 0)).collect::<BooleanArray>())),
        ("tier", text(&(0..n).map(|i| ["gold", "silver"][i % 2]).collect::<Vec<_>>())),
        ("weights", Arc::new(weights.finish())),
        ("tags", Arc::new(tags.finish())),
    ]);
    let (status, body) = app.post_bytes("/v1/features/write?feature_group=scores", PARQUET, parquet(&rows)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // More entity rows than one slice of the answer, so it streams as
    // several row groups; a label column passes through.
    let mut csv = String::from("user_id,event_timestamp,label\n");
    for k in 0..4_500 {
        let at = t0.plus_secs((k % 12) as i64 * 86_400 + (k % 3) as i64 * 3600 - 1800);
        csv.push_str(&format!("u{},{},{}\n", k % 53, at.to_rfc3339(), k % 2));
    }
    let refs = "scores:score,scores:visits,scores:active,scores:tier,scores:weights,scores:tags";
    let path = format!("/v1/features/historical?features={refs}&include_provenance=true");
    let ask = |accept: &'static str| {
        app.client.post(app.url(&path)).header("content-type", "text/csv").header("accept", accept).body(csv.clone())
    };
    let response = ask(PARQUET).send().await.expect("parquet answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], PARQUET);
    let from_parquet = parquet_rows(response.bytes().await.expect("body").to_vec());
    let response = ask("text/csv").send().await.expect("csv answer");
    let text_answer = response.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(text_answer.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let json_body = json!({"entity_rows": csv.lines().skip(1).map(|l| {
        let c: Vec<&str> = l.split(',').collect();
        json!({"user_id": c[0], "event_timestamp": c[1], "label": c[2]})
    }).collect::<Vec<_>>(), "features": refs.split(',').collect::<Vec<_>>(), "include_provenance": true});
    let (status, from_json) = app.post_json("/v1/features/historical", &json_body).await;
    assert_eq!(status, StatusCode::OK, "{from_json}");
    let from_json = from_json["rows"].as_array().unwrap();
    assert_eq!(from_parquet.len(), 4_500);
    assert_eq!(
        from_parquet[0].keys().collect::<Vec<_>>(),
        header.iter().collect::<Vec<_>>(),
        "the CSV answer's columns"
    );
    let mut hits = 0;
    for (i, (p, j)) in from_parquet.iter().zip(from_json).enumerate() {
        for (column, value) in p {
            let expected = match column.as_str() {
                // Input columns are text in Parquet, as they came in CSV.
                "event_timestamp" => json!(Timestamp::parse(j[column].as_str().unwrap()).unwrap().to_rfc3339()),
                "label" => json!(j[column].as_str().unwrap()),
                // Provenance as its text form: pushed rows have none.
                "scores:__provenance" => Value::Null,
                _ => j[column].clone(),
            };
            assert_eq!(value, &expected, "row {i}, column {column}");
        }
        hits += usize::from(!p["scores:visits"].is_null());
    }
    assert!(hits > 1_000 && hits < 4_500, "hits and misses both: {hits}");
}
