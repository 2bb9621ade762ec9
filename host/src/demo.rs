//! The demo data set and setup behind `wafer demo`: the whole seed catalog
//! (`technical`, `risk`, `valuation`, on-demand `signals`) over five
//! tickers, and the `engagement` example over a handful of HCPs.
//!
//! Every generator here is deterministic (a PRNG seeded with the entity's
//! name) and public, so tests rebuild the exact data the demo ingested.
//! All data ends at the demo's start time (`end`), so the freshly
//! materialized features are `fresh`:
//!
//! - **Prices** ([`prices_csv`]): for each of [`DEMO_TICKERS`] a geometric
//!   random walk (daily drift 0.03 %, daily volatility 1.5 %, SPY 1 %), one
//!   bar per calendar day for [`DEMO_DAYS`] days, the last one at `end` and
//!   earlier ones at whole days before it. SPY is the market and the `risk`
//!   group's benchmark series: a stock's daily shock is correlated 0.6 with
//!   SPY's on the same day, so its beta comes out near 0.9.
//! - **Fundamentals** ([`fundamentals`]): four quarterly rows per stock,
//!   published 20, 111, 202 and 293 days before `end`, each consistent with
//!   the ticker's synthetic close on its publication day (a fixed
//!   price-to-earnings, -book and -sales profile per ticker, with a little
//!   seeded noise, and a slowly shrinking share count; tickers outside
//!   the demo, which tests and benchmarks make up, get a seeded profile).
//!   AMZN pays no dividend (0). SPY has none: it is an ETF with no earnings
//!   of its own, so its valuation features stay null (served `missing`),
//!   which is the catalog's "no fundamentals yet" rule.
//! - **Engagement events** ([`engagement_events`]): for each of
//!   [`DEMO_HCPS`] a seeded rate of 1-6 events a week over the
//!   [`ENGAGEMENT_DAYS`] days before `end`, plus one in the last six hours
//!   (so each HCP's rolling aggregates are fresh), each lasting 2-45
//!   minutes.
//!
//! The demo's serving config ([`serving_config`]) adds an enrichment task,
//! `market_briefing`, over the ticker features, and a Feast feature
//! service, `ticker_overview`.

use crate::bundled;
use crate::config::ServingConfig;
use crate::model::{Entity, FeatureGroup, JobState, Source, Timestamp};
use crate::service::Wafer;
use crate::service::enrich::TaskConfig;
use crate::service::materialize::MaterializeRequest;
use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::fmt::Write;
use std::time::Instant;

pub const DEMO_TICKERS: [&str; 5] = ["AAPL", "MSFT", "GOOG", "AMZN", "SPY"];
pub const DEMO_DAYS: usize = 300;
/// The `risk` group's benchmark ticker (one of [`DEMO_TICKERS`]).
pub const BENCHMARK: &str = "SPY";
/// The demo's health-care professionals (entity `hcp`, join key `hcp_id`).
pub const DEMO_HCPS: [&str; 6] = ["hcp_001", "hcp_002", "hcp_003", "hcp_004", "hcp_005", "hcp_006"];
/// Days of engagement history before the demo's start.
pub const ENGAGEMENT_DAYS: i64 = 120;
/// Days before `end` on which each quarter's fundamentals were published,
/// newest first.
pub const FUNDAMENTALS_LAGS_DAYS: [i64; 4] = [20, 111, 202, 293];
/// The groups `load` materializes, in order.
pub const MATERIALIZED_GROUPS: [&str; 4] = ["technical", "risk", "valuation", "engagement"];

const DAY: i64 = 86_400;

/// FNV-1a of `name`: a stable seed per entity (and per generator, via `salt`).
fn seed(name: &str, salt: u64) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ salt, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// One daily bar, unrounded.
struct Bar {
    ts: Timestamp,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: i64,
}

/// One day's random draws of a ticker's walk.
struct Draw {
    /// A standard normal, the day's shock.
    z: f64,
    high: f64,
    low: f64,
    volume: i64,
}

/// A ticker's first open and its daily draws, from its own seeded PRNG.
fn draws(ticker: &str, days: usize) -> (f64, Vec<Draw>) {
    let mut rng = SmallRng::seed_from_u64(seed(ticker, 0));
    let first = 50.0 + rng.r#gen::<f64>() * 250.0;
    let draws = (0..days)
        .map(|_| {
            // Box-Muller: a standard normal from two uniforms.
            let (u1, u2): (f64, f64) = (rng.r#gen::<f64>().max(1e-12), rng.r#gen());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            Draw { z, high: rng.r#gen(), low: rng.r#gen(), volume: 1_000_000 + rng.gen_range(0..4_000_000) }
        })
        .collect();
    (first, draws)
}

/// How much of a stock's daily shock is the market's (SPY's shock on the
/// same day): correlation 0.6, so with 1.5 % against SPY's 1 % a stock's
/// beta is about 0.9.
const MARKET_LOADING: f64 = 0.6;

/// The random walk behind [`prices_csv`]. Bar `i`'s values do not depend on
/// `days` (only its timestamp does).
fn bars(ticker: &str, days: usize, end: Timestamp) -> Vec<Bar> {
    let (mut close, daily) = draws(ticker, days);
    // Every ticker but the market itself moves partly with SPY, drawn over
    // the same number of days (so the same dates when lengths agree).
    let market: Vec<f64> =
        if ticker == BENCHMARK { vec![0.0; days] } else { draws(BENCHMARK, days).1.iter().map(|d| d.z).collect() };
    let (vol, loading) = if ticker == BENCHMARK { (0.010, 0.0) } else { (0.015, MARKET_LOADING) };
    let own = (1.0 - loading * loading).sqrt();
    let mut out = Vec::with_capacity(days);
    for (day, (d, m)) in daily.iter().zip(market).enumerate() {
        let ts = end.plus_secs(-(((days - 1 - day) as i64) * DAY));
        let open = close;
        close = open * (0.0003 + vol * (loading * m + own * d.z)).exp();
        let high = open.max(close) * (1.0 + d.high * 0.005);
        let low = open.min(close) * (1.0 - d.low * 0.005);
        out.push(Bar { ts, open, high, low, close, volume: d.volume });
    }
    out
}

/// Daily OHLCV bars for `ticker` as CSV (`ticker,ts,open,high,low,close,volume`),
/// the last one at `end`.
pub fn prices_csv(ticker: &str, days: usize, end: Timestamp) -> String {
    let mut out = String::from("ticker,ts,open,high,low,close,volume\n");
    for Bar { ts, open, high, low, close, volume } in bars(ticker, days, end) {
        let _ = writeln!(out, "{ticker},{ts},{open:.4},{high:.4},{low:.4},{close:.4},{volume}");
    }
    out
}

/// Entity rows for a training set over the demo's history
/// (`ticker,event_timestamp,label`): every demo stock at every 10th bar
/// from bar 60 on, an hour after the bar (inside every group's max age),
/// labelled 1 when the close 20 bars later is higher. The label looks
/// ahead; the features joined to it must not, which is what point-in-time
/// retrieval guarantees.
pub fn training_entities_csv(end: Timestamp) -> String {
    let mut out = String::from("ticker,event_timestamp,label\n");
    for ticker in DEMO_TICKERS.iter().filter(|t| **t != BENCHMARK) {
        let bars = bars(ticker, DEMO_DAYS, end);
        for i in (60..DEMO_DAYS - 20).step_by(10) {
            let label = u8::from(bars[i + 20].close > bars[i].close);
            let _ = writeln!(out, "{ticker},{},{label}", bars[i].ts.plus_secs(3600));
        }
    }
    out
}

/// One quarterly `fundamentals` row, as ingested (the CSV prints these exact
/// values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fundamentals {
    /// When the figures became public.
    pub ts: Timestamp,
    pub shares_outstanding: f64,
    pub eps_ttm: f64,
    pub book_value_per_share: f64,
    pub revenue_ttm: f64,
    pub dividends_per_share_ttm: f64,
}

/// A stock's valuation profile: shares, then the P/E, P/B and P/S ratios
/// and dividend yield its figures are derived at. The demo's stocks have
/// fixed ones; any other ticker (tests and benchmarks make up their own)
/// gets a seeded one, a non-payer one time in four.
fn profile(ticker: &str) -> Option<(f64, f64, f64, f64, f64)> {
    Some(match ticker {
        "AAPL" => (15.2e9, 29.0, 45.0, 7.5, 0.005),
        "MSFT" => (7.43e9, 34.0, 11.0, 12.0, 0.008),
        "GOOG" => (12.3e9, 23.0, 6.5, 6.0, 0.0045),
        "AMZN" => (10.5e9, 42.0, 8.0, 3.2, 0.0), // a non-payer
        BENCHMARK => return None,                // an ETF: no earnings of its own
        _ => {
            let mut rng = SmallRng::seed_from_u64(seed(ticker, 3));
            let shares = round_to(rng.gen_range(0.2e9..20e9), 1e6);
            let (pe, pb, ps) = (rng.gen_range(12.0..40.0), rng.gen_range(1.5..12.0), rng.gen_range(1.0..10.0));
            let yield_ = if rng.gen_bool(0.25) { 0.0 } else { rng.gen_range(0.002..0.03) };
            (shares, pe, pb, ps, yield_)
        }
    })
}

fn round_to(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

/// The demo's quarterly fundamentals for `ticker`, oldest first, published
/// [`FUNDAMENTALS_LAGS_DAYS`] before `end` (all before the last price bar),
/// consistent with [`prices_csv`] over [`DEMO_DAYS`] days ending at `end`.
/// Empty for SPY.
pub fn fundamentals(ticker: &str, end: Timestamp) -> Vec<Fundamentals> {
    let Some((shares, pe, pb, ps, yield_)) = profile(ticker) else { return Vec::new() };
    let closes: Vec<f64> = bars(ticker, DEMO_DAYS, end).iter().map(|b| b.close).collect();
    let mut rng = SmallRng::seed_from_u64(seed(ticker, 1));
    let mut noise = |spread: f64| 1.0 + spread * (rng.r#gen::<f64>() - 0.5);
    FUNDAMENTALS_LAGS_DAYS
        .iter()
        .rev()
        .enumerate()
        .map(|(quarter, &lag)| {
            let price = closes[(DEMO_DAYS - 1).saturating_sub(lag as usize)];
            let shares = round_to(shares * (1.0 - 0.005 * quarter as f64), 1e6);
            Fundamentals {
                ts: end.plus_secs(-lag * DAY),
                shares_outstanding: shares,
                eps_ttm: round_to(price / (pe * noise(0.2)), 0.01),
                book_value_per_share: round_to(price / (pb * noise(0.1)), 0.01),
                revenue_ttm: round_to(price * shares / (ps * noise(0.1)), 1e6),
                dividends_per_share_ttm: round_to(price * yield_, 0.01),
            }
        })
        .collect()
}

/// [`fundamentals`] as CSV (`ticker,ts,shares_outstanding,eps_ttm,
/// book_value_per_share,revenue_ttm,dividends_per_share_ttm`).
pub fn fundamentals_csv(ticker: &str, end: Timestamp) -> String {
    let mut out =
        String::from("ticker,ts,shares_outstanding,eps_ttm,book_value_per_share,revenue_ttm,dividends_per_share_ttm\n");
    for f in fundamentals(ticker, end) {
        let _ = writeln!(
            out,
            "{ticker},{},{},{},{},{},{}",
            f.ts, f.shares_outstanding, f.eps_ttm, f.book_value_per_share, f.revenue_ttm, f.dividends_per_share_ttm
        );
    }
    out
}

/// One engagement event of an HCP (a call, visit or webinar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngagementEvent {
    pub ts: Timestamp,
    pub minutes: f64,
}

/// The demo's engagement events for `hcp`, oldest first, at distinct whole
/// seconds within the [`ENGAGEMENT_DAYS`] days before `end` (the latest in
/// the last six hours).
pub fn engagement_events(hcp: &str, end: Timestamp) -> Vec<EngagementEvent> {
    let mut rng = SmallRng::seed_from_u64(seed(hcp, 2));
    let per_week = 1.0 + rng.r#gen::<f64>() * 5.0;
    let n = (per_week * ENGAGEMENT_DAYS as f64 / 7.0).round() as usize;
    // Seconds before `end`; one recent event keeps the aggregates fresh.
    let mut offsets: Vec<i64> = (0..n).map(|_| rng.gen_range(0..ENGAGEMENT_DAYS * DAY)).collect();
    offsets.push(rng.gen_range(0..6 * 3600));
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    // The source keeps one row per entity and instant.
    offsets.dedup();
    offsets
        .into_iter()
        .map(|offset| EngagementEvent {
            ts: end.plus_secs(-offset),
            minutes: round_to(2.0 + rng.r#gen::<f64>() * 43.0, 0.5),
        })
        .collect()
}

/// [`engagement_events`] as CSV (`hcp_id,ts,minutes`).
pub fn engagement_csv(hcp: &str, end: Timestamp) -> String {
    let mut out = String::from("hcp_id,ts,minutes\n");
    for e in engagement_events(hcp, end) {
        let _ = writeln!(out, "{hcp},{},{}", e.ts, e.minutes);
    }
    out
}

/// The demo's enrichment task and Feast feature service: what an agent
/// briefing on a stock is told, most important first. Valuation features
/// change weekly, so a week-old value still counts.
pub fn serving_config() -> ServingConfig {
    let mut config = ServingConfig::default();
    let briefing = [
        "technical:rsi_14",
        "technical:macd_histogram",
        "risk:volatility_30d",
        "risk:beta",
        "risk:max_drawdown",
        "valuation:pe_ratio",
        "valuation:dividend_yield",
        "technical:sma_50",
    ];
    config.enrichment.tasks.insert(
        "market_briefing".into(),
        TaskConfig {
            enabled: true,
            features: briefing.iter().map(|f| f.to_string()).collect(),
            freshness_threshold_seconds: 7 * DAY as u64,
            description: "Momentum, risk and valuation of one ticker".into(),
        },
    );
    let overview = ["technical:rsi_14", "risk:beta", "valuation:pe_ratio"];
    config.feature_services.insert("ticker_overview".into(), overview.iter().map(|f| f.to_string()).collect());
    config
}

/// Publishes the bundled transforms, registers the demo definitions,
/// ingests the demo data and materializes every stored group, failing on
/// any job error; returns the demo's `end`, the time its data ends at.
/// Idempotent on an empty or demo-only store.
pub async fn load(wafer: &Wafer) -> anyhow::Result<Timestamp> {
    for t in bundled::ALL {
        let published = wafer.publish_transform(t.name, t.version, t.bytes).await?;
        wafer.activate_transform(t.name, t.version).await?;
        tracing::info!(transform = t.name, version = t.version, sha256 = %published.version.sha256, "demo: transform published and active");
    }
    register(wafer).await?;

    let end = Timestamp::from_secs(wafer.clock().now().micros() / Timestamp::MICROS_PER_SECOND);
    for ticker in DEMO_TICKERS {
        let prices = wafer.ingest_csv("prices", prices_csv(ticker, DEMO_DAYS, end).as_bytes()).await?;
        let fundamentals = wafer.ingest_csv("fundamentals", fundamentals_csv(ticker, end).as_bytes()).await?;
        tracing::info!(ticker, prices, fundamentals, "demo: ticker data ingested");
    }
    for hcp in DEMO_HCPS {
        let events = wafer.ingest_csv("engagement_events", engagement_csv(hcp, end).as_bytes()).await?;
        tracing::info!(hcp, events, "demo: engagement events ingested");
    }

    // Jobs of different groups run side by side; each is waited for.
    let mut jobs = Vec::new();
    for group in MATERIALIZED_GROUPS {
        let request = MaterializeRequest { feature_group: group.into(), entities: None, incremental: false };
        jobs.push((group, Instant::now(), wafer.start_materialize(request).await?));
    }
    for (group, started, job) in jobs {
        let job = wafer.jobs().wait(&job.id).await?.with_context(|| format!("demo job for {group} vanished"))?;
        anyhow::ensure!(
            job.state == JobState::Succeeded && job.errors.is_empty(),
            "demo materialization of {group} ended {:?}: {:?}",
            job.state,
            job.errors
        );
        tracing::info!(
            group,
            rows = job.rows_written,
            entities = job.entities_done,
            ms = started.elapsed().as_millis() as u64,
            "demo: group materialized"
        );
    }
    Ok(end)
}

/// The demo's entities, sources and feature groups.
async fn register(wafer: &Wafer) -> anyhow::Result<()> {
    let ticker: Entity =
        serde_json::from_value(json!({"join_keys": ["ticker"], "description": "A listed stock or ETF"}))?;
    wafer.put_entity("ticker", ticker).await?;
    let hcp: Entity =
        serde_json::from_value(json!({"join_keys": ["hcp_id"], "description": "A health-care professional"}))?;
    wafer.put_entity("hcp", hcp).await?;
    let float64 = |names: &[&str]| -> Vec<serde_json::Value> {
        names.iter().map(|n| json!({"name": n, "type": "float64"})).collect()
    };
    let mut price_fields = float64(&["open", "high", "low", "close"]);
    price_fields.push(json!({"name": "volume", "type": "int64"}));
    let sources = [
        (
            "prices",
            json!({"entity": "ticker", "timestamp_field": "ts", "description": "Daily OHLCV bars", "fields": price_fields}),
        ),
        (
            "fundamentals",
            json!({
                "entity": "ticker", "timestamp_field": "ts",
                "description": "Quarterly fundamentals, timestamped when they became public",
                "fields": float64(&["shares_outstanding", "eps_ttm", "book_value_per_share", "revenue_ttm", "dividends_per_share_ttm"])
            }),
        ),
        (
            "engagement_events",
            json!({
                "entity": "hcp", "timestamp_field": "ts",
                "description": "One row per engagement (call, visit, webinar) with its length",
                "fields": float64(&["minutes"])
            }),
        ),
    ];
    for (name, source) in sources {
        let source: Source = serde_json::from_value(source)?;
        wafer.put_source(name, source).await?;
    }
    // `signals` reads `technical`, so it comes after it.
    let groups = [
        ("technical", technical_group_json()),
        ("risk", risk_group_json()),
        ("valuation", valuation_group_json()),
        ("signals", signals_group_json()),
        ("engagement", engagement_group_json()),
    ];
    for (name, group) in groups {
        let group: FeatureGroup = serde_json::from_value(group)?;
        wafer.put_feature_group(name, group).await.with_context(|| format!("registering feature group {name}"))?;
    }
    Ok(())
}

fn features(specs: &[(&str, &str)], value_type: &str) -> Vec<serde_json::Value> {
    specs.iter().map(|(n, d)| json!({"name": n, "type": value_type, "description": d})).collect()
}

/// The `technical` group: the 12 indicators, fresh for an hour.
pub fn technical_group_json() -> serde_json::Value {
    let features = features(
        &[
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
        ],
        "float64",
    );
    json!({
        "entity": "ticker",
        "description": "Technical indicators from daily closes",
        "features": features,
        "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
        "producer": {"kind": "batch", "transform": "indicators", "source": "prices", "lookback": 252, "schedule_seconds": 3600}
    })
}

/// The `risk` group: seven risk measures over a trading year of daily
/// returns, beta against [`BENCHMARK`]; fresh for a day.
pub fn risk_group_json() -> serde_json::Value {
    let features = features(
        &[
            ("volatility_30d", "Sample std of the last 30 daily returns x sqrt(252)"),
            ("volatility_90d", "Sample std of the last 90 daily returns x sqrt(252)"),
            ("beta", "Cov / var of the last 252 returns against the benchmark, closes joined on date"),
            ("var_95", "5th percentile of the last 252 returns (linear interpolation); negative for a loss"),
            ("cvar_95", "Mean of the last 252 returns at or below var_95"),
            ("sharpe_ratio", "Mean / sample std of the last 252 returns x sqrt(252), risk-free rate 0"),
            ("max_drawdown", "Min over the last 253 closes of close / running max - 1"),
        ],
        "float64",
    );
    json!({
        "entity": "ticker",
        "description": "Risk measures from daily closes, beta against a benchmark ticker",
        "features": features,
        "freshness": {"expected_interval_seconds": 86_400, "max_age_seconds": 172_800},
        "producer": {
            "kind": "batch", "transform": "risk", "source": "prices", "lookback": 253,
            "schedule_seconds": 86_400, "params": {"benchmark": BENCHMARK}
        }
    })
}

/// The `valuation` group: five ratios of the latest close and the latest
/// fundamentals published on or before it; fresh for a week.
pub fn valuation_group_json() -> serde_json::Value {
    let features = features(
        &[
            ("pe_ratio", "close / eps_ttm (not clamped)"),
            ("pb_ratio", "close / book_value_per_share"),
            ("ps_ratio", "market_cap / revenue_ttm"),
            ("dividend_yield", "dividends_per_share_ttm / close, a fraction; 0 for non-payers"),
            ("market_cap", "close x shares_outstanding"),
        ],
        "float64",
    );
    json!({
        "entity": "ticker",
        "description": "Valuation ratios from daily closes and published fundamentals",
        "features": features,
        "freshness": {"expected_interval_seconds": 604_800, "max_age_seconds": 1_209_600},
        "producer": {
            "kind": "batch", "transform": "valuation", "sources": ["prices", "fundamentals"], "lookback": 1,
            "schedule_seconds": 604_800
        }
    })
}

/// The on-demand `signals` group: a request-time price against the stored
/// 20- and 50-day SMAs (`request_context.price`).
pub fn signals_group_json() -> serde_json::Value {
    let mut features = features(
        &[
            ("pct_from_sma_20", "(price - sma_20) / sma_20, a fraction"),
            ("pct_from_sma_50", "(price - sma_50) / sma_50, a fraction"),
        ],
        "float64",
    );
    features.push(json!({"name": "above_sma_50", "type": "bool", "description": "price > sma_50"}));
    json!({
        "entity": "ticker",
        "description": "The request's price relative to the stored moving averages, computed per read",
        "features": features,
        "producer": {
            "kind": "on_demand", "transform": "signals",
            "inputs": ["technical:sma_20", "technical:sma_50"],
            "request_fields": [{"name": "price", "type": "float64", "description": "The current price"}]
        }
    })
}

/// The `engagement` group: rolling aggregates of each HCP's engagement
/// minutes (the `rolling` transform on field `minutes`); fresh for a day.
pub fn engagement_group_json() -> serde_json::Value {
    let features = features(
        &[
            ("count_7d", "Engagements in the last 7 days"),
            ("count_30d", "Engagements in the last 30 days"),
            ("sum_30d", "Minutes of engagement in the last 30 days"),
            ("mean_90d", "Mean minutes per engagement over the last 90 days"),
            ("max_90d", "Longest engagement in the last 90 days, in minutes"),
        ],
        "float64",
    );
    json!({
        "entity": "hcp",
        "description": "Rolling engagement aggregates per HCP, windows ending at each event",
        "features": features,
        "freshness": {"expected_interval_seconds": 86_400, "max_age_seconds": 604_800},
        "producer": {
            "kind": "batch", "transform": "rolling", "source": "engagement_events", "lookback": 1,
            "schedule_seconds": 86_400, "params": {"field": "minutes"}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: i64 = 1_750_000_000;

    #[test]
    fn fundamentals_are_quarterly_published_before_the_last_bar_and_spy_has_none() {
        let end = Timestamp::from_secs(END);
        for ticker in ["AAPL", "MSFT", "GOOG", "AMZN", "MADEUP"] {
            let rows = fundamentals(ticker, end);
            assert_eq!(rows.len(), FUNDAMENTALS_LAGS_DAYS.len(), "{ticker}");
            assert!(rows.windows(2).all(|w| w[0].ts < w[1].ts), "{ticker}: oldest first");
            assert!(rows.iter().all(|f| f.ts < end && f.shares_outstanding > 0.0 && f.eps_ttm > 0.0), "{ticker}");
            assert_eq!(rows, fundamentals(ticker, end), "{ticker}: deterministic");
            // The CSV carries the exact values.
            let csv = fundamentals_csv(ticker, end);
            let last: Vec<&str> = csv.lines().last().expect("a row").split(',').collect();
            assert_eq!(last[2].parse::<f64>().expect("shares"), rows[3].shares_outstanding);
        }
        assert!(fundamentals("AMZN", Timestamp::from_secs(END)).iter().all(|f| f.dividends_per_share_ttm == 0.0));
        assert!(fundamentals("AAPL", Timestamp::from_secs(END)).iter().all(|f| f.dividends_per_share_ttm > 0.0));
        assert!(fundamentals(BENCHMARK, end).is_empty());
        assert_eq!(fundamentals_csv(BENCHMARK, end).lines().count(), 1, "header only");
    }

    #[test]
    fn engagement_events_are_distinct_ascending_and_end_in_the_last_six_hours() {
        let end = Timestamp::from_secs(END);
        for hcp in DEMO_HCPS {
            let events = engagement_events(hcp, end);
            assert!(events.len() > 10, "{hcp}: {}", events.len());
            assert!(events.windows(2).all(|w| w[0].ts < w[1].ts), "{hcp}");
            assert!(events[0].ts > end.plus_secs(-ENGAGEMENT_DAYS * DAY), "{hcp}");
            let last = events.last().expect("events").ts;
            assert!(last <= end && last > end.plus_secs(-6 * 3600), "{hcp}");
            assert!(events.iter().all(|e| (2.0..=45.0).contains(&e.minutes)), "{hcp}");
        }
    }

    #[test]
    fn stocks_move_with_spy() {
        let end = Timestamp::from_secs(END);
        let returns = |t: &str| -> Vec<f64> {
            bars(t, DEMO_DAYS, end).windows(2).map(|w| w[1].close / w[0].close - 1.0).collect()
        };
        let (m, a) = (returns(BENCHMARK), returns("AAPL"));
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        let (mm, ma) = (mean(&m), mean(&a));
        let cov: f64 = m.iter().zip(&a).map(|(x, y)| (x - mm) * (y - ma)).sum();
        let var: f64 = m.iter().map(|x| (x - mm).powi(2)).sum();
        let beta = cov / var;
        assert!((0.5..1.5).contains(&beta), "beta {beta}");
    }
}
