//! `wafer-bench materialize`: ingest and materialization throughput on the
//! embedded backend (SQLite + in-process online store) or, with
//! `--database-url` and `--online`, on PostgreSQL + Redis (its own schema
//! and key prefix, removed afterwards).
//!
//! Ingests `--tickers` synthetic daily series of `--days` bars (the demo's
//! generator), then materializes the `technical` group (12 features) for
//! all of them and reports rows/s for both steps.

use crate::backends::Backends;
use std::sync::Arc;
use std::time::Instant;
use wafer_host::model::Timestamp;
use wafer_host::service::materialize::MaterializeRequest;

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut tickers = 1000usize;
    let mut days = 252usize;
    let mut chunk = None;
    let mut slots = None;
    let usage = "--tickers N --days N --job-chunk-entities N --job-slots N";
    let mut backends = Backends::parse_args(args, usage, |flag, value| {
        match flag {
            "--tickers" => tickers = value.parse()?,
            "--days" => days = value.parse()?,
            "--job-chunk-entities" => chunk = Some(value.parse()?),
            "--job-slots" => slots = Some(value.parse()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let dir = std::env::temp_dir().join(format!("wafer-bench-mat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = wafer_host::config::Config::new(&dir);
    backends.configure(&mut config);
    config.cluster.job_chunk_entities = chunk.unwrap_or(config.cluster.job_chunk_entities);
    config.cluster.job_slots = slots.unwrap_or(config.cluster.job_slots);
    println!("materialize bench on {}", backends.describe());
    let result = measure(config, tickers, days).await;
    backends.clean_up().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(config: wafer_host::config::Config, tickers: usize, days: usize) -> anyhow::Result<()> {
    let app = wafer_host::App::open(config, Arc::new(wafer_host::clock::SystemClock)).await?;
    let w = &app.wafer;
    // Registers everything the demo does, with its five tickers.
    wafer_host::demo::load(w).await?;

    let end = Timestamp::from_secs(w.clock().now().micros() / Timestamp::MICROS_PER_SECOND);
    let csv: Vec<String> = (0..tickers).map(|i| wafer_host::demo::prices_csv(&format!("T{i:04}"), days, end)).collect();
    let t = Instant::now();
    let mut ingested = 0;
    for chunk in csv.chunks(100) {
        let mut body = String::from("ticker,ts,open,high,low,close,volume\n");
        for c in chunk {
            body.push_str(c.split_once('\n').map(|(_, rest)| rest).unwrap_or(""));
        }
        ingested += w.ingest_csv("prices", body.as_bytes()).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("ingest: {ingested} source rows in {secs:.2} s ({:.0} rows/s)", ingested as f64 / secs);

    let entities = (0..tickers).map(|i| serde_json::json!(format!("T{i:04}"))).collect();
    let t = Instant::now();
    let job = w
        .start_materialize(MaterializeRequest {
            feature_group: "technical".into(),
            entities: Some(entities),
            incremental: false,
        })
        .await?;
    let job = w.jobs().wait(&job.id).await?.expect("job");
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(job.errors.is_empty(), "job errors: {:?}", job.errors);
    println!(
        "materialize technical (12 features): {} tickers x {days} days -> {} feature rows in {secs:.2} s ({:.0} rows/s, {:.0} values/s)",
        job.entities_done,
        job.rows_written,
        job.rows_written as f64 / secs,
        job.rows_written as f64 * 12.0 / secs
    );
    Ok(())
}
