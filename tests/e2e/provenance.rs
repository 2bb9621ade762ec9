//! Provenance: every computed feature row names the transform version (name,
//! version, sha256 of its component) that produced it, and online and
//! training-data reads return it when asked (`include_provenance`), so
//! training and serving can be shown to run the same code. Pushed rows name
//! none; without the flag, answers are as they always were. Every test runs
//! on both backend pairs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wafer_host::clock::Clock;
use wafer_host::model::Timestamp;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    materialized_rows_name_their_version_online_and_in_training_data_across_an_upgrade,
    pushed_rows_name_no_version_and_reads_without_the_flag_are_unchanged,
    on_demand_and_computed_on_miss_values_name_the_version_that_computed_them,
);

/// `bytes` with a custom section appended: another sha256, the same code
/// (custom sections may appear anywhere in a component and carry no
/// semantics), so "a new version" without a second build of the transform.
fn with_custom_section(bytes: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    leb128(content.len(), &mut out);
    out.extend(content);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The JSON provenance of `transform@version` as a publish call answered it.
fn provenance(transform: &str, published: &Value) -> Value {
    json!({"transform": transform, "version": published["version"], "sha256": published["sha256"]})
}

/// The flat (CSV) form of the same.
fn provenance_text(transform: &str, published: &Value) -> String {
    format!("{transform}@{}#{}", published["version"].as_str().unwrap(), published["sha256"].as_str().unwrap())
}

fn now(app: &TestApp) -> Timestamp {
    app.clock.now()
}

async fn read_online(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.post_json("/v1/features/online", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// A training-data request with a JSON body and answer.
async fn historical_json(app: &TestApp, body: Value) -> Vec<Value> {
    let (status, answer) = app.post_json("/v1/features/historical", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["rows"].as_array().expect("rows").clone()
}

/// A training-data request with a CSV body and answer: the header and the
/// records.
async fn historical_csv(app: &TestApp, query: &str, csv: String) -> (Vec<String>, Vec<Vec<String>>) {
    let response = app
        .client
        .post(app.url(&format!("/v1/features/historical?{query}")))
        .header("content-type", "text/csv")
        .header("accept", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let records = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    (header, records)
}

fn keys(object: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = object.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

async fn materialized_rows_name_their_version_online_and_in_training_data_across_an_upgrade(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let first = app.publish_indicators().await;
    assert_eq!(first["sha256"], json!(sha256_hex(wafer_host::bundled::INDICATORS)), "{first}");
    app.register_technical().await;
    app.ingest_prices(&["AAPL", "MSFT"], 260).await;
    app.materialize_and_wait("technical").await;
    let v1 = provenance("indicators", &first);

    let online = json!({
        "entities": [{"ticker": "AAPL"}, {"ticker": "MSFT"}], "features": ["technical:sma_20", "technical:rsi_14"],
        "fallback": "none", "include_provenance": true
    });
    let answer = read_online(&app, online.clone()).await;
    for result in answer["results"].as_array().unwrap() {
        assert_eq!(result["provenance"], json!({"technical": v1}), "{result}");
        assert_eq!(result["features"]["technical:sma_20"]["source"], json!("online"), "{result}");
    }

    // What was known until now was computed by 1.0.0.
    let known_then = now(&app).plus_secs(300);
    app.clock.advance_secs(600);

    // 1.1.0: the same code in different bytes, activated and materialized.
    let bytes = with_custom_section(wafer_host::bundled::INDICATORS, "wafer-test", b"indicators 1.1.0");
    let second = app.publish_and_activate("indicators", "1.1.0", &bytes).await;
    assert_eq!(second["sha256"], json!(sha256_hex(&bytes)), "{second}");
    assert_ne!(second["sha256"], first["sha256"]);
    app.materialize_and_wait("technical").await;
    let v2 = provenance("indicators", &second);
    let answer = read_online(&app, online).await;
    for result in answer["results"].as_array().unwrap() {
        assert_eq!(result["provenance"], json!({"technical": v2}), "online serves what 1.1.0 computed: {result}");
    }

    // Training data: 1.1.0's run rewrote the same event times later, a
    // correction that wins the tie at both times. Materialized rows carry
    // the job's clock, a created time no writer gave, so the created cutoff
    // does not hide the newer run's rows either (Feast's rule). Both
    // versions computed the same values.
    let rows = json!([
        {"ticker": "AAPL", "event_timestamp": known_then.to_rfc3339()},
        {"ticker": "AAPL", "event_timestamp": now(&app).to_rfc3339()},
    ]);
    let request = |created_cutoff: bool| {
        json!({"entity_rows": rows, "features": ["technical:sma_20"], "created_cutoff": created_cutoff,
               "include_provenance": true})
    };
    let answer = historical_json(&app, request(true)).await;
    assert_eq!(keys(&answer[0]), ["event_timestamp", "technical:__provenance", "technical:sma_20", "ticker"]);
    assert_eq!(answer[0]["technical:__provenance"], v2, "{answer:?}");
    assert_eq!(answer[1]["technical:__provenance"], v2, "{answer:?}");
    assert!(answer[0]["technical:sma_20"].is_f64(), "{answer:?}");
    assert_eq!(answer[0]["technical:sma_20"], answer[1]["technical:sma_20"], "same code, same value");
    // Without the cutoff, the same.
    let answer = historical_json(&app, request(false)).await;
    assert_eq!((&answer[0]["technical:__provenance"], &answer[1]["technical:__provenance"]), (&v2, &v2));

    let csv = format!("ticker,event_timestamp\nAAPL,{}\nAAPL,{}\n", known_then.to_rfc3339(), now(&app).to_rfc3339());
    let query = "features=technical:sma_20&created_cutoff=true&include_provenance=true";
    let (header, records) = historical_csv(&app, query, csv).await;
    assert_eq!(header, ["ticker", "event_timestamp", "technical:sma_20", "technical:__provenance"]);
    assert_eq!(records[0][3], provenance_text("indicators", &second));
    assert_eq!(records[1][3], provenance_text("indicators", &second));
    assert_eq!(records[0][3], format!("indicators@1.1.0#{}", sha256_hex(&bytes)));
    assert_ne!(provenance_text("indicators", &first), provenance_text("indicators", &second));
}

async fn pushed_rows_name_no_version_and_reads_without_the_flag_are_unchanged(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let indicators = app.publish_indicators().await;
    app.register_technical().await;
    app.ingest_prices(&["AAPL", "MSFT"], 260).await;
    app.materialize_and_wait("technical").await;
    let v1 = provenance("indicators", &indicators);
    let sentiment = json!({
        "entity": "ticker", "features": [{"name": "score", "type": "float64"}],
        "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200}, "producer": {"kind": "push"}
    });
    let (status, body) = app.put_json("/v1/feature-groups/sentiment", &sentiment).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.clock.advance_secs(60);
    let at = now(&app).to_rfc3339();
    let push = |group: &str, values: Value| json!({"feature_group": group, "rows": [{"entity": {"ticker": "AAPL"}, "event_timestamp": at, "values": values}]});
    let (status, body) = app.post_json("/v1/features/write", &push("sentiment", json!({"score": 0.7}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let read = |include: Option<bool>| {
        let mut body = json!({"entities": [{"ticker": "AAPL"}, {"ticker": "MSFT"}],
                              "feature_groups": ["technical", "sentiment"], "fallback": "none"});
        if let Some(include) = include {
            body["include_provenance"] = json!(include);
        }
        body
    };
    let answer = read_online(&app, read(Some(true))).await;
    assert_eq!(answer["results"][0]["provenance"], json!({"technical": v1, "sentiment": null}), "{answer}");
    assert_eq!(answer["results"][1]["provenance"], json!({"technical": v1, "sentiment": null}), "no row: {answer}");
    assert_eq!(answer["results"][0]["features"]["sentiment:score"]["value"], json!(0.7));
    // Without the flag (or with it false), the answer has no trace of it.
    for include in [None, Some(false)] {
        let plain = read_online(&app, read(include)).await;
        for result in plain["results"].as_array().unwrap() {
            assert_eq!(keys(result), ["entity", "features"], "{result}");
        }
        let mut with = answer.clone();
        for result in with["results"].as_array_mut().unwrap() {
            result.as_object_mut().unwrap().remove("provenance");
        }
        assert_eq!(plain, with, "the same answer but for the provenance");
    }

    // A row pushed into the batch group replaces the computed one, and with
    // it its provenance.
    let (status, body) = app.post_json("/v1/features/write", &push("technical", json!({"sma_20": 1.0}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = read_online(&app, read(Some(true))).await;
    assert_eq!(answer["results"][0]["provenance"], json!({"technical": null, "sentiment": null}), "{answer}");
    assert_eq!(answer["results"][0]["features"]["technical:sma_20"]["value"], json!(1.0));

    // Training data: null (JSON) or an empty cell (CSV) for pushed rows and
    // rows not found; no provenance columns without the flag.
    let later = now(&app).plus_secs(1).to_rfc3339();
    let rows = json!([{"ticker": "AAPL", "event_timestamp": later}, {"ticker": "MSFT", "event_timestamp": later}]);
    let features = json!(["sentiment:score", "technical:sma_20"]);
    let answer =
        historical_json(&app, json!({"entity_rows": rows, "features": features, "include_provenance": true})).await;
    assert_eq!(answer[0]["sentiment:__provenance"], Value::Null, "{answer:?}");
    assert_eq!(answer[0]["technical:__provenance"], Value::Null, "pushed: {answer:?}");
    assert_eq!(answer[1]["sentiment:__provenance"], Value::Null, "no row: {answer:?}");
    assert_eq!(answer[1]["technical:__provenance"], v1, "{answer:?}");
    let plain = historical_json(&app, json!({"entity_rows": rows, "features": features})).await;
    assert_eq!(keys(&plain[0]), ["event_timestamp", "sentiment:score", "technical:sma_20", "ticker"]);

    let csv = format!("ticker,event_timestamp\nAAPL,{later}\nMSFT,{later}\n");
    let query = "features=sentiment:score,technical:sma_20&include_provenance=true";
    let (header, records) = historical_csv(&app, query, csv.clone()).await;
    assert_eq!(
        header,
        [
            "ticker",
            "event_timestamp",
            "sentiment:score",
            "technical:sma_20",
            "sentiment:__provenance",
            "technical:__provenance"
        ]
    );
    assert_eq!((records[0][4].as_str(), records[0][5].as_str()), ("", ""));
    assert_eq!(records[1][4], "");
    assert_eq!(records[1][5], provenance_text("indicators", &indicators));
    let (header, _) = historical_csv(&app, "features=sentiment:score,technical:sma_20", csv).await;
    assert_eq!(header, ["ticker", "event_timestamp", "sentiment:score", "technical:sma_20"]);

    // An entity-row column named like a provenance column is refused.
    let clash = json!([{"ticker": "AAPL", "event_timestamp": later, "technical:__provenance": "x"}]);
    let body = json!({"entity_rows": clash, "features": ["technical:sma_20"], "include_provenance": true});
    let (status, answer) = app.post_json("/v1/features/historical", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("technical:__provenance"), "{answer}");
}

async fn on_demand_and_computed_on_miss_values_name_the_version_that_computed_them(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let indicators = app.publish_indicators().await;
    app.register_technical().await;
    let prices = app.ingest_prices(&["AAPL", "LAZY"], 260).await;
    let (status, job) =
        app.post_json("/v1/materialize?wait=true", &json!({"feature_group": "technical", "entities": ["AAPL"]})).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let signals = app.publish_and_activate("signals", "1.0.0", wafer_host::bundled::SIGNALS).await;
    let (status, body) = app.put_json("/v1/feature-groups/signals", &wafer_host::demo::signals_group_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Online: only the requested groups are named, not the inputs an
    // on-demand group read.
    let body = json!({
        "entities": [{"ticker": "AAPL"}], "feature_groups": ["signals"], "request_context": {"price": 100.0},
        "fallback": "none", "include_provenance": true
    });
    let answer = read_online(&app, body).await;
    assert_eq!(answer["results"][0]["provenance"], json!({"signals": provenance("signals", &signals)}), "{answer}");
    assert_eq!(answer["results"][0]["features"]["signals:pct_from_sma_20"]["source"], json!("computed"));

    // A batch group computed on a miss names the version that computed it.
    let body = json!({"entities": [{"ticker": "LAZY"}], "features": ["technical:sma_20"], "include_provenance": true});
    let answer = read_online(&app, body).await;
    assert_eq!(answer["results"][0]["features"]["technical:sma_20"]["source"], json!("computed"), "{answer}");
    let v1 = provenance("indicators", &indicators);
    assert_eq!(answer["results"][0]["provenance"], json!({"technical": v1}), "{answer}");

    // Training data: the on-demand column names the on-demand version.
    let at = prices.bars["AAPL"][259].ts.plus_secs(60).to_rfc3339();
    let csv = format!("ticker,event_timestamp,price\nAAPL,{at},101.5\n");
    let query = "features=signals:pct_from_sma_20,technical:sma_20&include_provenance=true";
    let (header, records) = historical_csv(&app, query, csv).await;
    assert_eq!(&header[5..], ["signals:__provenance", "technical:__provenance"]);
    assert!(!records[0][3].is_empty() && !records[0][4].is_empty(), "{records:?}");
    assert_eq!(records[0][5], provenance_text("signals", &signals));
    assert_eq!(records[0][6], provenance_text("indicators", &indicators));
}
