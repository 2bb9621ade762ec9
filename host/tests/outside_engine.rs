//! wafer's offline tables are open Delta Lake tables: delta-rs's Python
//! package reads a feature table wafer wrote and finds exactly the values
//! wafer's own historical API answers.
//!
//! Needs `WAFER_TEST_DELTALAKE_PYTHON`, a Python with `deltalake` and
//! `pyarrow` (`.ci/run` installs them into a cached virtualenv and sets
//! it). Without it the test says it skipped and passes, except under
//! `CI=true`, where it fails.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use support::{send, start_server};

fn python() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var("WAFER_TEST_DELTALAKE_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if in_ci => panic!("WAFER_TEST_DELTALAKE_PYTHON is unset under CI=true (.ci/run sets it)"),
        Err(_) => {
            eprintln!("skipped: WAFER_TEST_DELTALAKE_PYTHON unset");
            None
        }
    }
}

#[tokio::test]
async fn an_outside_engine_reads_the_values_the_historical_api_returns() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let server = start_server(dir.path(), &[]).await;
    send(client.put(server.url("/v1/entities/ticker")).json(&json!({"join_keys": ["ticker"]}))).await;
    let group = json!({
        "entity": "ticker",
        "features": [
            {"name": "score", "type": "float64"},
            {"name": "calls", "type": "int64"},
            {"name": "active", "type": "bool"},
            {"name": "segment", "type": "string"}
        ],
        "producer": {"kind": "push"}
    });
    send(client.put(server.url("/v1/feature-groups/scores")).json(&group)).await;
    // One large write: it commits to the table directly, nothing waits in the log.
    let rows: Vec<Value> = (0..6_000)
        .map(|i| {
            let day = i / 20;
            let mut values = json!({"score": i as f64 / 7.0, "calls": i * 3 - 100, "active": i % 3 == 0});
            if i % 5 != 0 {
                values["segment"] = json!(format!("s{}", i % 4));
            }
            json!({
                "entity": {"ticker": format!("T{:02}", i % 20)},
                "event_timestamp": format!("2025-{:02}-{:02}T00:00:00Z", 1 + day / 28, 1 + day % 28),
                "values": values
            })
        })
        .collect();
    let written =
        send(client.post(server.url("/v1/features/write")).json(&json!({"feature_group": "scores", "rows": rows})))
            .await;
    assert_eq!(written["written"], json!(6_000));

    let table = dir.path().join("offline/features/scores");
    let out = std::process::Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/outside/read_table.py"))
        .arg(&table)
        .output()
        .expect("running python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let outside: Vec<BTreeMap<String, Value>> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(outside.len(), 6_000, "every row, once");

    // wafer's answer at each row's own key and time.
    let entity_rows: Vec<Value> =
        outside.iter().map(|r| json!({"ticker": r["ticker"], "event_timestamp": r["event_timestamp"]})).collect();
    let refs = ["scores:score", "scores:calls", "scores:active", "scores:segment"];
    let body = json!({"entity_rows": entity_rows, "features": refs});
    let answer = send(client.post(server.url("/v1/features/historical")).json(&body)).await;
    let answer = answer["rows"].as_array().expect("rows");
    for (row, wafer) in outside.iter().zip(answer) {
        for feature in ["score", "calls", "active", "segment"] {
            assert_eq!(row[feature], wafer[format!("scores:{feature}")], "{feature} of {row:?} vs {wafer}");
        }
        assert_eq!(row["created_given"], json!(false));
        assert_eq!(row["provenance"], Value::Null, "pushed rows name no transform");
    }
    let columns: Vec<&String> = outside[0].keys().collect();
    assert_eq!(
        columns,
        [
            "active",
            "calls",
            "created_given",
            "event_timestamp",
            "provenance",
            "score",
            "segment",
            "ticker",
            "write_seq"
        ]
    );
}
