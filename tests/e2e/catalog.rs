//! The seed feature catalog beyond `technical`: the bundled `risk`,
//! `valuation`, `rolling` and `signals` transforms end to end, and the
//! monitoring and scheduling around them (freshness, statistics, scheduled
//! runs). Expected values are computed here from the rows the test sent,
//! by the conventions in CONTRACT.md and the transform crates' docs, never
//! copied from the server. Every test runs on both backend pairs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafer_host::clock::Clock;
use wafer_host::model::Timestamp;
use wafer_tests::harness::{Prices, assert_close, whole_second};
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(
    risk_features_match_returns_computed_from_the_ingested_closes,
    valuation_joins_the_latest_fundamentals_published_on_or_before_each_price,
    rolling_windows_count_events_in_the_half_open_interval_ending_at_each_event,
    on_demand_signals_combine_stored_averages_with_the_request_price,
    freshness_counts_entities_fresh_then_stale_then_expired_as_the_clock_moves,
    statistics_describe_every_stored_row_of_a_feature,
    a_scheduled_group_materializes_incrementally_once_its_interval_has_passed,
    an_incremental_run_picks_up_fundamentals_published_since_the_last_run,
);

const REL: f64 = 1e-9;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------
// Reference math, written from the documented conventions.

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (ddof 1), two-pass.
fn sample_std(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// `np.percentile(xs, q)` with the default linear method: rank
/// `h = q/100 * (n - 1)` into the sorted values, interpolated between its
/// neighbours.
fn numpy_percentile(xs: &[f64], q: f64) -> f64 {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let h = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Simple returns `c[i]/c[i-1] - 1`, one fewer than the closes.
fn simple_returns(closes: &[f64]) -> Vec<f64> {
    closes.windows(2).map(|w| w[1] / w[0] - 1.0).collect()
}

fn last<T>(xs: &[T], n: usize) -> &[T] {
    &xs[xs.len() - n..]
}

// ---------------------------------------------------------------------------
// Helpers over the HTTP API.

fn now(app: &TestApp) -> Timestamp {
    Clock::now(&app.clock)
}

fn ts(v: &Value) -> Timestamp {
    Timestamp::parse(v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"))).expect("RFC 3339 timestamp")
}

#[track_caller]
fn number(features: &Value, name: &str) -> f64 {
    features[name]["value"].as_f64().unwrap_or_else(|| panic!("{name} has no number in {features}"))
}

/// Publishes one bundled transform under its crate version, active.
async fn publish(app: &TestApp, name: &str) {
    let t = wafer_host::bundled::ALL.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no bundled {name}"));
    app.publish_and_activate(t.name, t.version, t.bytes).await;
}

#[track_caller]
fn assert_ok(status: StatusCode, body: &Value, what: &str) {
    assert!(status.is_success(), "{what}: {status} {body}");
}

async fn put(app: &TestApp, path: &str, body: Value) {
    let (status, answer) = app.put_json(path, &body).await;
    assert_ok(status, &answer, path);
}

/// Entity `ticker` and source `prices`, without any feature group.
async fn register_prices(app: &TestApp) {
    put(app, "/v1/entities/ticker", json!({"join_keys": ["ticker"]})).await;
    put(app, "/v1/sources/prices", wafer_tests::harness::prices_source_json()).await;
}

fn float_features(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| json!({"name": n, "type": "float64"})).collect()
}

/// An online read of `refs` for the given entity objects.
async fn read(app: &TestApp, entities: Value, refs: &[String], extra: Value) -> Value {
    let mut body = json!({"entities": entities, "features": refs});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, answer) = app.post_json("/v1/features/online", &body).await;
    assert_eq!(status, StatusCode::OK, "online read {body}: {answer}");
    answer
}

fn refs(group: &str, names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{group}:{n}")).collect()
}

async fn materialize(app: &TestApp, group: &str, entities_done: u64) -> Value {
    let job = app.materialize_and_wait(group).await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["errors"], json!([]), "{job}");
    assert_eq!(job["entities_done"], json!(entities_done), "{job}");
    job
}

/// The group's statistics, asserting the row count.
async fn statistics(app: &TestApp, group: &str, rows: usize) -> Value {
    let (status, body) = app.get(&format!("/v1/feature-groups/{group}/statistics")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["feature_group"], json!(group), "{body}");
    assert_eq!(body["rows"], json!(rows), "{body}");
    body
}

/// Checks one feature's statistics against its value on every stored row
/// (`None` for a null).
#[track_caller]
fn assert_statistics(stats: &Value, feature: &str, values: &[Option<f64>]) {
    let s = &stats["features"][feature];
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    assert_eq!(s["count"], json!(present.len()), "{feature}: {s}");
    assert_eq!(s["nulls"], json!(values.len() - present.len()), "{feature}: {s}");
    let get = |stat: &str| s[stat].as_f64().unwrap_or_else(|| panic!("{feature} has no {stat}: {s}"));
    let what = |stat: &str| format!("{feature} {stat}");
    let min = present.iter().copied().fold(f64::INFINITY, f64::min);
    let max = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_close(get("mean"), mean(&present), REL, &what("mean"));
    assert_close(get("std"), sample_std(&present), REL, &what("std"));
    assert_close(get("min"), min, REL, &what("min"));
    assert_close(get("max"), max, REL, &what("max"));
    assert_close(get("p50"), numpy_percentile(&present, 50.0), REL, &what("p50"));
    assert_close(get("p95"), numpy_percentile(&present, 95.0), REL, &what("p95"));
}

// ---------------------------------------------------------------------------
// risk

const RISK_FEATURES: [&str; 7] =
    ["volatility_30d", "volatility_90d", "beta", "var_95", "cvar_95", "sharpe_ratio", "max_drawdown"];

async fn risk_features_match_returns_computed_from_the_ingested_closes(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    publish(&app, "risk").await;
    register_prices(&app).await;
    let prices = app.ingest_prices(&["AAPL", "SPY"], 300).await;
    // 100 closes: enough for both volatilities, too few for the 252-return
    // features, which must be null rather than computed over less.
    let young = app.ingest_prices(&["NEW"], 100).await;
    // Bars on the same dates as SPY's, but five of them missing inside the
    // last year: the benchmark join drops those dates on both sides.
    let full = wafer_host::demo::prices_csv("HOLEY", 300, prices.end);
    let missing = [100, 150, 200, 250, 290];
    let holey: String = full
        .lines()
        .enumerate()
        .filter(|(line, _)| *line == 0 || !missing.contains(&(line - 1)))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let (status, body) = app.post_csv("/v1/sources/prices/rows", &holey).await;
    assert_eq!((status, body["written"].clone()), (StatusCode::OK, json!(295)), "{body}");
    let holey = wafer_tests::harness::Bar::parse_csv(&holey);
    put(
        &app,
        "/v1/feature-groups/risk",
        json!({
            "entity": "ticker",
            "features": float_features(&RISK_FEATURES),
            "freshness": {"expected_interval_seconds": DAY, "max_age_seconds": 2 * DAY},
            "producer": {"kind": "batch", "transform": "risk", "source": "prices", "lookback": 253,
                         "params": {"benchmark": "SPY"}}
        }),
    )
    .await;
    materialize(&app, "risk", 4).await;

    let body = read(
        &app,
        json!([{"ticker": "AAPL"}, {"ticker": "SPY"}, {"ticker": "NEW"}, {"ticker": "HOLEY"}]),
        &refs("risk", &RISK_FEATURES),
        json!({"fallback": "none"}),
    )
    .await;
    let spy_returns = simple_returns(&prices.closes("SPY"));
    for (i, ticker) in ["AAPL", "SPY"].into_iter().enumerate() {
        let f = &body["results"][i]["features"];
        assert_eq!(body["results"][i]["entity"], json!({"ticker": ticker}), "{body}");
        for name in RISK_FEATURES {
            let v = &f[format!("risk:{name}")];
            assert_eq!(
                (v["status"].as_str(), v["source"].as_str()),
                (Some("fresh"), Some("online")),
                "{ticker} {name}: {v}"
            );
            assert_eq!(ts(&v["event_timestamp"]), prices.end, "{ticker} {name} is not of the last bar: {v}");
        }
        let closes = prices.closes(ticker);
        let r = simple_returns(&closes);
        let what = |name: &str| format!("{ticker} {name}");
        let annual = 252f64.sqrt();
        assert_close(number(f, "risk:volatility_30d"), sample_std(last(&r, 30)) * annual, REL, &what("volatility_30d"));
        assert_close(number(f, "risk:volatility_90d"), sample_std(last(&r, 90)) * annual, REL, &what("volatility_90d"));

        let year = last(&r, 252);
        let var = numpy_percentile(year, 5.0);
        assert!(var < 0.0, "{ticker}: a random walk has losing days");
        assert_close(number(f, "risk:var_95"), var, REL, &what("var_95"));
        let tail: Vec<f64> = year.iter().copied().filter(|&x| x <= var).collect();
        assert_eq!(tail.len(), 13, "{ticker}: 252 distinct returns put 13 at or below the 5th percentile");
        assert_close(number(f, "risk:cvar_95"), mean(&tail), REL, &what("cvar_95"));
        assert_close(
            number(f, "risk:sharpe_ratio"),
            mean(year) / sample_std(year) * annual,
            REL,
            &what("sharpe_ratio"),
        );

        let mut peak = f64::MIN;
        let drawdown = last(&closes, 253)
            .iter()
            .map(|&c| {
                peak = peak.max(c);
                c / peak - 1.0
            })
            .fold(0.0, f64::min);
        assert!(drawdown < 0.0, "{ticker}: a random walk falls somewhere in a year");
        assert_close(number(f, "risk:max_drawdown"), drawdown, REL, &what("max_drawdown"));

        // The synthetic bars of every ticker share their dates, so the join
        // keeps every row and the returns pair up index by index.
        let (a, b) = (year, last(&spy_returns, 252));
        let (ma, mb) = (mean(a), mean(b));
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let var_b: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
        if ticker == "SPY" {
            assert_eq!(number(f, "risk:beta"), 1.0, "the benchmark's beta against itself: {f}");
        } else {
            assert_close(number(f, "risk:beta"), cov / var_b, REL, &what("beta"));
        }
    }

    let f = &body["results"][2]["features"];
    let r = simple_returns(&young.closes("NEW"));
    assert_close(number(f, "risk:volatility_90d"), sample_std(last(&r, 90)) * 252f64.sqrt(), REL, "NEW volatility_90d");
    for name in ["beta", "var_95", "cvar_95", "sharpe_ratio", "max_drawdown"] {
        let v = &f[format!("risk:{name}")];
        assert!(v["value"].is_null(), "NEW has 99 returns, too few for {name}: {v}");
        assert_eq!(v["status"], json!("missing"), "NEW {name}: {v}");
    }

    // HOLEY: windows count the closes that exist, and beta pairs returns of
    // consecutive joined dates, so a return across a gap spans two days on
    // both sides.
    let f = &body["results"][3]["features"];
    let closes: Vec<f64> = holey.iter().map(|b| b.close).collect();
    let r = simple_returns(&closes);
    let annual = 252f64.sqrt();
    assert_close(number(f, "risk:volatility_30d"), sample_std(last(&r, 30)) * annual, REL, "HOLEY volatility_30d");
    assert_close(number(f, "risk:var_95"), numpy_percentile(last(&r, 252), 5.0), REL, "HOLEY var_95");
    let spy: Vec<f64> = holey
        .iter()
        .map(|h| prices.bars["SPY"].iter().find(|b| b.ts == h.ts).expect("SPY has every date").close)
        .collect();
    let (a, b) = (last(&r, 252), simple_returns(&spy));
    let b = last(&b, 252);
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let var_b: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    assert_close(number(f, "risk:beta"), cov / var_b, REL, "HOLEY beta over the joined dates");

    // Without params the benchmark is SPY.
    put(
        &app,
        "/v1/feature-groups/risk_default",
        json!({
            "entity": "ticker",
            "features": float_features(&["beta"]),
            "producer": {"kind": "batch", "transform": "risk", "source": "prices", "lookback": 253}
        }),
    )
    .await;
    materialize(&app, "risk_default", 4).await;
    let default = read(&app, json!([{"ticker": "AAPL"}]), &refs("risk_default", &["beta"]), json!({})).await;
    assert_eq!(
        default["results"][0]["features"]["risk_default:beta"]["value"],
        body["results"][0]["features"]["risk:beta"]["value"],
        "{default}"
    );
}

// ---------------------------------------------------------------------------
// valuation

const VALUATION_FEATURES: [&str; 5] = ["pe_ratio", "pb_ratio", "ps_ratio", "dividend_yield", "market_cap"];

/// One fundamentals row's figures: shares, eps, book value per share,
/// revenue, dividends per share.
#[derive(Clone, Copy)]
struct Figures {
    shares: f64,
    eps: f64,
    book: f64,
    revenue: f64,
    dividends: f64,
}

impl Figures {
    fn row(self, ticker: &str, at: Timestamp) -> Value {
        json!({"ticker": ticker, "ts": at.to_rfc3339(), "shares_outstanding": self.shares, "eps_ttm": self.eps,
               "book_value_per_share": self.book, "revenue_ttm": self.revenue,
               "dividends_per_share_ttm": self.dividends})
    }

    /// The five served ratios at close `c`, by the contract's formulas.
    #[track_caller]
    fn assert_ratios(self, features: &Value, c: f64, what: &str) {
        let get = |name: &str| number(features, &format!("valuation:{name}"));
        let cap = c * self.shares;
        assert_close(get("market_cap"), cap, REL, &format!("{what} market_cap"));
        assert_close(get("pe_ratio"), c / self.eps, REL, &format!("{what} pe_ratio"));
        assert_close(get("pb_ratio"), c / self.book, REL, &format!("{what} pb_ratio"));
        assert_close(get("ps_ratio"), cap / self.revenue, REL, &format!("{what} ps_ratio"));
        if self.dividends == 0.0 {
            assert_eq!(get("dividend_yield"), 0.0, "{what}: a non-payer yields 0");
        } else {
            assert_close(get("dividend_yield"), self.dividends / c, REL, &format!("{what} dividend_yield"));
        }
    }
}

fn close_at(prices: &Prices, ticker: &str, at: Timestamp) -> f64 {
    prices.bars[ticker].iter().find(|b| b.ts == at).unwrap_or_else(|| panic!("no {ticker} bar at {at}")).close
}

/// The `valuation` transform, the `prices` and `fundamentals` sources and
/// the `valuation` group over both.
async fn register_valuation(app: &TestApp) {
    publish(app, "valuation").await;
    register_prices(app).await;
    let fields: Vec<Value> = float_features(&[
        "shares_outstanding",
        "eps_ttm",
        "book_value_per_share",
        "revenue_ttm",
        "dividends_per_share_ttm",
    ]);
    put(app, "/v1/sources/fundamentals", json!({"entity": "ticker", "timestamp_field": "ts", "fields": fields})).await;
    put(
        app,
        "/v1/feature-groups/valuation",
        json!({
            "entity": "ticker",
            "features": float_features(&VALUATION_FEATURES),
            "freshness": {"expected_interval_seconds": 7 * DAY, "max_age_seconds": 14 * DAY},
            "producer": {"kind": "batch", "transform": "valuation", "sources": ["prices", "fundamentals"], "lookback": 1}
        }),
    )
    .await;
}

async fn valuation_joins_the_latest_fundamentals_published_on_or_before_each_price(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_valuation(&app).await;
    // MSFT has prices but never any fundamentals.
    let prices = app.ingest_prices(&["AAPL", "MSFT"], 30).await;
    let end = prices.end;

    // Three publications: one before the window (a non-payer then), one on
    // a price date ten days before the last bar, and one half an hour after
    // the last bar (within the server's default future skew of an hour),
    // which no stored price may see yet.
    let old = Figures { shares: 15.9e9, eps: 5.6, book: 3.9, revenue: 365.0e9, dividends: 0.0 };
    let current = Figures { shares: 15.5e9, eps: 6.4, book: 4.4, revenue: 391.0e9, dividends: 0.96 };
    let future = Figures { shares: 14.0e9, eps: 60.0, book: 40.0, revenue: 1.0e12, dividends: 9.0 };
    let rows = json!([
        old.row("AAPL", end.plus_secs(-40 * DAY)),
        current.row("AAPL", end.plus_secs(-10 * DAY)),
        future.row("AAPL", end.plus_secs(1800)),
    ]);
    let (status, body) = app.post_json("/v1/sources/fundamentals/rows", &json!({"rows": rows})).await;
    assert_eq!((status, body["written"].clone()), (StatusCode::OK, json!(3)), "{body}");

    materialize(&app, "valuation", 2).await;

    let all = refs("valuation", &VALUATION_FEATURES);
    let body = read(&app, json!([{"ticker": "AAPL"}, {"ticker": "MSFT"}]), &all, json!({})).await;
    let aapl = &body["results"][0]["features"];
    current.assert_ratios(aapl, close_at(&prices, "AAPL", end), "AAPL at the last bar");
    for name in &all {
        assert_eq!(ts(&aapl[name]["event_timestamp"]), end, "{name}: {aapl}");
        assert_eq!(aapl[name]["status"], json!("fresh"), "{name}: {aapl}");
        let msft = &body["results"][1]["features"][name];
        assert!(msft["value"].is_null(), "MSFT has no fundamentals, so no {name}: {msft}");
        assert_eq!(msft["status"], json!("missing"), "MSFT {name}: {msft}");
    }

    // Every stored row joined what was public on its own date: the current
    // figures from their publication day on (inclusive), the old ones
    // before it, the future ones never. Statistics over all the rows (only
    // AAPL's: MSFT's are all null, so none are written) show it.
    let publication = end.plus_secs(-10 * DAY);
    let expected: Vec<[f64; 5]> = prices.bars["AAPL"]
        .iter()
        .map(|bar| {
            let f = if bar.ts >= publication { current } else { old };
            let (c, cap) = (bar.close, bar.close * f.shares);
            [c / f.eps, c / f.book, cap / f.revenue, f.dividends / c, cap]
        })
        .collect();
    let stats = statistics(&app, "valuation", 30).await;
    for (k, name) in VALUATION_FEATURES.iter().enumerate() {
        let values: Vec<Option<f64>> = expected.iter().map(|row| Some(row[k])).collect();
        assert_statistics(&stats, name, &values);
    }
    assert_eq!(stats["features"]["dividend_yield"]["min"], json!(0.0), "the old figures paid nothing: {stats}");
}

async fn an_incremental_run_picks_up_fundamentals_published_since_the_last_run(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    register_valuation(&app).await;
    let prices = app.ingest_prices(&["AAPL"], 30).await;
    let end = prices.end;
    let old = Figures { shares: 15.9e9, eps: 5.6, book: 3.9, revenue: 365.0e9, dividends: 0.0 };
    let rows = json!({"rows": [old.row("AAPL", end.plus_secs(-40 * DAY))]});
    let (status, body) = app.post_json("/v1/sources/fundamentals/rows", &rows).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    materialize(&app, "valuation", 1).await;
    let all = refs("valuation", &VALUATION_FEATURES);
    let body = read(&app, json!([{"ticker": "AAPL"}]), &all, json!({"fallback": "none"})).await;
    old.assert_ratios(&body["results"][0]["features"], close_at(&prices, "AAPL", end), "AAPL before");

    // Figures made public two days before the last bar arrive now. As of
    // the last bar they are the latest, so the next incremental run (what a
    // schedule does) must serve them, though no price is new.
    let new = Figures { shares: 15.5e9, eps: 6.4, book: 4.4, revenue: 391.0e9, dividends: 0.96 };
    let rows = json!({"rows": [new.row("AAPL", end.plus_secs(-2 * DAY))]});
    let (status, body) = app.post_json("/v1/sources/fundamentals/rows", &rows).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, job) =
        app.post_json("/v1/materialize?wait=true", &json!({"feature_group": "valuation", "incremental": true})).await;
    assert_eq!((status, job["state"].clone()), (StatusCode::OK, json!("succeeded")), "{job}");
    let body = read(&app, json!([{"ticker": "AAPL"}]), &all, json!({"fallback": "none"})).await;
    new.assert_ratios(&body["results"][0]["features"], close_at(&prices, "AAPL", end), &format!("AAPL after {job}"));
}

// ---------------------------------------------------------------------------
// rolling

const ENGAGEMENT_FEATURES: [&str; 7] =
    ["count_1d", "count_7d", "sum_7d", "sum_30d", "mean_30d", "max_90d", "count_365d"];

async fn rolling_windows_count_events_in_the_half_open_interval_ending_at_each_event(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    publish(&app, "rolling").await;
    put(&app, "/v1/entities/hcp", json!({"join_keys": ["hcp_id"]})).await;
    put(
        &app,
        "/v1/sources/engagement_events",
        json!({"entity": "hcp", "timestamp_field": "ts", "fields": [{"name": "minutes", "type": "float64"}]}),
    )
    .await;
    let t = whole_second(now(&app));
    // (seconds before the newest event, minutes); `None` is an event whose
    // minutes were not recorded, which counts in no aggregate.
    let h1: [(i64, Option<f64>); 10] = [
        (100 * DAY, Some(1000.0)),
        (90 * DAY, Some(500.0)), // exactly 90 days back: outside 90d
        (60 * DAY, Some(200.0)),
        (30 * DAY, Some(100.0)), // exactly 30 days back: outside 30d
        (29 * DAY, Some(40.0)),
        (7 * DAY, Some(30.0)),    // exactly 7 days back: outside 7d
        (7 * DAY - 1, Some(5.0)), // one second later: inside 7d
        (3 * DAY, Some(12.5)),
        (2 * DAY, None),
        (0, Some(10.0)),
    ];
    let mut rows: Vec<Value> = h1
        .iter()
        .map(|(back, minutes)| json!({"hcp_id": "H1", "ts": t.plus_secs(-back).to_rfc3339(), "minutes": minutes}))
        .collect();
    rows.push(json!({"hcp_id": "H2", "ts": t.plus_secs(-50 * DAY).to_rfc3339(), "minutes": 7.0}));
    let (status, body) = app.post_json("/v1/sources/engagement_events/rows", &json!({"rows": rows})).await;
    assert_eq!((status, body["written"].clone()), (StatusCode::OK, json!(11)), "{body}");

    put(
        &app,
        "/v1/feature-groups/engagement",
        json!({
            "entity": "hcp",
            "features": float_features(&ENGAGEMENT_FEATURES),
            "freshness": {"expected_interval_seconds": DAY, "max_age_seconds": 365 * DAY},
            "producer": {"kind": "batch", "transform": "rolling", "source": "engagement_events", "lookback": 1,
                         "params": {"field": "minutes"}}
        }),
    )
    .await;
    materialize(&app, "engagement", 2).await;

    let all = refs("engagement", &ENGAGEMENT_FEATURES);
    let body = read(&app, json!([{"hcp_id": "H1"}, {"hcp_id": "H2"}]), &all, json!({"fallback": "none"})).await;
    let f = &body["results"][0]["features"];
    // Worked by hand from the table above, at t.
    let expected = [
        ("count_1d", 1.0),                                     // t
        ("count_7d", 3.0),                                     // t, t-3d, t-7d+1s (not t-2d's null, not t-7d)
        ("sum_7d", 10.0 + 12.5 + 5.0),                         // the same three
        ("sum_30d", 10.0 + 12.5 + 5.0 + 30.0 + 40.0),          // back to t-29d, not t-30d
        ("mean_30d", (10.0 + 12.5 + 5.0 + 30.0 + 40.0) / 5.0), // over the five values
        ("max_90d", 200.0),                                    // t-60d; t-90d's 500 is outside
        ("count_365d", 9.0),                                   // every event with minutes
    ];
    for (name, want) in expected {
        let key = format!("engagement:{name}");
        assert_eq!(f[&key]["value"].as_f64(), Some(want), "H1 {name}: {f}");
        assert_eq!(ts(&f[&key]["event_timestamp"]), t, "H1 {name}: {f}");
        assert_eq!((f[&key]["status"].as_str(), f[&key]["source"].as_str()), (Some("fresh"), Some("online")), "{f}");
    }

    // H2's only event: every window holds it.
    let f = &body["results"][1]["features"];
    for (name, want) in
        [("count_1d", 1.0), ("count_7d", 1.0), ("sum_7d", 7.0), ("sum_30d", 7.0), ("mean_30d", 7.0), ("max_90d", 7.0)]
    {
        assert_eq!(f[format!("engagement:{name}")]["value"].as_f64(), Some(want), "H2 {name}: {f}");
    }
    assert_eq!(ts(&f["engagement:count_7d"]["event_timestamp"]), t.plus_secs(-50 * DAY), "{f}");

    // Every row's own windows, e.g. the event exactly 7 days back holds only
    // itself in 7d, and t-90d's 500 in 90d: a brute-force count over the
    // events, compared through the statistics of all 11 stored rows (no
    // warm-up: count and sum are never null, so every event has a row).
    let mut events: Vec<(&str, i64, Option<f64>)> = h1.iter().map(|&(back, m)| ("H1", -back, m)).collect();
    events.push(("H2", -50 * DAY, Some(7.0)));
    let stats = statistics(&app, "engagement", events.len()).await;
    for name in ENGAGEMENT_FEATURES {
        let (agg, window) = name.split_once('_').expect("<agg>_<window>");
        let days: i64 = window.trim_end_matches('d').parse().expect("window in days");
        let values: Vec<Option<f64>> = events
            .iter()
            .map(|&(hcp, at, _)| {
                let inside: Vec<f64> = events
                    .iter()
                    .filter(|&&(h, s, _)| h == hcp && at - days * DAY < s && s <= at)
                    .filter_map(|&(_, _, m)| m)
                    .collect();
                match agg {
                    "count" => Some(inside.len() as f64),
                    "sum" => Some(inside.iter().sum()),
                    "mean" => (!inside.is_empty()).then(|| mean(&inside)),
                    "max" => inside.iter().copied().reduce(f64::max),
                    other => panic!("no reference for {other}"),
                }
            })
            .collect();
        assert_statistics(&stats, name, &values);
    }
}

// ---------------------------------------------------------------------------
// signals (on demand)

const SIGNALS: [&str; 3] = ["pct_from_sma_20", "pct_from_sma_50", "above_sma_50"];

fn signals_group(inputs: Value, request_fields: Value) -> Value {
    json!({
        "entity": "ticker",
        "features": [
            {"name": "pct_from_sma_20", "type": "float64"},
            {"name": "pct_from_sma_50", "type": "float64"},
            {"name": "above_sma_50", "type": "bool"}
        ],
        "producer": {"kind": "on_demand", "transform": "signals", "inputs": inputs, "request_fields": request_fields}
    })
}

async fn on_demand_signals_combine_stored_averages_with_the_request_price(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let prices = app.setup_technical(&["AAPL", "MSFT", "GOOG"], 260).await;
    publish(&app, "signals").await;
    // GOOG is never materialized: its inputs are computed on the miss.
    let (status, job) = app
        .post_json("/v1/materialize?wait=true", &json!({"feature_group": "technical", "entities": ["AAPL", "MSFT"]}))
        .await;
    assert_eq!((status, job["state"].clone()), (StatusCode::OK, json!("succeeded")), "{job}");

    let price_field = json!([{"name": "price", "type": "float64"}]);
    let sma_inputs = json!(["technical:sma_20", "technical:sma_50"]);
    // Registrations the inputs or request fields do not support.
    let bad = [
        (
            "an input naming no feature",
            signals_group(json!(["technical:sma_20", "technical:sma_5"]), price_field.clone()),
            "sma_5",
        ),
        (
            "an input of no group",
            signals_group(json!(["technical:sma_20", "trend:sma_50"]), price_field.clone()),
            "trend",
        ),
        (
            "an input the transform needs left out",
            signals_group(json!(["technical:sma_20"]), price_field.clone()),
            "technical:sma_50",
        ),
        ("no request fields", signals_group(sma_inputs.clone(), json!([])), "price"),
        ("the price as text", signals_group(sma_inputs.clone(), json!([{"name": "price", "type": "string"}])), "price"),
    ];
    for (what, group, named) in bad {
        let (status, body) = app.put_json("/v1/feature-groups/signals", &group).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["error"]["code"], json!("invalid_request"), "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{what}: the message should name {named}: {message}");
    }
    let (status, body) = app.get("/v1/feature-groups/signals").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "refused registrations leave nothing behind: {body}");
    put(&app, "/v1/feature-groups/signals", signals_group(sma_inputs, price_field)).await;

    let tickers = ["AAPL", "MSFT", "GOOG"];
    let smas: Vec<(f64, f64)> = tickers
        .iter()
        .map(|t| {
            let closes = prices.closes(t);
            (mean(last(&closes, 20)), mean(last(&closes, 50)))
        })
        .collect();
    // Well clear of each SMA 50, so `above_sma_50` does not hinge on rounding.
    let quotes = [smas[0].1 * 1.03, smas[1].1 * 0.97, smas[2].1 * 1.10];
    let mut wanted = refs("signals", &SIGNALS);
    wanted.extend(refs("technical", &["sma_20", "sma_50"]));
    let entities = json!([{"ticker": "AAPL"}, {"ticker": "MSFT"}, {"ticker": "GOOG"}]);
    let body = read(&app, entities.clone(), &wanted, json!({"request_context": {"price": quotes}})).await;
    let at = now(&app);
    for (i, ticker) in tickers.iter().enumerate() {
        let f = &body["results"][i]["features"];
        let (sma_20, sma_50) = (number(f, "technical:sma_20"), number(f, "technical:sma_50"));
        assert_close(sma_20, smas[i].0, REL, &format!("{ticker} sma_20"));
        assert_close(sma_50, smas[i].1, REL, &format!("{ticker} sma_50"));
        let stored_source = if *ticker == "GOOG" { "computed" } else { "online" };
        assert_eq!(f["technical:sma_20"]["source"], json!(stored_source), "{ticker}: {f}");
        let p = quotes[i];
        assert_close(number(f, "signals:pct_from_sma_20"), (p - sma_20) / sma_20, REL, &format!("{ticker} pct 20"));
        assert_close(number(f, "signals:pct_from_sma_50"), (p - sma_50) / sma_50, REL, &format!("{ticker} pct 50"));
        assert_eq!(f["signals:above_sma_50"]["value"], json!(p > sma_50), "{ticker}: {f}");
        for name in refs("signals", &SIGNALS) {
            let v = &f[&name];
            assert_eq!(
                (v["status"].as_str(), v["source"].as_str()),
                (Some("fresh"), Some("computed")),
                "{ticker} {name}: {v}"
            );
            assert_eq!(v["age_seconds"].as_f64(), Some(0.0), "{ticker} {name}: {v}");
            assert_eq!(ts(&v["event_timestamp"]), at, "{ticker} {name} is stamped at request time: {v}");
        }
    }
    assert_eq!(body["results"][0]["features"]["signals:above_sma_50"]["value"], json!(true));
    assert_eq!(body["results"][1]["features"]["signals:above_sma_50"]["value"], json!(false));

    // One value for every entity.
    let two = json!([{"ticker": "AAPL"}, {"ticker": "MSFT"}]);
    let body =
        read(&app, two.clone(), &refs("signals", &SIGNALS[..1]), json!({"request_context": {"price": 150}})).await;
    for i in 0..2 {
        let got = number(&body["results"][i]["features"], "signals:pct_from_sma_20");
        assert_close(got, (150.0 - smas[i].0) / smas[i].0, REL, &format!("{} with a shared price", tickers[i]));
    }

    // Without the field, or with a count that fits no entity list: 400.
    let only = refs("signals", &["pct_from_sma_50"]);
    for (what, context) in [("no price", json!({})), ("three prices for two", json!({"price": [1.0, 2.0, 3.0]}))] {
        let request = json!({"entities": two, "features": only, "request_context": context});
        let (status, body) = app.post_json("/v1/features/online", &request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("price"), "{what}: the message should name the field: {message}");
    }

    // Nothing of an on-demand group is stored, so there is nothing to describe.
    let (status, body) = app.get("/v1/feature-groups/signals/statistics").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Its inputs' group cannot go while it reads them.
    let (status, body) = app.delete("/v1/feature-groups/technical").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A ticker without any prices has no inputs, so no signals.
    let body = read(
        &app,
        json!([{"ticker": "NONE"}]),
        &refs("signals", &SIGNALS),
        json!({"request_context": {"price": 10.0}}),
    )
    .await;
    for (name, v) in body["results"][0]["features"].as_object().expect("features") {
        assert_eq!((v["status"].as_str(), &v["value"]), (Some("missing"), &Value::Null), "{name}: {v}");
    }
    // Expired inputs are absent inputs, as they would be served.
    let max_age = wafer_host::demo::technical_group_json()["freshness"]["max_age_seconds"].as_i64().expect("max age");
    app.clock.set(prices.end.plus_secs(max_age + 1));
    let body = read(&app, two, &refs("signals", &SIGNALS), json!({"request_context": {"price": 150.0}})).await;
    for i in 0..2 {
        for (name, v) in body["results"][i]["features"].as_object().expect("features") {
            assert_eq!((v["status"].as_str(), &v["value"]), (Some("missing"), &Value::Null), "{name}: {v}");
        }
    }
}

// ---------------------------------------------------------------------------
// freshness

fn freshness_of<'a>(body: &'a Value, group: &str) -> &'a Value {
    body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["feature_group"] == json!(group))
        .unwrap_or_else(|| panic!("no {group} in {body}"))
}

async fn freshness_counts_entities_fresh_then_stale_then_expired_as_the_clock_moves(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let prices = app.setup_technical(&["AAPL", "MSFT"], 260).await;
    let end = prices.end;
    // GOOG's last bar is a day older than the others'.
    let goog = wafer_host::demo::prices_csv("GOOG", 260, end.plus_secs(-DAY));
    let (status, body) = app.post_csv("/v1/sources/prices/rows", &goog).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Registered but never materialized: no entities, no times.
    let (status, body) = app.get("/v1/freshness").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let g = freshness_of(&body, "technical");
    assert_eq!(
        (&g["entities"], &g["fresh"], &g["newest_event_timestamp"]),
        (&json!(0), &json!(0), &Value::Null),
        "{g}"
    );
    materialize(&app, "technical", 3).await;

    let freshness = &wafer_host::demo::technical_group_json()["freshness"];
    let interval = freshness["expected_interval_seconds"].as_i64().expect("expected interval");
    let max_age = freshness["max_age_seconds"].as_i64().expect("max age");
    assert!(max_age > interval + 1 && DAY > max_age, "the steps below assume 1 h and 2 h, or alike");
    let steps = [
        (None, (3, 2, 0, 1)),
        // Exactly one interval old is not yet stale.
        (Some(interval), (3, 2, 0, 1)),
        (Some(interval + 1), (3, 0, 2, 1)),
        (Some(max_age), (3, 0, 2, 1)),
        (Some(max_age + 1), (3, 0, 0, 3)),
    ];
    for (age, (entities, fresh, stale, expired)) in steps {
        if let Some(age) = age {
            app.clock.set(end.plus_secs(age));
        }
        let (status, body) = app.get("/v1/freshness").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(ts(&body["as_of"]), now(&app), "{body}");
        let g = freshness_of(&body, "technical");
        let what = format!("at age {age:?}: {g}");
        assert_eq!(g["expected_interval_seconds"], json!(interval), "{what}");
        assert_eq!(g["max_age_seconds"], json!(max_age), "{what}");
        let counts = (&g["entities"], &g["fresh"], &g["stale"], &g["expired"]);
        assert_eq!(counts, (&json!(entities), &json!(fresh), &json!(stale), &json!(expired)), "{what}");
        assert_eq!(ts(&g["newest_event_timestamp"]), end, "{what}");
        assert_eq!(ts(&g["oldest_event_timestamp"]), end.plus_secs(-DAY), "{what}");

        // What an online read reports for the same entity agrees.
        let (_, read) = app.read_groups(&["AAPL"], &["technical"], "none").await;
        let status = &read["results"][0]["features"]["technical:sma_20"]["status"];
        let want = if expired == 3 {
            "expired"
        } else if stale == 2 {
            "stale"
        } else {
            "fresh"
        };
        assert_eq!(status, &json!(want), "online status {what}");
    }
}

// ---------------------------------------------------------------------------
// statistics

async fn statistics_describe_every_stored_row_of_a_feature(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    let days = 260;
    let prices = app.setup_technical(&["AAPL", "MSFT"], days).await;
    // Nothing stored yet: nothing to describe, but no error either.
    let empty = statistics(&app, "technical", 0).await;
    let s = &empty["features"]["sma_20"];
    assert_eq!(
        (&s["count"], &s["nulls"], &s["mean"], &s["p50"]),
        (&json!(0), &json!(0), &Value::Null, &Value::Null),
        "{empty}"
    );
    let job = materialize(&app, "technical", 2).await;

    // Rows are written from the first row with any value: ema_12's, on row
    // 11. Each SMA has a value from row n - 1.
    let rows_per_ticker = days - 11;
    assert_eq!(job["rows_written"], json!(2 * rows_per_ticker), "{job}");
    let stats = statistics(&app, "technical", 2 * rows_per_ticker).await;
    for (name, n) in [("sma_20", 20), ("sma_50", 50), ("sma_200", 200)] {
        let values: Vec<Option<f64>> = ["AAPL", "MSFT"]
            .iter()
            .flat_map(|t| {
                let closes = prices.closes(t);
                (11..days).map(move |row| (row + 1 >= n).then(|| mean(&closes[row + 1 - n..=row])))
            })
            .collect();
        assert_eq!(values.len(), 2 * rows_per_ticker);
        assert_statistics(&stats, name, &values);
    }

    let (status, body) = app.get("/v1/feature-groups/nope/statistics").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

// ---------------------------------------------------------------------------
// schedules

async fn jobs_of(app: &TestApp, group: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/jobs?feature_group={group}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["jobs"].as_array().cloned().unwrap_or_else(|| panic!("no jobs list: {body}"))
}

/// Polls the group's jobs until there are `n` and the newest has finished.
async fn wait_for_jobs(app: &TestApp, group: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let jobs = jobs_of(app, group).await;
        if jobs.len() >= n && jobs[0]["state"] != json!("queued") && jobs[0]["state"] != json!("running") {
            assert_eq!(jobs.len(), n, "one run per interval: {jobs:?}");
            return jobs;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no finished scheduled run {n} within 10 s: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_scheduled_group_materializes_incrementally_once_its_interval_has_passed(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_indicators().await;
    register_prices(&app).await;
    let mut group = wafer_host::demo::technical_group_json();
    group["producer"]["schedule_seconds"] = json!(60);
    put(&app, "/v1/feature-groups/minutely", group).await;
    let prices = app.ingest_prices(&["AAPL", "MSFT"], 260).await;

    // Hosts look at schedules about once a second; the first run is due one
    // interval after they first see it, and the clock has not moved.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2_500) {
        assert_eq!(jobs_of(&app, "minutely").await, Vec::<Value>::new(), "nothing is due before the clock moves");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, body) = app.read_groups(&["AAPL"], &["minutely"], "none").await;
    assert_eq!(body["results"][0]["features"]["minutely:sma_20"]["status"], json!("missing"), "{body}");

    app.clock.advance_secs(61);
    let jobs = wait_for_jobs(&app, "minutely", 1).await;
    let job = &jobs[0];
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["incremental"], json!(true), "{job}");
    assert_eq!(job["errors"], json!([]), "{job}");
    assert_eq!(job["entities_done"], json!(2), "{job}");
    assert_eq!(job["rows_written"], json!(2 * (260 - 11)), "{job}");

    let (_, body) = app.read_groups(&["AAPL", "MSFT"], &["minutely"], "none").await;
    for (i, ticker) in ["AAPL", "MSFT"].into_iter().enumerate() {
        let v = &body["results"][i]["features"]["minutely:sma_20"];
        assert_eq!((v["status"].as_str(), v["source"].as_str()), (Some("fresh"), Some("online")), "{ticker}: {v}");
        assert_eq!(ts(&v["event_timestamp"]), prices.end, "{ticker}: {v}");
        assert_close(v["value"].as_f64().expect("sma_20"), mean(last(&prices.closes(ticker), 20)), REL, ticker);
    }

    // A new bar for AAPL, and one more interval: the next run takes just it.
    let next = prices.end.plus_secs(60);
    let csv = format!("ticker,ts,open,high,low,close,volume\nAAPL,{next},100,101,99,100.5,1000\n");
    let (status, body) = app.post_csv("/v1/sources/prices/rows", &csv).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.clock.advance_secs(61);
    let jobs = wait_for_jobs(&app, "minutely", 2).await;
    let job = &jobs[0];
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!((job["entities_total"].clone(), job["rows_written"].clone()), (json!(1), json!(1)), "{job}");
    let (_, body) = app.read_groups(&["AAPL"], &["minutely"], "none").await;
    let v = &body["results"][0]["features"]["minutely:sma_20"];
    assert_eq!(ts(&v["event_timestamp"]), next, "{v}");
    let mut closes = prices.closes("AAPL");
    closes.push(100.5);
    assert_close(v["value"].as_f64().expect("sma_20"), mean(last(&closes, 20)), REL, "AAPL after the new bar");
}
