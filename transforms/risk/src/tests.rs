//! Expected values are worked out by hand (in the comments) from series built
//! so the answer is known analytically, never taken from this code.

use super::*;
use wafer_guest::{NamedTable, Param};

fn assert_close(got: &[Option<f64>], want: &[Option<f64>], tol: f64) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "row {i}: got {g}, want {w}"),
            (None, None) => {}
            _ => panic!("row {i}: got {g:?}, want {w:?}"),
        }
    }
}

fn assert_near(got: Option<f64>, want: f64, tol: f64) {
    let got = got.unwrap_or_else(|| panic!("got None, want {want}"));
    assert!((got - want).abs() <= tol, "got {got}, want {want}");
}

/// `None` for `warmup` rows, then `value` on the remaining rows.
fn after(warmup: usize, rows: usize, value: f64) -> Vec<Option<f64>> {
    (0..rows).map(|i| (i >= warmup).then_some(value)).collect()
}

/// Closes starting at 100 with the given returns: `c[i+1] = c[i] * (1 + r[i])`.
fn closes_from(returns: &[f64]) -> Vec<f64> {
    returns.iter().fold(vec![100.0], |mut c, r| {
        c.push(c[c.len() - 1] * (1.0 + r));
        c
    })
}

/// Returns alternating `-a, +a, -a, ...` around `m`.
fn zigzag(m: f64, a: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| if i % 2 == 0 { m - a } else { m + a }).collect()
}

/// Benchmark-like returns that vary, so every window has variance.
fn wiggle(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.01 * (i as f64 * 0.7).sin() + 0.0005).collect()
}

/// Microseconds of day `d` (midnight UTC).
fn day(d: i64) -> i64 {
    1_700_000_000_000_000 + d * 86_400_000_000
}

fn table(times: Vec<i64>, closes: Vec<Option<f64>>) -> Table {
    Table::new(times).with(Column::float64("close", closes))
}

fn daily(closes: &[f64]) -> Table {
    table((0..closes.len() as i64).map(day).collect(), closes.iter().map(|&c| Some(c)).collect())
}

fn input(prices: Table, benchmark: Option<Table>) -> BatchInput {
    BatchInput {
        entity: "AAPL".into(),
        sources: vec![NamedTable::new("daily_bars", prices)],
        related: benchmark.into_iter().map(|t| NamedTable::new("benchmark", t)).collect(),
        params: vec![Param::new("benchmark", "SPY")],
    }
}

fn feature(out: &Table, name: &str) -> Vec<Option<f64>> {
    out.column(name).unwrap().float64_options().unwrap()
}

#[test]
fn returns_are_simple_and_row_zero_has_none() {
    let r = returns(&[100.0, 110.0, 99.0]);
    assert!(r[0].is_nan());
    // 110/100 - 1 = 0.1; 99/110 - 1 = -0.1.
    assert!((r[1] - 0.1).abs() < 1e-15 && (r[2] + 0.1).abs() < 1e-15);
    assert!(returns(&[]).is_empty());
}

#[test]
fn sample_std_divides_by_n_minus_one() {
    // Mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32: sample variance
    // 32/7 (the population one would be 32/8 = 4).
    assert_near(sample_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), (32.0f64 / 7.0).sqrt(), 1e-15);
    assert_eq!(sample_std(&[1.0]), None);
}

#[test]
fn volatility_of_alternating_returns_is_known_and_starts_once_the_window_is_full() {
    // 30 returns alternating -a/+a: mean 0, squared deviations 30a^2, sample
    // variance 30a^2/29, so vol_30 = a * sqrt(30/29) * sqrt(252); likewise
    // vol_90 = a * sqrt(90/89) * sqrt(252). Every window of consecutive
    // returns holds as many +a as -a, so the value is the same on every row.
    // 30 returns need 31 closes: row 29 is null, row 30 the first value.
    let a = 0.01;
    let c = closes_from(&zigzag(0.0, a, 199));
    let v30 = a * (30.0f64 / 29.0).sqrt() * 252f64.sqrt();
    let v90 = a * (90.0f64 / 89.0).sqrt() * 252f64.sqrt();
    assert_close(&volatility(&c, 30), &after(30, 200, v30), 1e-12);
    assert_close(&volatility(&c, 90), &after(90, 200, v90), 1e-12);
    assert_eq!(volatility(&c[..30], 30), vec![None; 30]);
}

#[test]
fn var_95_interpolates_linearly_between_the_ranks_numpy_would() {
    // 11 returns, sorted: -0.05, -0.03, -0.02, -0.01, 0, 0.01, 0.01, 0.02,
    // 0.03, 0.04, 0.05. rank = 0.05 * (11 - 1) = 0.5: halfway between x[0]
    // and x[1], -0.05 + 0.5 * (-0.03 - -0.05) = -0.04.
    let r = [0.03, -0.05, 0.01, -0.01, 0.02, 0.00, -0.03, 0.04, 0.01, -0.02, 0.05];
    assert_near(var_95(&r), -0.04, 1e-15);
    // At or below -0.04: only -0.05.
    assert_near(cvar_95(&r), -0.05, 1e-15);
    // Endpoints: rank 0 and n - 1 are the minimum and maximum.
    assert_near(percentile(&r, 0.0), -0.05, 0.0);
    assert_near(percentile(&r, 100.0), 0.05, 0.0);
    assert_near(percentile(&[0.02], 5.0), 0.02, 0.0);
    assert_eq!(percentile(&[], 5.0), None);
}

#[test]
fn cvar_95_includes_returns_tied_with_the_percentile() {
    // 21 returns, sorted: -0.10, -0.04, -0.04, -0.03, ... rank = 0.05 * 20 =
    // 1: exactly x[1] = -0.04. At or below it: -0.10, -0.04 and the tied
    // -0.04, mean -0.18/3 = -0.06.
    let r = [
        0.02, -0.04, 0.01, 0.05, -0.10, 0.00, 0.03, -0.04, 0.01, 0.02, -0.01, 0.04, 0.00, 0.03, -0.02, 0.06, 0.01,
        -0.03, 0.02, 0.07, 0.00,
    ];
    assert_eq!(r.len(), 21);
    assert_near(var_95(&r), -0.04, 1e-15);
    assert_near(cvar_95(&r), -0.06, 1e-15);
}

#[test]
fn var_cvar_and_sharpe_over_252_returns_match_the_hand_worked_values() {
    // The returns are x[k] = (k - 20)/1000 for k = 0..252, shuffled (taken in
    // the order k = 5j mod 252, a permutation since gcd(5, 252) = 1) so the
    // code has to sort them. rank = 0.05 * 251 = 12.55, between
    // x[12] = -0.008 and x[13] = -0.007: var_95 = -0.008 + 0.55 * 0.001 =
    // -0.00745. At or below: x[0..=12] = -0.020..=-0.008, mean -0.014.
    // Mean (125.5 - 20)/1000 = 0.1055; sample variance of 0..252 (ddof 1)
    // is 252 * 253 / 12 = 5313, so std = sqrt(5313)/1000 and sharpe =
    // 105.5 / sqrt(5313) * sqrt(252).
    let r: Vec<f64> = (0..252).map(|j| ((5 * j) % 252) as f64 / 1000.0 - 0.020).collect();
    let c = closes_from(&r);
    assert_eq!(c.len(), 253);
    let var = rolling_returns(&c, WINDOW, var_95);
    let cvar = rolling_returns(&c, WINDOW, cvar_95);
    let sharpe = rolling_returns(&c, WINDOW, sharpe_ratio);
    assert_close(&var, &after(252, 253, -0.00745), 1e-12);
    assert_close(&cvar, &after(252, 253, -0.014), 1e-12);
    assert_close(&sharpe, &after(252, 253, 105.5 / 5313f64.sqrt() * 252f64.sqrt()), 1e-9);
}

#[test]
fn sharpe_is_mean_over_sample_std_annualized() {
    // Mean 0.02, sample std sqrt((0.01^2 + 0.01^2)/1) = 0.01 * sqrt(2):
    // sharpe = sqrt(2) * sqrt(252) = sqrt(504).
    assert_near(sharpe_ratio(&[0.01, 0.03]), 504f64.sqrt(), 1e-12);
    // 252 returns m -/+ a: sample variance 252a^2/251, so sharpe =
    // m / (a * sqrt(252/251)) * sqrt(252) = m/a * sqrt(251).
    let c = closes_from(&zigzag(0.001, 0.01, 252));
    assert_close(&rolling_returns(&c, WINDOW, sharpe_ratio), &after(252, 253, 0.1 * 251f64.sqrt()), 1e-9);
    // No dispersion: undefined (0.5 * 4 = 2 sums exactly, so the std is 0).
    assert_eq!(sharpe_ratio(&[0.5; 4]), None);
}

#[test]
fn beta_is_sample_cov_over_sample_var() {
    // a = [1, 3, 2], b = [1, 2, 3]: means 2 and 2, deviations [-1, 1, 0] and
    // [-1, 0, 1]; cov = 1/2, var = 2/2 = 1, beta 0.5 (the divisor cancels).
    assert_near(beta(&[1.0, 3.0, 2.0], &[1.0, 2.0, 3.0]), 0.5, 1e-15);
    // A benchmark without variance gives no beta; mismatched lengths neither.
    assert_eq!(beta(&[1.0, 2.0], &[0.5, 0.5]), None);
    assert_eq!(beta(&[1.0, 2.0], &[1.0]), None);
}

#[test]
fn beta_of_returns_twice_the_benchmarks_is_two_from_row_252() {
    let rb = wiggle(299);
    let ra: Vec<f64> = rb.iter().map(|r| 2.0 * r).collect();
    let (bench, asset) = (closes_from(&rb), closes_from(&ra));
    let times: Vec<i64> = (0..300).map(day).collect();
    let b = rolling_beta(&times, &asset, &times, &bench, WINDOW);
    assert_close(&b, &after(252, 300, 2.0), 1e-9);
}

#[test]
fn max_drawdown_follows_the_running_peak() {
    // Peaks 100, 200, 300: drawdowns 0, 0, 150/200 - 1 = -0.25, 0,
    // 180/300 - 1 = -0.4; the deepest is -0.4.
    assert_near(max_drawdown(&[100.0, 200.0, 150.0, 300.0, 180.0]), -0.4, 1e-15);
    // Down first, then up: the running max starts at the first close,
    // 50/100 - 1 = -0.5.
    assert_near(max_drawdown(&[100.0, 50.0, 400.0]), -0.5, 0.0);
    assert_eq!(max_drawdown(&[]), None);
}

#[test]
fn constant_drift_has_no_drawdown() {
    let c: Vec<f64> = (0..300).map(|i| 100.0 * 1.001f64.powi(i)).collect();
    assert_close(&rolling_closes(&c, WINDOW + 1, max_drawdown), &after(252, 300, 0.0), 0.0);
}

#[test]
fn max_drawdown_looks_back_exactly_253_closes() {
    // A peak of 200 on row 0, then 100 forever. Rows 252 and before hold the
    // peak in their window (rows 0..=252): 100/200 - 1 = -0.5. Row 253's
    // window starts at row 1, all 100: no drawdown.
    let mut c = vec![200.0];
    c.extend([100.0; 259]);
    let dd = rolling_closes(&c, WINDOW + 1, max_drawdown);
    assert_eq!((dd[251], dd[252], dd[253], dd[259]), (None, Some(-0.5), Some(0.0), Some(0.0)));
}

#[test]
fn describe_declares_the_benchmark_and_seven_features() {
    let d = Risk::describe();
    assert_eq!(d.kind, wafer_guest::Kind::Batch);
    assert_eq!(d.min_history, 253);
    assert_eq!(d.inputs.len(), 1);
    assert_eq!((d.inputs[0].name.as_str(), d.inputs[0].value_type), ("close", ValueType::Float64));
    assert_eq!(d.params.len(), 1);
    assert_eq!(
        (d.params[0].name.as_str(), d.params[0].value_type, d.params[0].default_value.as_deref()),
        ("benchmark", ValueType::Text, Some("SPY"))
    );
    assert_eq!(d.related.len(), 1);
    let r = &d.related[0];
    assert_eq!((r.name.as_str(), r.source.as_str(), r.entity_param.as_str()), ("benchmark", "prices", "benchmark"));
    let names: Vec<&str> = d.outputs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["volatility_30d", "volatility_90d", "beta", "var_95", "cvar_95", "sharpe_ratio", "max_drawdown"]
    );
    assert!(d.outputs.iter().all(|f| f.value_type == ValueType::Float64 && !f.description.is_empty()));
}

#[test]
fn batch_returns_every_input_row_with_nulls_until_each_window_is_full() {
    let c = closes_from(&wiggle(299));
    let prices = daily(&c);
    let timestamps = prices.timestamps.clone();
    let out = Risk::batch(input(prices.clone(), Some(prices))).unwrap();
    assert_eq!(out.timestamps, timestamps);
    let names: Vec<&str> = out.columns.iter().map(Column::name).collect();
    assert_eq!(names, FEATURES.map(|(name, _)| name));
    // 30 and 90 returns need 31 and 91 closes; 252 returns need 253.
    let first = [30, 90, 252, 252, 252, 252, 252];
    for (column, first) in out.columns.iter().zip(first) {
        assert_eq!(column.rows(), 300);
        assert_eq!(column.nulls(), (0..first).collect::<Vec<u32>>(), "{}", column.name());
    }
}

#[test]
fn a_ticker_that_is_its_own_benchmark_has_beta_exactly_one() {
    // The joined returns are identical, so cov and var are the same sum.
    let prices = daily(&closes_from(&wiggle(269)));
    let out = Risk::batch(input(prices.clone(), Some(prices))).unwrap();
    assert_eq!(feature(&out, "beta"), after(252, 270, 1.0));
}

#[test]
fn beta_joins_on_date_and_drops_dates_missing_from_either_side() {
    // Ticker rows are days 0..300. The joined dates J are the days except
    // 100 and 280 (absent from the benchmark) and 200 (the benchmark's close
    // is null there). On J the ticker's returns are exactly twice the
    // benchmark's, so beta is 2; on days 100, 200 and 280 the ticker's close
    // is a wild jump that would wreck beta if those days were not dropped.
    // The benchmark also has a row at day 150.5 that the ticker lacks, with
    // a close that would wreck beta too.
    let dropped = [100, 200, 280];
    let joined: Vec<i64> = (0..300).filter(|d| !dropped.contains(d)).collect();
    let rb = wiggle(joined.len() - 1);
    let ra: Vec<f64> = rb.iter().map(|r| 2.0 * r).collect();
    let (bench_on_j, asset_on_j) = (closes_from(&rb), closes_from(&ra));
    let mut ticker = Vec::new();
    let mut k = 0;
    for d in 0..300 {
        if dropped.contains(&d) {
            ticker.push(Some(asset_on_j[k - 1] * 5.0));
        } else {
            ticker.push(Some(asset_on_j[k]));
            k += 1;
        }
    }
    let mut bench: Vec<(i64, Option<f64>)> = joined.iter().zip(&bench_on_j).map(|(&d, &c)| (day(d), Some(c))).collect();
    bench.push((day(200), None));
    bench.push((day(150) + 43_200_000_000, Some(1e6)));
    bench.sort_by_key(|(t, _)| *t);
    let bench = table(bench.iter().map(|(t, _)| *t).collect(), bench.iter().map(|(_, c)| *c).collect());
    let prices = table((0..300).map(day).collect(), ticker);

    let out = Risk::batch(input(prices, Some(bench))).unwrap();
    let b = feature(&out, "beta");
    // 253 joined closes up to day t: days 0..=t minus the three dropped
    // ones before t, so t + 1 - 2 = 253 at t = 254 (days 100 and 200 are
    // gone by then): row 253 is null, row 254 the first value.
    assert_close(&b, &after(254, 300, 2.0), 1e-9);
    // Day 280 is not joined: its beta is that of the joined series up to
    // its date, i.e. the one of day 279.
    assert_eq!(b[280], b[279]);
    // The ticker's own features still use every ticker row.
    assert!(feature(&out, "sharpe_ratio")[252].is_some());
}

#[test]
fn without_benchmark_rows_beta_is_null_and_the_rest_is_computed() {
    let c = closes_from(&zigzag(0.0, 0.01, 259));
    let v30 = 0.01 * (30.0f64 / 29.0).sqrt() * 252f64.sqrt();
    for benchmark in [Some(Table::new(vec![])), Some(table(vec![], vec![])), None] {
        let out = Risk::batch(input(daily(&c), benchmark)).unwrap();
        assert_eq!(feature(&out, "beta"), vec![None; 260]);
        assert_close(&feature(&out, "volatility_30d"), &after(30, 260, v30), 1e-12);
        assert!(feature(&out, "max_drawdown")[252].is_some());
    }
}

#[test]
fn batch_skips_rows_without_a_close() {
    // Alternating returns with a null row inserted at row 10: the existing
    // closes are the plain alternating series, so volatility_30d is the
    // hand-worked value of the volatility test, first on row 31 (the 31st
    // existing close), and every feature is null on row 10.
    let a = 0.01;
    let mut closes: Vec<Option<f64>> = closes_from(&zigzag(0.0, a, 99)).into_iter().map(Some).collect();
    closes.insert(10, None);
    let prices = table((0..101).map(day).collect(), closes);
    let out = Risk::batch(input(prices.clone(), Some(prices))).unwrap();
    let v30 = a * (30.0f64 / 29.0).sqrt() * 252f64.sqrt();
    assert_close(&feature(&out, "volatility_30d"), &after(31, 101, v30), 1e-12);
    assert!(out.columns.iter().all(|c| c.is_null(10)));
}

#[test]
fn batch_refuses_input_without_a_float_close() {
    let mut prices = daily(&[1.0]);
    prices.columns.clear();
    assert_eq!(Risk::batch(input(prices, None)).unwrap_err(), "no column named `close`");
    let bench = Table::new(vec![day(0)]).with(Column::int64("close", vec![Some(1)]));
    assert_eq!(
        Risk::batch(input(daily(&[1.0]), Some(bench))).unwrap_err(),
        "benchmark series: column `close` is Int64, expected Float64"
    );
    assert_eq!(Risk::batch(BatchInput::default()).unwrap_err(), "the input has no source table");
}

#[test]
fn on_demand_is_refused() {
    assert!(Risk::on_demand(Default::default()).is_err());
}

#[test]
fn the_sliding_tail_window_gives_every_rows_var_and_cvar_to_the_bit() {
    // Returns with ties, a gap (a zero close makes an infinite return and
    // a NaN after it) and a recovery, over windows of several sizes.
    let mut closes: Vec<f64> = (0..400).map(|i| 100.0 + ((i * 37) % 23) as f64 - ((i * 11) % 7) as f64 * 0.5).collect();
    closes[40] = 0.0;
    for n in [1, 2, 5, 30, 252] {
        let (var, cvar) = rolling_tail_risk(&closes, n);
        assert_eq!(var, rolling_returns(&closes, n, var_95), "var, window {n}");
        assert_eq!(cvar, rolling_returns(&closes, n, cvar_95), "cvar, window {n}");
        assert!(var.iter().flatten().count() > 0, "window {n} computed something");
    }
    assert_eq!(rolling_tail_risk(&closes[..10], 252), (vec![None; 10], vec![None; 10]));
}
