//! `wafer-bench materialize`: ingest and materialization throughput on the
//! embedded backend (SQLite + in-process online store) or, with
//! `--database-url` and `--online`, on PostgreSQL + Redis (its own schema
//! and key prefix, removed afterwards).
//!
//! Ingests `--tickers` synthetic daily series of `--days` bars and their
//! quarterly fundamentals (the demo's generators), then materializes the
//! `--groups` (default: `technical,risk,valuation`, the 24 seed ticker
//! features, `risk` against the demo's SPY) for all of them one after the
//! other, and reports the time and rows/s of each step and of all groups.

use crate::backends::Backends;
use std::sync::Arc;
use std::time::Instant;
use wafer_host::service::materialize::MaterializeRequest;

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut tickers = 1000usize;
    let mut days = 252usize;
    let mut chunk = None;
    let mut slots = None;
    let mut groups: Vec<String> = ["technical", "risk", "valuation"].map(String::from).to_vec();
    let usage = "--tickers N --days N --groups G1,G2 --job-chunk-entities N --job-slots N";
    let mut backends = Backends::parse_args(args, usage, |flag, value| {
        match flag {
            "--tickers" => tickers = value.parse()?,
            "--days" => days = value.parse()?,
            "--groups" => groups = value.split(',').map(String::from).collect(),
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
    let result = measure(config, tickers, days, &groups).await;
    backends.clean_up().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    config: wafer_host::config::Config,
    tickers: usize,
    days: usize,
    groups: &[String],
) -> anyhow::Result<()> {
    let app = wafer_host::App::open(config, Arc::new(wafer_host::clock::SystemClock)).await?;
    let w = &app.wafer;
    // Registers everything the demo does, with its five tickers; the
    // bench's series end where the demo's do, so they align with SPY's.
    let end = wafer_host::demo::load(w).await?;

    let names: Vec<String> = (0..tickers).map(|i| format!("T{i:04}")).collect();
    let t = Instant::now();
    let (mut ingested, mut quarters) = (0, 0);
    for chunk in names.chunks(100) {
        let mut prices = String::from("ticker,ts,open,high,low,close,volume\n");
        let mut fundamentals = String::new();
        for name in chunk {
            let csv = wafer_host::demo::prices_csv(name, days, end);
            prices.push_str(csv.split_once('\n').map(|(_, rest)| rest).unwrap_or(""));
            let csv = wafer_host::demo::fundamentals_csv(name, end);
            let (header, rest) = csv.split_once('\n').unwrap_or((&csv, ""));
            if fundamentals.is_empty() {
                fundamentals.push_str(header);
                fundamentals.push('\n');
            }
            fundamentals.push_str(rest);
        }
        ingested += w.ingest_csv("prices", prices.as_bytes()).await?;
        quarters += w.ingest_csv("fundamentals", fundamentals.as_bytes()).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ingest: {ingested} price rows and {quarters} fundamentals rows in {secs:.2} s ({:.0} rows/s)",
        (ingested + quarters) as f64 / secs
    );

    let entities: Vec<serde_json::Value> = names.iter().map(|n| serde_json::json!(n)).collect();
    let (mut total_secs, mut total_rows, mut total_features) = (0.0, 0, 0);
    for group in groups {
        let features = w.feature_group(group)?.features.len();
        let t = Instant::now();
        let job = w
            .start_materialize(MaterializeRequest {
                feature_group: group.clone(),
                entities: Some(entities.clone()),
                incremental: false,
            })
            .await?;
        let job = w.jobs().wait(&job.id).await?.expect("job");
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(job.errors.is_empty(), "{group}: job errors: {:?}", job.errors);
        println!(
            "materialize {group} ({features} features): {} tickers x {days} days -> {} feature rows in {secs:.2} s \
             ({:.0} rows/s, {:.0} values/s)",
            job.entities_done,
            job.rows_written,
            job.rows_written as f64 / secs,
            job.rows_written as f64 * features as f64 / secs
        );
        (total_secs, total_rows, total_features) =
            (total_secs + secs, total_rows + job.rows_written, total_features + features);
    }
    println!(
        "materialize all {} groups ({total_features} features): {total_rows} feature rows in {total_secs:.2} s",
        groups.len()
    );
    Ok(())
}
