//! `wafer-bench load [--rows N] [--entities N] [--json true]`: bulk load of
//! feature rows over HTTP, one Parquet request of `--rows` rows (default
//! 1,000,000) of a 12-feature push group, on the embedded backend or (with
//! `--database-url`) PostgreSQL. With `--json true` the same rows are also
//! written as JSON `POST /v1/features/write` requests of 10,000 rows into a
//! second group, for the ratio in the same run.
//!
//! The time is the client's, from sending the first byte to the answer:
//! decoding, validation and the durable offline write, then the online
//! write. Building the body is not timed.

use crate::backends::Backends;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const FEATURES: usize = 12;
const DAY: i64 = 86_400;
/// 2020-01-01T00:00:00Z.
const START: i64 = 1_577_836_800;
/// Rows per JSON request.
const JSON_ROWS: usize = 10_000;

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let (mut rows, mut entities, mut with_json) = (1_000_000usize, 1_000usize, false);
    let mut backends = Backends::parse_args(args, "--rows N --entities N --json true", |flag, value| {
        match flag {
            "--rows" => rows = value.parse()?,
            "--entities" => entities = value.parse()?,
            "--json" => with_json = value.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    anyhow::ensure!(rows > 0 && entities > 0, "--rows and --entities must be at least 1");
    let dir = std::env::temp_dir().join(format!("wafer-bench-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = wafer_host::config::Config::new(&dir);
    backends.configure(&mut config);
    config.max_body_bytes = 512 << 20;
    println!("load bench on {}", backends.describe());
    let result = measure(config, rows, entities, with_json).await;
    backends.clean_up().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    config: wafer_host::config::Config,
    rows: usize,
    entities: usize,
    with_json: bool,
) -> anyhow::Result<()> {
    let app = wafer_host::App::open(config, Arc::new(wafer_host::clock::SystemClock)).await?;
    let w = app.wafer.clone();
    w.put_entity("ticker", serde_json::from_value(json!({"join_keys": ["ticker"]}))?).await?;
    let features: Vec<_> = (0..FEATURES).map(|i| json!({"name": format!("f{i}"), "type": "float64"})).collect();
    for name in ["parquet_load", "json_load"] {
        let group = json!({"entity": "ticker", "features": features, "producer": {"kind": "push"}});
        w.put_feature_group(name, serde_json::from_value(group)?).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = app.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();

    // Row n: entity n % entities on day n / entities.
    let value = |n: usize, f: usize| (n * 31 + f * 7) as f64 * 0.125;
    let t = Instant::now();
    let batch = {
        let mut columns: Vec<(String, ArrayRef)> = vec![
            (
                "ticker".into(),
                Arc::new((0..rows).map(|n| Some(format!("T{:05}", n % entities))).collect::<StringArray>()),
            ),
            (
                "event_timestamp".into(),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        (0..rows).map(|n| (START + (n / entities) as i64 * DAY) * 1_000_000).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ),
        ];
        for f in 0..FEATURES {
            let values: Vec<f64> = (0..rows).map(|n| value(n, f)).collect();
            columns.push((format!("f{f}"), Arc::new(Float64Array::from(values))));
        }
        RecordBatch::try_from_iter(columns)?
    };
    let mut body = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut body, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    println!(
        "built a Parquet body of {rows} rows x {FEATURES} features ({:.1} MB) in {:.2} s (not timed below)",
        body.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let response = client
        .post(format!("http://{addr}/v1/features/write?feature_group=parquet_load"))
        .header("content-type", "application/vnd.apache.parquet")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let answer = response.text().await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(status.is_success(), "answered {status}: {answer}");
    println!("Parquet: {rows} rows in one request in {secs:.2} s ({:.0} rows/s)", rows as f64 / secs);

    if with_json {
        let bodies: Vec<Vec<u8>> = (0..rows)
            .step_by(JSON_ROWS)
            .map(|start| {
                let chunk: Vec<_> = (start..rows.min(start + JSON_ROWS))
                    .map(|n| {
                        let values: serde_json::Map<String, serde_json::Value> =
                            (0..FEATURES).map(|f| (format!("f{f}"), json!(value(n, f)))).collect();
                        let at = wafer_host::model::Timestamp::from_secs(START + (n / entities) as i64 * DAY);
                        json!({"entity": {"ticker": format!("T{:05}", n % entities)},
                               "event_timestamp": at.to_rfc3339(), "values": values})
                    })
                    .collect();
                serde_json::to_vec(&json!({"feature_group": "json_load", "rows": chunk})).expect("JSON")
            })
            .collect();
        let t = Instant::now();
        for body in bodies {
            let response = client
                .post(format!("http://{addr}/v1/features/write"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            anyhow::ensure!(status.is_success(), "answered {status}: {}", response.text().await?);
        }
        let secs = t.elapsed().as_secs_f64();
        println!("JSON: {rows} rows in requests of {JSON_ROWS} in {secs:.2} s ({:.0} rows/s)", rows as f64 / secs);
    }
    server.abort();
    w.shutdown().await;
    Ok(())
}
