//! Acknowledged writes survive `kill -9` of the real server: small writes
//! wait in the write log of the registry database before the flusher moves
//! them into the offline tables, and a crash on either side of that move
//! loses nothing and doubles nothing.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{Server, send, start_server};

async fn define(client: &reqwest::Client, server: &Server) {
    send(client.put(server.url("/v1/entities/ticker")).json(&json!({"join_keys": ["ticker"]}))).await;
    let group = json!({
        "entity": "ticker",
        "features": [{"name": "x", "type": "float64"}, {"name": "label", "type": "string"}],
        "producer": {"kind": "push"}
    });
    send(client.put(server.url("/v1/feature-groups/pushed")).json(&group)).await;
}

/// Three rows, pushed one request each, as clients push.
async fn push(client: &reqwest::Client, server: &Server) {
    for (i, ticker) in ["AAPL", "MSFT", "AAPL"].iter().enumerate() {
        let row = json!({
            "entity": {"ticker": ticker},
            "event_timestamp": format!("2026-01-0{}T00:00:00Z", i + 1),
            "values": {"x": i as f64 + 0.5, "label": format!("row {i}")}
        });
        send(client.post(server.url("/v1/features/write")).json(&json!({"feature_group": "pushed", "rows": [row]})))
            .await;
    }
}

async fn training_rows(client: &reqwest::Client, server: &Server) -> Value {
    let body = json!({
        "entity_rows": [
            {"ticker": "AAPL", "event_timestamp": "2026-01-02T00:00:00Z"},
            {"ticker": "AAPL", "event_timestamp": "2026-01-05T00:00:00Z"},
            {"ticker": "MSFT", "event_timestamp": "2026-01-05T00:00:00Z"}
        ],
        "features": ["pushed:x", "pushed:label"]
    });
    send(client.post(server.url("/v1/features/historical")).json(&body)).await["rows"].clone()
}

async fn stored_count(client: &reqwest::Client, server: &Server) -> Value {
    let stats = send(client.get(server.url("/v1/feature-groups/pushed/statistics"))).await;
    stats["rows"].clone()
}

fn kill_9(mut server: Server) {
    // Child::kill is SIGKILL: no shutdown, no flush.
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reaped");
}

fn table_exists(data_dir: &Path) -> bool {
    data_dir.join("offline/features/pushed/_delta_log").exists()
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_before_and_after_their_flush() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let server = start_server(dir.path(), &[]).await;
    define(&client, &server).await;
    push(&client, &server).await;
    let expected = json!([
        {"ticker": "AAPL", "event_timestamp": "2026-01-02T00:00:00Z", "pushed:x": 0.5, "pushed:label": "row 0"},
        {"ticker": "AAPL", "event_timestamp": "2026-01-05T00:00:00Z", "pushed:x": 2.5, "pushed:label": "row 2"},
        {"ticker": "MSFT", "event_timestamp": "2026-01-05T00:00:00Z", "pushed:x": 1.5, "pushed:label": "row 1"}
    ]);
    // Everything acknowledged; the rows are still only in the write log.
    assert!(!table_exists(dir.path()), "small writes wait in the log before a flush");
    kill_9(server);

    let server = start_server(dir.path(), &[]).await;
    assert_eq!(training_rows(&client, &server).await, expected, "read back from the log after kill -9");
    // The restarted flusher moves them into the table within its age limit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !table_exists(dir.path()) {
        assert!(Instant::now() < deadline, "the flusher did not create the table within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(training_rows(&client, &server).await, expected, "read back from the table");
    kill_9(server);

    let server = start_server(dir.path(), &[]).await;
    assert_eq!(training_rows(&client, &server).await, expected);
    assert_eq!(stored_count(&client, &server).await, json!(3), "each row stored once");

    // Admins compact the tables; reads stay the same.
    let out = support::run(vec!["offline".into(), "compact".into(), "--server".into(), server.base.clone()]).await;
    assert!(out.status.success(), "{}", support::text(&out));
    assert!(support::text(&out).contains("features/pushed: "), "{}", support::text(&out));
    assert_eq!(training_rows(&client, &server).await, expected);
}
