//! Feast's own Python SDK against wafer: `tests/feast_client/roundtrip.py`
//! sets up a Feast repo whose online store is `type: remote` at the test
//! server, writes rows with `FeatureStore.write_to_online_store` and reads
//! them with `FeatureStore.get_online_features`, so the SDK's real client
//! code (`feast/infra/online_stores/remote.py`) exercises wafer's Feast
//! endpoints, on both backend pairs.
//!
//! Needs a Python with `feast` (0.67): `WAFER_TEST_FEAST_PYTHON`, which
//! `.ci/run` sets up in a virtualenv, or else a `python3` that can import
//! it. Without one the test says it is skipped; with
//! `WAFER_TEST_FEAST_PYTHON` set, a broken interpreter is a failure.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use wafer_host::model::Timestamp;
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(the_feast_sdk_writes_and_reads_through_wafers_feast_endpoints);

fn feast_python() -> Option<String> {
    if let Some(python) = std::env::var("WAFER_TEST_FEAST_PYTHON").ok().filter(|p| !p.is_empty()) {
        return Some(python);
    }
    let importable = Command::new("python3").args(["-c", "import feast"]).output().is_ok_and(|o| o.status.success());
    importable.then(|| "python3".to_string())
}

async fn the_feast_sdk_writes_and_reads_through_wafers_feast_endpoints(backend: Backend) {
    let Some(python) = feast_python() else {
        eprintln!("skipped: no Python with the Feast SDK (set WAFER_TEST_FEAST_PYTHON; .ci/run installs feast 0.67)");
        return;
    };
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let (status, body) = app.put_json("/v1/entities/driver", &json!({"join_keys": ["driver_id"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = json!({"entity": "driver", "producer": {"kind": "push"},
        "features": [{"name": "conv_rate", "type": "float64"}, {"name": "acc_rate", "type": "float64"},
                     {"name": "avg_daily_trips", "type": "int64"}],
        "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 86400}});
    let (status, body) = app.put_json("/v1/feature-groups/driver_hourly_stats", &group).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let work = tempfile::tempdir().expect("temp dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/feast_client/roundtrip.py");
    let (url, dir) = (app.url(""), work.path().to_path_buf());
    let output = tokio::task::spawn_blocking(move || Command::new(&python).arg(script).arg(url).arg(dir).output())
        .await
        .expect("the script's thread")
        .expect("running the Feast script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Feast SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_str(stdout.lines().last().expect("a line of JSON")).expect("JSON");

    // What the SDK read is what it wrote; the older row written last for
    // 1001 did not replace the newer one; an unknown driver reads as None.
    let read = &answer["read"];
    assert_eq!(read["driver_id"], json!([1001, 1002, 1003, 4242]), "{answer}");
    assert_eq!(read["conv_rate"], json!([0.25, 0.5, 0.75, null]), "{answer}");
    assert_eq!(read["acc_rate"], json!([0.9, 0.8, 0.7, null]), "{answer}");
    assert_eq!(read["avg_daily_trips"], json!([10, 20, 30, null]), "{answer}");
    assert_eq!(answer["full"], json!({"driver_id": [1002], "driver_hourly_stats__conv_rate": [0.5]}));

    // The SDK sends naive UTC times: wafer stored the instant it meant, and
    // its own API serves the rows too.
    let written_at = Timestamp::parse(answer["event_timestamp"].as_str().expect("event_timestamp")).expect("time");
    let request = json!({"entities": [{"driver_id": 1001}], "features": ["driver_hourly_stats:conv_rate"]});
    let (status, native) = app.post_json("/v1/features/online", &request).await;
    assert_eq!(status, StatusCode::OK, "{native}");
    let served = &native["results"][0]["features"]["driver_hourly_stats:conv_rate"];
    assert_eq!(served["value"], json!(0.25), "{native}");
    assert_eq!(served["event_timestamp"], json!(written_at.to_rfc3339()), "{native}");
}
