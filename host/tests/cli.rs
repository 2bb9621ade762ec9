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
    assert!(text(&out).contains("error: feature group 'nosuch' not found"), "{}", text(&out));
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

/// `wafer dataset` of the profile and risk features, two entity rows a batch.
fn dataset_in_batches_of_two(entities: &std::path::Path, out: &std::path::Path, server: &str) -> Vec<String> {
    args(&[
        "dataset",
        "--features",
        "profile:pe_ratio,risk:beta,profile:sector",
        "--entities",
        entities.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--batch-rows",
        "2",
        "--server",
        server,
    ])
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
    let out = run(dataset_in_batches_of_two(&entities, &out_path, &server.base)).await;
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
async fn dataset_to_a_parquet_file_holds_the_same_rows_in_typed_columns_across_batches() {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, TimestampMicrosecondType};
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = start_server(&tmp.path().join("data"), &[]).await;
    push_profile_and_risk(&server.base).await;
    let entities = tmp.path().join("entities.csv");
    std::fs::write(
        &entities,
        "ticker,event_timestamp,label\n\
         AAPL,2023-12-31T00:00:00Z,before\n\
         AAPL,2024-01-01T00:00:00Z,exact\n\
         MSFT,2024-01-02T12:00:00Z,\"x, y\"\n\
         AAPL,2024-01-05T00:00:00Z,later\n\
         MSFT,2023-06-01T00:00:00Z,\n",
    )
    .expect("writing entities");
    let out_path = tmp.path().join("training.parquet");
    let out = run(dataset_in_batches_of_two(&entities, &out_path, &server.base)).await;
    assert!(out.status.success(), "dataset failed: {}", text(&out));
    assert!(!tmp.path().join("training.parquet.partial").exists(), "a partial file was left behind");

    let bytes = bytes::Bytes::from(std::fs::read(&out_path).expect("reading the output"));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).expect("Parquet");
    let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["ticker", "event_timestamp", "label", "profile:pe_ratio", "risk:beta", "profile:sector"]);
    /// ticker, event_timestamp, label, pe_ratio, beta, sector.
    type Row = (String, String, Option<String>, Option<f64>, Option<f64>, Option<String>);
    let mut rows: Vec<Row> = Vec::new();
    for batch in reader.build().expect("reader") {
        let b = batch.expect("batch");
        let text = |c: usize, i: usize| {
            let a = b.column(c).as_string::<i32>();
            (!a.is_null(i)).then(|| a.value(i).to_string())
        };
        let float = |c: usize, i: usize| {
            let a = b.column(c).as_primitive::<Float64Type>();
            (!a.is_null(i)).then(|| a.value(i))
        };
        for i in 0..b.num_rows() {
            let t = b.column(1).as_primitive::<TimestampMicrosecondType>().value(i);
            let at = wafer_host::model::Timestamp(t).to_rfc3339();
            rows.push((text(0, i).unwrap(), at, text(2, i), float(3, i), float(4, i), text(5, i)));
        }
    }
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        rows,
        [
            ("AAPL".into(), "2023-12-31T00:00:00Z".into(), s("before"), None, None, None),
            ("AAPL".into(), "2024-01-01T00:00:00Z".into(), s("exact"), Some(10.5), None, s("tech")),
            ("MSFT".into(), "2024-01-02T12:00:00Z".into(), s("x, y"), Some(30.5), Some(0.75), s("software")),
            ("AAPL".into(), "2024-01-05T00:00:00Z".into(), s("later"), Some(12.25), Some(1.25), s("hardware")),
            ("MSFT".into(), "2023-06-01T00:00:00Z".into(), None, None, None, None),
        ]
    );
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

/// A client command against `server` with `--token`.
async fn as_client(server: &Server, token: &str, list: &[&str]) -> std::process::Output {
    let mut all = args(list);
    all.extend(args(&["--server", &server.base, "--token", token]));
    run(all).await
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_tokens_from_a_file_and_client_commands_send_theirs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, "# the team's tokens\nadmin=adm1n\n\nread=r3ad\n").expect("writing tokens");
    #[cfg(unix)]
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let server =
        start_server(&tmp.path().join("data"), &args(&["--api-tokens-file", tokens.to_str().expect("utf-8")])).await;

    let client = reqwest::Client::new();
    let resp = client.get(server.url("/v1/entities")).send().await.expect("request");
    assert_eq!(resp.status(), 401);
    let resp = client.get(server.url("/v1/entities")).bearer_auth("r3ad").send().await.expect("request");
    assert_eq!(resp.status(), 200);

    let out = run(args(&["transform", "list", "--server", &server.base])).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the server needs a token: pass --token or set WAFER_TOKEN"), "{}", text(&out));
    let out = as_client(&server, "wrong", &["transform", "list"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the server refused the token"), "{}", text(&out));
    let out = as_client(&server, "r3ad", &["transform", "disable", "indicators"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("this needs the admin role"), "{}", text(&out));
    // WAFER_TOKEN stands in for --token.
    let out = tokio::task::spawn_blocking({
        let base = server.base.clone();
        move || {
            wafer().args(["transform", "list", "--server", &base]).env("WAFER_TOKEN", "r3ad").output().expect("wafer")
        }
    })
    .await
    .expect("command task");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "no transforms published\n");

    // A bad line stops the server from starting, naming file and line; a
    // file others may read is warned about.
    std::fs::write(&tokens, "admin=adm1n\nroot=r00t\n").expect("writing tokens");
    #[cfg(unix)]
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let out = wafer()
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--api-tokens-file"])
        .arg(&tokens)
        .arg("--data-dir")
        .arg(tmp.path().join("data2"))
        .output()
        .expect("wafer serve");
    assert!(!out.status.success(), "{}", text(&out));
    let expected = format!("API tokens file {}, line 2: unknown API token role 'root'", tokens.display());
    assert!(text(&out).contains(&expected), "{}", text(&out));
    #[cfg(unix)]
    assert!(text(&out).contains("the API tokens file is readable by group or others"), "{}", text(&out));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_commands_run_the_plugin_lifecycle_with_an_admin_token() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = start_server(&tmp.path().join("data"), &args(&["--api-tokens", "admin=adm1n,read=r3ad"])).await;
    let wasm = tmp.path().join("indicators.wasm");
    std::fs::write(&wasm, wafer_host::bundled::INDICATORS).expect("writing the component");
    let wasm = wasm.to_str().expect("utf-8 path");
    let admin = |list: &'static [&'static str]| as_client(&server, "adm1n", list);

    let out = as_client(
        &server,
        "adm1n",
        &["transform", "publish", wasm, "--name", "indicators", "--version", "1.0.0", "--activate"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    for version in ["1.1.0", "1.2.0"] {
        let out =
            as_client(&server, "adm1n", &["transform", "publish", wasm, "--name", "indicators", "--version", version])
                .await;
        assert!(out.status.success(), "{}", text(&out));
    }

    let out = as_client(&server, "r3ad", &["transform", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("NAME        STATUS  ACTIVE  PREVIOUS  VERSIONS  CALLS  ERRORS\n"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("\nindicators  active  1.0.0   -         3  "), "{}", text(&out));

    let out = admin(&["transform", "activate", "indicators", "1.1.0"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "activated indicators@1.1.0 (previous: 1.0.0, the rollback target)\n");
    let out = admin(&["transform", "show", "indicators"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = stdout(&out);
    assert!(shown.starts_with("transform indicators: active (active 1.1.0, previous 1.0.0)\n"), "{shown}");
    assert!(shown.contains("\n  1.0.0    previous  "), "{shown}");
    assert!(shown.contains("\n  1.1.0    active    "), "{shown}");
    assert!(shown.contains("\n  1.2.0              "), "{shown}");

    // The rollback target cannot go: the server's 409 reason alone.
    let out = admin(&["transform", "delete", "indicators", "1.0.0"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: indicators@1.0.0 is the rollback target (previously active version); activate another version \
         (or disable the transform) first\n"
    );
    let out = admin(&["transform", "delete", "indicators", "1.2.0"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "deleted indicators@1.2.0\n");

    let out = admin(&["transform", "rollback", "indicators"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "rolled indicators back to 1.0.0 (previous: 1.1.0, the rollback target)\n");
    let out = admin(&["transform", "disable", "indicators"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "disabled indicators: no version is active (previous: 1.0.0, the rollback target)\n");
    let out = admin(&["transform", "show", "indicators", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown["status"], json!("disabled"));
    assert_eq!(shown["versions"].as_array().map(Vec::len), Some(2));
    let out = admin(&["transform", "show", "nosuch"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: transform 'nosuch' not found\n");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadowed_candidate_is_compared_on_materialization_then_promoted() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = start_server(&tmp.path().join("data"), &args(&["--api-tokens", "admin=adm1n"])).await;
    let base = server.base.clone();
    let admin = |list: &'static [&'static str]| as_client(&server, "adm1n", list);
    let client = reqwest::Client::new();
    for (version, activate) in [("1.0.0", true), ("1.1.0", false)] {
        let url = format!("{base}/v1/transforms/indicators/versions/{version}");
        let req = client.put(url).bearer_auth("adm1n").header("content-type", "application/wasm");
        send(req.body(wafer_host::bundled::INDICATORS)).await;
        if activate {
            let url = format!("{base}/v1/transforms/indicators/activate");
            send(client.post(url).bearer_auth("adm1n").json(&json!({"version": version}))).await;
        }
    }
    let put =
        |path: &str, body: serde_json::Value| client.put(format!("{base}{path}")).bearer_auth("adm1n").json(&body);
    send(put("/v1/entities/ticker", json!({"join_keys": ["ticker"]}))).await;
    let source = json!({"entity": "ticker", "timestamp_field": "ts", "fields": [
        {"name": "open", "type": "float64"}, {"name": "high", "type": "float64"},
        {"name": "low", "type": "float64"}, {"name": "close", "type": "float64"},
        {"name": "volume", "type": "int64"}]});
    send(put("/v1/sources/prices", source)).await;
    send(put("/v1/feature-groups/technical", wafer_host::demo::technical_group_json())).await;
    let end = wafer_host::model::Timestamp::from_secs(chrono::Utc::now().timestamp());
    let csv = wafer_host::demo::prices_csv("AAPL", 230, end);
    let rows = client.post(format!("{base}/v1/sources/prices/rows")).bearer_auth("adm1n");
    send(rows.header("content-type", "text/csv").body(csv)).await;

    let out = admin(&["transform", "shadow", "indicators", "1.1.0", "--tolerance", "1e-9"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("shadowing indicators: candidate 1.1.0 runs beside active 1.0.0 (tolerance 1e-9)"),
        "{}",
        text(&out)
    );
    let out = admin(&["transform", "shadow-report", "indicators"]).await;
    assert!(stdout(&out).contains("\nverdict: no_data (no calls compared yet)\n"), "{}", text(&out));

    let out = admin(&["materialize", "technical"]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Candidate calls run after the active ones have answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = admin(&["transform", "shadow-report", "indicators", "--json"]).await;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        if report["verdict"] != json!("no_data") {
            break;
        }
        assert!(Instant::now() < deadline, "no comparison within 30 s: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = admin(&["transform", "shadow-report", "indicators"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let report = stdout(&out);
    assert!(
        report.starts_with("shadow of indicators: candidate 1.1.0 against active 1.0.0, tolerance 1e-9, since "),
        "{report}"
    );
    assert!(report.contains("\nverdict: match ("), "{report}");
    assert!(report.contains("\n  FEATURE "), "{report}");
    let out = admin(&["transform", "shadow-report", "indicators", "--json"]).await;
    let json_report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(json_report["verdict"], json!("match"));
    assert!(json_report["calls"]["compared"].as_u64() > Some(0), "{json_report}");

    let out = admin(&["transform", "limits", "indicators", "--call-timeout-ms", "1500", "--memory-mib", "32"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(
            "limits of indicators set: call_timeout_ms=1500, memory_bytes=33554432 (32 MiB) (others at the server's defaults)\n"
        ),
        "{}",
        text(&out)
    );
    let out = admin(&["transform", "limits", "indicators"]).await;
    assert!(
        stdout(&out).starts_with("limits: call_timeout_ms=1500 (set), memory_bytes=33554432 (32 MiB) (set), "),
        "{}",
        text(&out)
    );
    let out = admin(&["transform", "limits", "indicators", "--reset"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("limits of indicators reset to the server's defaults\nlimits: "),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("(set)"), "{}", text(&out));

    let out = admin(&["transform", "promote", "indicators"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out),
        "promoted indicators@1.1.0 to active (previous: 1.0.0, the rollback target)\n\
         the shadow comparison it was based on: match\n"
    );
    let out = admin(&["transform", "shadow-report", "indicators"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not found"), "{}", text(&out));

    let out = admin(&["transform", "shadow", "indicators", "1.0.0"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = admin(&["transform", "shadow-stop", "indicators"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(
            "stopped shadowing indicators; the final report:\nshadow of indicators: candidate 1.0.0 against active 1.1.0"
        ),
        "{}",
        text(&out)
    );
    drop(server);
}
