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
