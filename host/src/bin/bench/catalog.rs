//! `wafer-bench catalog`: every seed feature of one ticker (`technical`,
//! `risk`, `valuation`: 12 + 7 + 5 in CONTRACT.md) read through the service, as online hits and as
//! computed on the miss (nothing materialized for the ticker: the host runs
//! all three batch transforms over its 300-day history within the read),
//! and as reads of tickers that have no data at all.
//!
//! `--settle-ms N` waits that long between a fresh ticker's ingest and its
//! read (default 0: the read follows the ingest at once, and competes with
//! the previous read's write-back for the cores).
//!
//! Loads the demo data set on the embedded stores (or `--database-url` /
//! `--online`), then reads in process, without HTTP, so the numbers are the
//! serving path itself.

use crate::backends::Backends;
use std::sync::Arc;
use std::time::Instant;
use wafer_host::model::Timestamp;
use wafer_host::service::serving::{Fallback, OnlineRequest, ValueSource};

const GROUPS: [&str; 3] = ["technical", "risk", "valuation"];

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut hits = 2000usize;
    let mut misses = 200usize;
    let mut settle_ms = 0u64;
    let mut backends = Backends::parse_args(args, "--hits N --misses N --settle-ms N", |flag, value| {
        match flag {
            "--hits" => hits = value.parse()?,
            "--misses" => misses = value.parse()?,
            "--settle-ms" => settle_ms = value.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let dir = std::env::temp_dir().join(format!("wafer-bench-catalog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = wafer_host::config::Config::new(&dir);
    backends.configure(&mut config);
    println!("catalog bench on {}", backends.describe());
    let result = measure(config, hits, misses, std::time::Duration::from_millis(settle_ms)).await;
    backends.clean_up().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn request(ticker: &str, fallback: Fallback) -> OnlineRequest {
    OnlineRequest {
        entities: vec![serde_json::json!({"ticker": ticker}).as_object().cloned().unwrap_or_default()],
        features: Vec::new(),
        feature_groups: GROUPS.iter().map(|g| g.to_string()).collect(),
        request_context: Default::default(),
        fallback,
        timeout_ms: Some(10_000),
        include_provenance: false,
    }
}

async fn measure(
    config: wafer_host::config::Config,
    hits: usize,
    misses: usize,
    settle: std::time::Duration,
) -> anyhow::Result<()> {
    let app = wafer_host::App::open(config, Arc::new(wafer_host::clock::SystemClock)).await?;
    let w = &app.wafer;
    wafer_host::demo::load(w).await?;

    let mut hit_micros = Vec::with_capacity(hits);
    for _ in 0..hits {
        let t = Instant::now();
        let answer = w.read_online(request("AAPL", Fallback::None)).await?;
        hit_micros.push(t.elapsed().as_secs_f64() * 1e6);
        let features = &answer.results[0].features;
        anyhow::ensure!(features.len() == 24, "expected the 24 seed features, got {}", features.len());
        anyhow::ensure!(
            features.iter().all(|(_, v)| v.source == Some(ValueSource::Online)),
            "a demo ticker's features should all be online hits"
        );
    }

    // Fresh tickers: prices and fundamentals ingested, nothing materialized.
    let end = Timestamp::from_secs(w.clock().now().micros() / Timestamp::MICROS_PER_SECOND);
    let mut miss_micros = Vec::with_capacity(misses);
    for i in 0..misses {
        let ticker = format!("MISS{i:04}");
        w.ingest_csv("prices", wafer_host::demo::prices_csv(&ticker, wafer_host::demo::DEMO_DAYS, end).as_bytes())
            .await?;
        w.ingest_csv("fundamentals", wafer_host::demo::fundamentals_csv(&ticker, end).as_bytes()).await?;
        // With --settle-ms, the read comes a while after the ingest (and
        // the previous read's write-back), as a ticker's first read would.
        tokio::time::sleep(settle).await;
        let t = Instant::now();
        let answer = w.read_online(request(&ticker, Fallback::Compute)).await?;
        miss_micros.push(t.elapsed().as_secs_f64() * 1e6);
        let features = &answer.results[0].features;
        anyhow::ensure!(
            features.iter().all(|(_, v)| v.source == Some(ValueSource::Computed)),
            "{ticker}: every feature should be computed on the miss"
        );
    }
    // A ticker nothing was ever ingested for, read as a client would
    // (computing allowed): there is nothing to compute, every time.
    let mut unknown_micros = Vec::with_capacity(hits);
    for i in 0..hits {
        let ticker = format!("NODATA{:04}", i % 100);
        let t = Instant::now();
        let answer = w.read_online(request(&ticker, Fallback::Compute)).await?;
        unknown_micros.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            answer.results[0].features.iter().all(|(_, v)| v.source.is_none()),
            "{ticker} has no data: every feature should be missing"
        );
    }
    println!(
        "| {:<58} | {:>9} | {:>9} | {:>5} |",
        "24 seed features of one ticker (3 groups)", "p50 us", "p99 us", "n"
    );
    println!("|{:-<60}|{:->11}|{:->11}|{:->7}|", "", "", "", "");
    report("online hit", hit_micros);
    report("computed on the miss (3 transforms over 300 days, written back)", miss_micros);
    report("a ticker with no data at all (100 of them, computing allowed)", unknown_micros);
    Ok(())
}

fn report(what: &str, mut micros: Vec<f64>) {
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    println!("| {what:<58} | {:>9.0} | {:>9.0} | {:>5} |", at(0.5), at(0.99), micros.len());
}
