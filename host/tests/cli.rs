//! The `wafer` binary as users run it: `wafer serve` as a child process,
//! then the client commands against it.

use serde_json::json;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use support::{Server, free_port, run, send, start_server, text, wafer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_a_transform_and_materializes_a_group_on_a_served_store() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = start_server(&tmp.path().join("data"), &[]).await;
    let base = server.base.clone();

    let wasm = tmp.path().join("indicators.wasm");
    std::fs::write(&wasm, wafer_host::bundled::INDICATORS).expect("writing the component");
    let publish: Vec<String> = [
        "transform",
        "publish",
        wasm.to_str().expect("utf-8 path"),
        "--name",
        "indicators",
        "--version",
        "1.0.0",
        "--activate",
        "--server",
        &base,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(publish.clone()).await;
    assert!(out.status.success(), "publish failed: {}", text(&out));
    assert!(text(&out).contains("published indicators@1.0.0"), "{}", text(&out));
    assert!(text(&out).contains("activated"), "{}", text(&out));
    // Publishing the same file again is fine and says so.
    let again = run(publish).await;
    assert!(again.status.success(), "republish failed: {}", text(&again));
    assert!(text(&again).contains("already published"), "{}", text(&again));

    let client = reqwest::Client::new();
    send(client.put(format!("{base}/v1/entities/ticker")).json(&json!({"join_keys": ["ticker"]}))).await;
    let source = json!({"entity": "ticker", "timestamp_field": "ts", "fields": [
        {"name": "open", "type": "float64"}, {"name": "high", "type": "float64"},
        {"name": "low", "type": "float64"}, {"name": "close", "type": "float64"},
        {"name": "volume", "type": "int64"}]});
    send(client.put(format!("{base}/v1/sources/prices")).json(&source)).await;
    send(client.put(format!("{base}/v1/feature-groups/technical")).json(&wafer_host::demo::technical_group_json()))
        .await;
    let end = wafer_host::model::Timestamp::from_secs(chrono::Utc::now().timestamp());
    for ticker in ["AAPL", "MSFT"] {
        let csv = wafer_host::demo::prices_csv(ticker, 230, end);
        let written =
            send(client.post(format!("{base}/v1/sources/prices/rows")).header("content-type", "text/csv").body(csv))
                .await;
        assert_eq!(written["written"], json!(230));
    }

    let out = run(["materialize", "technical", "--server", &base].iter().map(|s| s.to_string()).collect()).await;
    assert!(out.status.success(), "materialize failed: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("succeeded"), "{}", text(&out));
    assert!(stdout.contains("2 entities"), "{}", text(&out));

    let read = json!({"entities": [{"ticker": "AAPL"}, {"ticker": "MSFT"}], "feature_groups": ["technical"], "fallback": "none"});
    let body = send(client.post(format!("{base}/v1/features/online")).json(&read)).await;
    for result in body["results"].as_array().expect("results") {
        let features = result["features"].as_object().expect("features");
        assert_eq!(features.len(), 12, "{result}");
        for (name, v) in features {
            assert_eq!(v["status"], json!("fresh"), "{name}: {v}");
            assert!(v["value"].is_f64(), "{name}: {v}");
        }
    }

    // A failing client command exits non-zero with the server's reason.
    let out = run(["materialize", "nosuch", "--server", &base].iter().map(|s| s.to_string()).collect()).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not_found"), "{}", text(&out));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_beyond_loopback_without_tokens_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let child = wafer()
        .args(["serve", "--listen", &format!("0.0.0.0:{}", free_port()), "--data-dir"])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wafer serve");
    // Should the check be missing, the server keeps running: the guard
    // kills it when the deadline assertion fails.
    let mut server = Server { child, base: String::new() };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("polling the server") {
            break status;
        }
        assert!(Instant::now() < deadline, "wafer serve kept running on 0.0.0.0 without tokens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut output = String::new();
    if let Some(mut out) = server.child.stdout.take() {
        out.read_to_string(&mut output).expect("reading stdout");
    }
    if let Some(mut err) = server.child.stderr.take() {
        err.read_to_string(&mut output).expect("reading stderr");
    }
    assert!(!status.success(), "exited successfully: {output}");
    assert!(output.contains("token"), "no word about tokens: {output}");
}

/// Registers `profile` (pe_ratio, sector) and `risk` (beta), push groups of
/// the `ticker` entity, and writes rows at known event times.
async fn push_profile_and_risk(base: &str) {
    let client = reqwest::Client::new();
    send(client.put(format!("{base}/v1/entities/ticker")).json(&json!({"join_keys": ["ticker"]}))).await;
    let profile = json!({"entity": "ticker", "producer": {"kind": "push"},
        "features": [{"name": "pe_ratio", "type": "float64"}, {"name": "sector", "type": "string"}]});
    send(client.put(format!("{base}/v1/feature-groups/profile")).json(&profile)).await;
    let risk =
        json!({"entity": "ticker", "producer": {"kind": "push"}, "features": [{"name": "beta", "type": "float64"}]});
    send(client.put(format!("{base}/v1/feature-groups/risk")).json(&risk)).await;
    let row = |ticker: &str, at: &str, values: serde_json::Value| json!({"entity": {"ticker": ticker}, "event_timestamp": at, "values": values});
    let profile_rows = json!({"feature_group": "profile", "rows": [
        row("AAPL", "2024-01-01T00:00:00Z", json!({"pe_ratio": 10.5, "sector": "tech"})),
        row("AAPL", "2024-01-03T00:00:00Z", json!({"pe_ratio": 12.25, "sector": "hardware"})),
        row("MSFT", "2024-01-02T00:00:00Z", json!({"pe_ratio": 30.5, "sector": "software"})),
    ]});
    let written = send(client.post(format!("{base}/v1/features/write")).json(&profile_rows)).await;
    assert_eq!(written["written"], json!(3));
    let risk_rows = json!({"feature_group": "risk", "rows": [
        row("AAPL", "2024-01-02T00:00:00Z", json!({"beta": 1.25})),
        row("MSFT", "2024-01-01T00:00:00Z", json!({"beta": 0.75})),
    ]});
    let written = send(client.post(format!("{base}/v1/features/write")).json(&risk_rows)).await;
    assert_eq!(written["written"], json!(2));
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_writes_point_in_time_values_for_every_entity_row_across_batches() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = start_server(&tmp.path().join("data"), &[]).await;
    push_profile_and_risk(&server.base).await;

    // Five rows, so three batches of at most two: one before any feature
    // row, one exactly at an event time, a passthrough cell with a comma and
    // one with a newline (a batch boundary must not split that record).
    let entities = tmp.path().join("entities.csv");
    std::fs::write(
        &entities,
        "ticker,event_timestamp,label\n\
         AAPL,2023-12-31T00:00:00Z,before\n\
         AAPL,2024-01-01T00:00:00Z,exact\n\
         AAPL,2024-01-02T23:59:59Z,\"two\nlines\"\n\
         MSFT,2024-01-02T12:00:00Z,\"x, y\"\n\
         AAPL,2024-01-05T00:00:00Z,later\n",
    )
    .expect("writing entities");
    let out_path = tmp.path().join("training.csv");
    let out = run(args(&[
        "dataset",
        "--features",
        "profile:pe_ratio,risk:beta,profile:sector",
        "--entities",
        entities.to_str().expect("utf-8 path"),
        "--out",
        out_path.to_str().expect("utf-8 path"),
        "--batch-rows",
        "2",
        "--server",
        &server.base,
    ]))
    .await;
    assert!(out.status.success(), "dataset failed: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wrote 5 rows x 3 features to "), "{}", text(&out));

    // Per row the latest event at or before its event_timestamp, per group.
    let expected = "ticker,event_timestamp,label,profile:pe_ratio,risk:beta,profile:sector\n\
                    AAPL,2023-12-31T00:00:00Z,before,,,\n\
                    AAPL,2024-01-01T00:00:00Z,exact,10.5,,tech\n\
                    AAPL,2024-01-02T23:59:59Z,\"two\nlines\",10.5,1.25,tech\n\
                    MSFT,2024-01-02T12:00:00Z,\"x, y\",30.5,0.75,software\n\
                    AAPL,2024-01-05T00:00:00Z,later,12.25,1.25,hardware\n";
    assert_eq!(std::fs::read_to_string(&out_path).expect("reading the output"), expected);
    assert!(!tmp.path().join("training.csv.partial").exists(), "a partial file was left behind");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_with_an_unknown_feature_fails_with_the_servers_reason_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = start_server(&tmp.path().join("data"), &[]).await;
    push_profile_and_risk(&server.base).await;
    let entities = tmp.path().join("entities.csv");
    std::fs::write(&entities, "ticker,event_timestamp\nAAPL,2024-01-02T00:00:00Z\n").expect("writing entities");
    let out_path = tmp.path().join("training.csv");
    let dataset = |features: &str, out: &std::path::Path| {
        args(&[
            "dataset",
            "--features",
            features,
            "--entities",
            entities.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
            "--server",
            &server.base,
        ])
    };

    let out = run(dataset("profile:pe_ratio,profile:nosuch", &out_path)).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: unknown feature profile:nosuch"), "{stderr}");
    assert!(stderr.contains("profile:sector"), "the alternatives are not named: {stderr}");
    assert!(!out_path.exists(), "an output file was created");
    assert!(!tmp.path().join("training.csv.partial").exists(), "a partial file was left behind");

    // Checked before anything is sent: the entities file is never the output.
    let out = run(dataset("profile:pe_ratio", &entities)).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("would overwrite the entities file"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&entities).expect("entities"),
        "ticker,event_timestamp\nAAPL,2024-01-02T00:00:00Z\n"
    );
    drop(server);
}
