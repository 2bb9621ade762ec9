//! Offline tables on object storage: `--offline-url s3://bucket/prefix`
//! against a real S3-compatible server (`moto_server`, started here on a
//! spare loopback port and stopped by its pid), never a mock of the client.
//!
//! Needs `WAFER_TEST_MOTO_SERVER`, the path of `moto_server` from PyPI's
//! `moto[server]` (`.ci/run` installs it into a cached virtualenv and sets
//! it). Without it the test says it skipped and passes, except under
//! `CI=true`, where it fails.

mod support;

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Server, free_port, send, start_server};

const BUCKET: &str = "wafer-offline";

fn moto_server() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var("WAFER_TEST_MOTO_SERVER") {
        Ok(p) => Some(p),
        Err(_) if in_ci => panic!("WAFER_TEST_MOTO_SERVER is unset under CI=true (.ci/run sets it)"),
        Err(_) => {
            eprintln!("skipped: WAFER_TEST_MOTO_SERVER unset");
            None
        }
    }
}

/// A `moto_server` child, stopped by its pid when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_moto(path: &str) -> Moto {
    let port = free_port();
    let child = Command::new(path)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto_server");
    let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if client.get(&moto.endpoint).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto_server did not answer within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let created = client.put(format!("{}/{BUCKET}", moto.endpoint)).send().await.expect("creating the bucket");
    assert!(created.status().is_success(), "creating the bucket: {}", created.status());
    moto
}

/// The keys under `prefix` in the bucket.
async fn keys(moto: &Moto, prefix: &str) -> Vec<String> {
    let url = format!("{}/{BUCKET}?list-type=2&prefix={prefix}", moto.endpoint);
    let body = reqwest::get(url).await.expect("listing").text().await.expect("listing body");
    body.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_string).collect()
}

fn offline_flags(moto: &Moto) -> Vec<String> {
    let options = [
        format!("AWS_ENDPOINT_URL={}", moto.endpoint),
        "AWS_REGION=us-east-1".into(),
        "AWS_ACCESS_KEY_ID=wafer".into(),
        "AWS_SECRET_ACCESS_KEY=wafer".into(),
        "AWS_ALLOW_HTTP=true".into(),
        // S3's conditional writes make table commits safe for several writers.
        "AWS_CONDITIONAL_PUT=etag".into(),
    ];
    vec!["--offline-url".into(), format!("s3://{BUCKET}/lake"), "--offline-options".into(), options.join(",")]
}

async fn define(client: &reqwest::Client, server: &Server) {
    send(client.put(server.url("/v1/entities/ticker")).json(&json!({"join_keys": ["ticker"]}))).await;
    let group = json!({
        "entity": "ticker", "features": [{"name": "x", "type": "float64"}], "producer": {"kind": "push"}
    });
    send(client.put(server.url("/v1/feature-groups/pushed")).json(&group)).await;
}

fn row(ticker: &str, day: usize, x: f64) -> Value {
    json!({
        "entity": {"ticker": ticker},
        "event_timestamp": format!("2025-{:02}-{:02}T00:00:00Z", 1 + day / 28, 1 + day % 28),
        "values": {"x": x}
    })
}

async fn x_at(client: &reqwest::Client, server: &Server, ticker: &str, at: &str) -> Value {
    let body = json!({"entity_rows": [{"ticker": ticker, "event_timestamp": at}], "features": ["pushed:x"]});
    send(client.post(server.url("/v1/features/historical")).json(&body)).await["rows"][0]["pushed:x"].clone()
}

#[tokio::test]
async fn tables_on_s3_compatible_storage_hold_history_across_restarts() {
    let Some(moto_path) = moto_server() else { return };
    let moto = start_moto(&moto_path).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let server = start_server(dir.path(), &offline_flags(&moto)).await;
    define(&client, &server).await;

    // A large write commits to the table directly; a small one waits in the log.
    let bulk: Vec<Value> = (0..6_000).map(|i| row(&format!("T{:02}", i % 20), i / 20, i as f64)).collect();
    send(client.post(server.url("/v1/features/write")).json(&json!({"feature_group": "pushed", "rows": bulk}))).await;
    let late = vec![row("T00", 300, -1.0)];
    send(client.post(server.url("/v1/features/write")).json(&json!({"feature_group": "pushed", "rows": late}))).await;
    let objects = keys(&moto, "lake/features/pushed/").await;
    assert!(objects.iter().any(|k| k.contains("_delta_log/")), "a Delta log in the bucket: {objects:?}");
    assert!(objects.iter().any(|k| k.ends_with(".parquet")), "Parquet files in the bucket: {objects:?}");
    assert!(!dir.path().join("offline").exists(), "nothing on the local disk");
    assert_eq!(x_at(&client, &server, "T05", "2025-01-01T12:00:00Z").await, json!(5.0));
    assert_eq!(x_at(&client, &server, "T00", "2026-01-01T00:00:00Z").await, json!(-1.0));

    // Killed (kill -9); a new process reads the bucket and the log it left.
    drop(server);
    let server = start_server(dir.path(), &offline_flags(&moto)).await;
    assert_eq!(x_at(&client, &server, "T05", "2025-01-01T12:00:00Z").await, json!(5.0));
    assert_eq!(x_at(&client, &server, "T00", "2026-01-01T00:00:00Z").await, json!(-1.0));
    let stats = send(client.get(server.url("/v1/feature-groups/pushed/statistics"))).await;
    assert_eq!(stats["rows"], json!(6_001));

    // Deleting the group removes its table from the bucket.
    send(client.delete(server.url("/v1/feature-groups/pushed"))).await;
    assert_eq!(keys(&moto, "lake/features/pushed/").await, Vec::<String>::new());
}
