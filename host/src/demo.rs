//! The demo data set and setup behind `wafer demo`.
//!
//! Prices are synthetic and reproducible: for each ticker a geometric
//! random walk (daily drift 0.03 %, daily volatility 1.5 %, SPY 1 %) from a
//! PRNG seeded with the ticker's name, one bar per calendar day for
//! [`DEMO_DAYS`] days. The last bar is stamped with the demo's start time
//! and earlier bars at whole days before it, so the freshly materialized
//! features are `fresh` for the `technical` group's one-hour interval.

use crate::bundled;
use crate::model::{Entity, FeatureGroup, Source, Timestamp};
use crate::service::Wafer;
use crate::service::materialize::MaterializeRequest;
use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::fmt::Write;

pub const DEMO_TICKERS: [&str; 5] = ["AAPL", "MSFT", "GOOG", "AMZN", "SPY"];
pub const DEMO_DAYS: usize = 300;

/// Daily OHLCV bars for `ticker` as CSV (`ticker,ts,open,high,low,close,volume`),
/// the last one at `end`.
pub fn prices_csv(ticker: &str, days: usize, end: Timestamp) -> String {
    let seed = ticker.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut rng = SmallRng::seed_from_u64(seed);
    let vol = if ticker == "SPY" { 0.010 } else { 0.015 };
    let mut close = 50.0 + rng.r#gen::<f64>() * 250.0;
    let mut out = String::from("ticker,ts,open,high,low,close,volume\n");
    for day in 0..days {
        let ts = end.plus_secs(-(((days - 1 - day) as i64) * 86_400));
        let open = close;
        // Box-Muller: a standard normal from two uniforms.
        let (u1, u2): (f64, f64) = (rng.r#gen::<f64>().max(1e-12), rng.r#gen());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        close = open * (0.0003 + vol * z).exp();
        let high = open.max(close) * (1.0 + rng.r#gen::<f64>() * 0.005);
        let low = open.min(close) * (1.0 - rng.r#gen::<f64>() * 0.005);
        let volume = 1_000_000 + rng.gen_range(0..4_000_000);
        let _ = writeln!(out, "{ticker},{ts},{open:.4},{high:.4},{low:.4},{close:.4},{volume}");
    }
    out
}

/// Publishes the bundled transforms, registers the demo definitions,
/// ingests demo prices and materializes every group. Idempotent on an
/// empty or demo-only store.
pub async fn load(wafer: &Wafer) -> anyhow::Result<()> {
    for t in bundled::ALL {
        let published = wafer.publish_transform(t.name, t.version, t.bytes).await?;
        wafer.activate_transform(t.name, t.version).await?;
        tracing::info!(transform = t.name, version = t.version, sha256 = %published.version.sha256, "demo: transform published and active");
    }
    let entity: Entity =
        serde_json::from_value(json!({"join_keys": ["ticker"], "description": "A listed stock or ETF"}))?;
    wafer.put_entity("ticker", entity).await?;
    let prices: Source = serde_json::from_value(json!({
        "entity": "ticker", "timestamp_field": "ts",
        "description": "Daily OHLCV bars",
        "fields": [
            {"name": "open", "type": "float64"}, {"name": "high", "type": "float64"},
            {"name": "low", "type": "float64"}, {"name": "close", "type": "float64"},
            {"name": "volume", "type": "int64"}
        ]
    }))?;
    wafer.put_source("prices", prices).await?;
    let technical: FeatureGroup = serde_json::from_value(technical_group_json())?;
    wafer.put_feature_group("technical", technical).await?;

    let end = Timestamp::from_secs(wafer.clock().now().micros() / Timestamp::MICROS_PER_SECOND);
    for ticker in DEMO_TICKERS {
        let written = wafer.ingest_csv("prices", prices_csv(ticker, DEMO_DAYS, end).as_bytes()).await?;
        tracing::info!(ticker, rows = written, "demo: prices ingested");
    }
    let job = wafer
        .start_materialize(MaterializeRequest { feature_group: "technical".into(), entities: None, incremental: false })
        .await?;
    let job = wafer.jobs().wait(&job.id).await?.context("demo job vanished")?;
    anyhow::ensure!(job.errors.is_empty(), "demo materialization failed: {:?}", job.errors);
    tracing::info!(rows = job.rows_written, entities = job.entities_done, "demo: technical features materialized");
    Ok(())
}

/// The `technical` group: the 12 indicators, fresh for an hour.
pub fn technical_group_json() -> serde_json::Value {
    let features: Vec<_> = [
        ("sma_20", "Mean of the last 20 closes"),
        ("sma_50", "Mean of the last 50 closes"),
        ("sma_200", "Mean of the last 200 closes"),
        ("ema_12", "12-day EMA, seeded with the SMA of the first 12 closes"),
        ("ema_26", "26-day EMA, seeded with the SMA of the first 26 closes"),
        ("rsi_14", "Wilder's 14-day RSI"),
        ("macd", "ema_12 - ema_26"),
        ("macd_signal", "9-day EMA of macd"),
        ("macd_histogram", "macd - macd_signal"),
        ("bollinger_upper", "SMA(20) + 2 population std of the last 20 closes"),
        ("bollinger_middle", "SMA(20)"),
        ("bollinger_lower", "SMA(20) - 2 population std of the last 20 closes"),
    ]
    .iter()
    .map(|(n, d)| json!({"name": n, "type": "float64", "description": d}))
    .collect();
    json!({
        "entity": "ticker",
        "description": "Technical indicators from daily closes",
        "features": features,
        "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
        "producer": {"kind": "batch", "transform": "indicators", "source": "prices", "lookback": 252, "schedule_seconds": 3600}
    })
}
