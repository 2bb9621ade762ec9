//! # wafer-risk
//!
//! The first-party batch transform behind the `risk` feature group: seven
//! risk measures of one ticker's daily closes, beta against a benchmark
//! ticker's closes.
//!
//! ## Input and output
//! Reads the float64 column `close` from the **first** source table, whatever
//! the feature group calls it, and the float64 column `close` of the related
//! series `benchmark` (declared with [`Descriptor::related`]: source `prices`,
//! entity from the param `benchmark`, default `SPY`), which the host passes
//! whole. Returns one row per input row, with the input's timestamps and one
//! float64 column per feature, in [`FEATURES`] order. Each row's values are
//! computed over the window ending at that row (rolling), so the history of
//! every feature is reproducible from the closes alone.
//!
//! ## Conventions
//! `c[i]` is the close on row `i` of the series (oldest first) and
//! `r[i] = c[i] / c[i-1] - 1` the simple return on row `i` (row 0 has none).
//! A window of `n` returns ending on row `i` is `r[i-n+1..=i]`, which needs
//! `n + 1` closes: the first value of an `n`-return feature is on row `n`,
//! and row `n - 1` is null. A feature with too little history is null, never
//! computed over a shorter window.
//!
//! - `volatility_30d` / `volatility_90d`: **sample** standard deviation
//!   (divisor `n - 1`, numpy's `ddof=1`) of the last 30 / 90 returns,
//!   × `sqrt(252)`. First value on row 30 / 90.
//! - The other five use the last **252 returns** (253 closes); first value on
//!   row 252:
//!   - `sharpe_ratio`: mean / sample std (ddof 1) of the returns × `sqrt(252)`,
//!     risk-free rate 0. Null when the std is 0.
//!   - `var_95`: the 5th percentile of the returns with **linear
//!     interpolation**, numpy's default `np.percentile(r, 5)`: with the
//!     returns sorted ascending as `x[0..n]`, rank `h = 0.05 × (n - 1)`
//!     (12.55 for n = 252), `var_95 = x[⌊h⌋] + (h - ⌊h⌋) × (x[⌊h⌋+1] - x[⌊h⌋])`.
//!     A return, so negative for a loss.
//!   - `cvar_95`: the mean of the returns **at or below** `var_95` (for
//!     n = 252 without ties, the 13 smallest).
//!   - `max_drawdown`: the minimum over the window's 253 closes of
//!     `c / running_max(c) - 1`, the running max starting at the window's
//!     first close: 0 for a series that never falls, otherwise negative.
//!   - `beta`: `cov(r_t, r_b) / var(r_b)` over the last 252 returns of the
//!     **joined** series. Covariance and variance both use the sample divisor
//!     (`n - 1`, ddof 1), so the divisor cancels and beta equals the
//!     population-divisor ratio. Null when the benchmark's variance is 0.
//!
//! ## The benchmark join
//! The ticker's and the benchmark's closes are joined on timestamp equality:
//! a date missing from either side (or whose close is null or not finite) is
//! not in the joined series. Returns for beta are computed on **consecutive
//! joined rows**, so a date dropped from the join makes the next return span
//! two trading days on both sides, never a ticker return against a
//! mismatched benchmark return. Beta on a row is the beta of the joined
//! series up to and including that row's date: on a date the benchmark lacks,
//! it is the beta of the last joined date before it. It is null until the
//! joined series holds 253 closes, which is later than row 252 when dates are
//! missing. When the ticker is its own benchmark the joined returns are
//! identical and beta is exactly 1. No benchmark rows (an empty or absent
//! `benchmark` table) make beta null on every row; the other features are
//! computed as usual.
//!
//! ## Nulls
//! Rows whose close is null (or not finite) are skipped: every feature is
//! null on such a row, and the other rows are computed over the series of the
//! closes that exist (a skipped row neither ends a window nor counts in one),
//! as in `wafer-indicators`. Rows and windows therefore count existing closes.
//! A return that is not finite (after a zero close) is a gap: every window
//! containing it is null. Any result that is not finite is null.
//!
//! `min_history` is 253: the 252-return features need the most closes.
//!
//! ## Layout
//! The math is plain functions over slices, tested natively: per window
//! ([`sample_std`], [`percentile`], [`var_95`], [`cvar_95`],
//! [`sharpe_ratio`], [`beta`], [`max_drawdown`]), per row ([`returns`],
//! [`volatility`], [`rolling_returns`], [`rolling_closes`], [`join`],
//! [`rolling_beta`]), and [`compute`] for all seven. [`Risk`] wires them to
//! the host through [`wafer_guest::Transform`].

use wafer_guest::{BatchInput, Column, Descriptor, Table, Transform, ValueType, rolling};

/// The output features in column order, with their descriptions.
pub const FEATURES: [(&str, &str); 7] = [
    ("volatility_30d", "Sample std (ddof 1) of the last 30 daily returns x sqrt(252)"),
    ("volatility_90d", "Sample std (ddof 1) of the last 90 daily returns x sqrt(252)"),
    ("beta", "Sample cov / sample var of the last 252 returns against the benchmark, closes joined on date"),
    ("var_95", "5th percentile of the last 252 returns, linear interpolation (numpy default); negative for a loss"),
    ("cvar_95", "Mean of the last 252 returns at or below var_95"),
    ("sharpe_ratio", "Mean / sample std of the last 252 returns x sqrt(252), risk-free rate 0"),
    ("max_drawdown", "Min over the last 253 closes of close / running max - 1 (negative or 0)"),
];

/// Returns in the long window of `beta`, `var_95`, `cvar_95`, `sharpe_ratio`
/// and `max_drawdown` (one trading year).
pub const WINDOW: usize = 252;

/// Trading days per year, for annualizing daily figures by `sqrt(252)`.
pub const TRADING_DAYS: f64 = 252.0;

/// Source rows needed for a complete latest row: 253 closes give 252 returns.
pub const MIN_HISTORY: u32 = WINDOW as u32 + 1;

/// The related series' name, and the param holding the benchmark's ticker.
pub const BENCHMARK: &str = "benchmark";

/// The benchmark ticker when the feature group sets none.
pub const DEFAULT_BENCHMARK: &str = "SPY";

/// Simple returns aligned with `closes`: `r[i] = c[i] / c[i-1] - 1`, and
/// `NaN` on row 0, which has no previous close.
pub fn returns(closes: &[f64]) -> Vec<f64> {
    let mut r = Vec::with_capacity(closes.len());
    if !closes.is_empty() {
        r.push(f64::NAN);
    }
    r.extend(closes.windows(2).map(|w| w[1] / w[0] - 1.0));
    r
}

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample standard deviation (divisor `n - 1`, ddof 1); `None` below two values.
pub fn sample_std(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let m2: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((m2 / (xs.len() - 1) as f64).sqrt())
}

/// The `q`-th percentile (`q` in 0..=100) with linear interpolation, numpy's
/// default: rank `h = q/100 × (n - 1)` into the sorted values, interpolated
/// between its two neighbours. `None` for an empty slice or any non-finite
/// value.
pub fn percentile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() || !xs.iter().all(|x| x.is_finite()) {
        return None;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    percentile_of_sorted(&sorted, q)
}

/// [`percentile`] of finite values already sorted ascending.
fn percentile_of_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    let h = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = (h.floor() as usize).min(sorted.len() - 1);
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b, t) = (sorted[lo], sorted[hi], h - lo as f64);
    // numpy's `_lerp`: from the nearer end, so the result stays within
    // [a, b] and equals b exactly at t = 1.
    Some(if t < 0.5 { a + (b - a) * t } else { b - (b - a) * (1.0 - t) })
}

/// Historical value at risk: the 5th percentile of `returns` (see
/// [`percentile`]); negative for a loss.
pub fn var_95(returns: &[f64]) -> Option<f64> {
    percentile(returns, 5.0)
}

/// Conditional value at risk (expected shortfall): the mean of the returns
/// at or below [`var_95`]. Never empty, since the smallest return is at or
/// below any percentile.
pub fn cvar_95(returns: &[f64]) -> Option<f64> {
    tail_mean(returns, var_95(returns)?)
}

/// The mean of the returns at or below `var`, summed in time order.
fn tail_mean(returns: &[f64], var: f64) -> Option<f64> {
    let tail: Vec<f64> = returns.iter().copied().filter(|&r| r <= var).collect();
    mean(&tail)
}

/// [`var_95`] and [`cvar_95`] of the last `n` returns on every row, as
/// [`rolling_returns`] would give them, from one window kept sorted as it
/// slides (a removal and an insertion per row, not a sort per window):
/// the same sorted values, so the same figures to the bit.
pub fn rolling_tail_risk(closes: &[f64], n: usize) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let r = returns(closes);
    let (mut var, mut cvar) = (vec![None; closes.len()], vec![None; closes.len()]);
    if n == 0 || closes.len() <= n {
        return (var, cvar);
    }
    // The window r[i+1-n..=i], ordered by total_cmp (so a NaN, which no
    // figure is computed over, is found again to be removed).
    let mut sorted: Vec<f64> = r[1..n].to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    for i in n..closes.len() {
        let at = sorted.partition_point(|x| x.total_cmp(&r[i]).is_lt());
        sorted.insert(at, r[i]);
        if i > n {
            let gone = r[i - n];
            let at = sorted.partition_point(|x| x.total_cmp(&gone).is_lt());
            sorted.remove(at);
        }
        let window = &r[i + 1 - n..=i];
        if sorted.iter().all(|x| x.is_finite()) {
            var[i] = percentile_of_sorted(&sorted, 5.0);
            cvar[i] = var[i].and_then(|v| tail_mean(window, v));
        }
    }
    (var, cvar)
}

/// Annualized Sharpe ratio with a risk-free rate of 0: mean / sample std ×
/// `sqrt(252)`. `None` below two returns or when the std is 0.
pub fn sharpe_ratio(returns: &[f64]) -> Option<f64> {
    let sd = sample_std(returns)?;
    if sd == 0.0 {
        return None;
    }
    finite(mean(returns)? / sd * TRADING_DAYS.sqrt())
}

/// `cov(asset, benchmark) / var(benchmark)` over paired returns. Both use
/// the sample divisor `n - 1`, which cancels. `None` for mismatched lengths,
/// fewer than two pairs, or a benchmark without variance.
pub fn beta(asset: &[f64], benchmark: &[f64]) -> Option<f64> {
    if asset.len() != benchmark.len() || asset.len() < 2 {
        return None;
    }
    let (ma, mb) = (mean(asset)?, mean(benchmark)?);
    let dof = (asset.len() - 1) as f64;
    let cov = asset.iter().zip(benchmark).map(|(a, b)| (a - ma) * (b - mb)).sum::<f64>() / dof;
    let var = benchmark.iter().map(|b| (b - mb) * (b - mb)).sum::<f64>() / dof;
    if var == 0.0 {
        return None;
    }
    finite(cov / var)
}

/// Maximum drawdown of `closes`: the minimum of `c / running_max(c) - 1`,
/// the running max starting at the first close. 0 for a series that never
/// falls; `None` for an empty slice or a non-finite result.
pub fn max_drawdown(closes: &[f64]) -> Option<f64> {
    let mut peak = *closes.first()?;
    let mut worst = 0.0f64;
    for &c in closes {
        peak = peak.max(c);
        worst = worst.min(c / peak - 1.0);
    }
    finite(worst)
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Annualized volatility on every row: sample std of the last `n` returns ×
/// `sqrt(252)`, first on row `n` (see the crate docs).
pub fn volatility(closes: &[f64], n: usize) -> Vec<Option<f64>> {
    rolling::std_sample(&returns(closes), n).into_iter().map(|sd| Some(sd? * TRADING_DAYS.sqrt())).collect()
}

/// `f` of the last `n` returns on every row from row `n`; `None` before, and
/// on rows whose window holds a non-finite return.
pub fn rolling_returns(closes: &[f64], n: usize, f: impl Fn(&[f64]) -> Option<f64>) -> Vec<Option<f64>> {
    let r = returns(closes);
    (0..closes.len())
        .map(|i| {
            let window = &r[(i + 1).checked_sub(n).filter(|&start| start >= 1 && n > 0)?..=i];
            window.iter().all(|x| x.is_finite()).then(|| f(window))?
        })
        .collect()
}

/// `f` of the last `n` closes on every row from row `n - 1`; `None` before.
pub fn rolling_closes(closes: &[f64], n: usize, f: impl Fn(&[f64]) -> Option<f64>) -> Vec<Option<f64>> {
    (0..closes.len())
        .map(|i| {
            let start = (i + 1).checked_sub(n).filter(|_| n > 0)?;
            f(&closes[start..=i])
        })
        .collect()
}

/// The rows of two series with equal timestamps and finite closes on both
/// sides, as `(row in a, row in b)` pairs in time order. Both series are in
/// ascending time order, as the host passes them.
pub fn join(a_times: &[i64], a_closes: &[f64], b_times: &[i64], b_closes: &[f64]) -> Vec<(usize, usize)> {
    let usable = |times: &[i64], closes: &[f64]| -> Vec<usize> {
        (0..times.len().min(closes.len())).filter(|&i| closes[i].is_finite()).collect()
    };
    let (a, b) = (usable(a_times, a_closes), usable(b_times, b_closes));
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (ta, tb) = (a_times[a[i]], b_times[b[j]]);
        if ta < tb {
            i += 1;
        } else if tb < ta {
            j += 1;
        } else {
            pairs.push((a[i], b[j]));
            (i, j) = (i + 1, j + 1);
        }
    }
    pairs
}

/// Beta of the ticker against the benchmark on every ticker row: over the
/// last `n` returns of the joined series up to and including that row's
/// date (see the crate docs). `None` until the joined series holds `n + 1`
/// closes up to that date.
pub fn rolling_beta(
    times: &[i64],
    closes: &[f64],
    bench_times: &[i64],
    bench_closes: &[f64],
    n: usize,
) -> Vec<Option<f64>> {
    let pairs = join(times, closes, bench_times, bench_closes);
    let asset: Vec<f64> = pairs.iter().map(|&(a, _)| closes[a]).collect();
    let bench: Vec<f64> = pairs.iter().map(|&(_, b)| bench_closes[b]).collect();
    let (ra, rb) = (returns(&asset), returns(&bench));
    let mut out = vec![None; closes.len()];
    let mut current = None;
    let mut next = pairs.iter().enumerate().peekable();
    for (row, slot) in out.iter_mut().enumerate() {
        // Advance to the last joined date at or before this row's date.
        while let Some((j, _)) = next.next_if(|(_, (a, _))| *a <= row) {
            current = (j + 1).checked_sub(n).filter(|&start| start >= 1 && n > 0).and_then(|start| {
                let (wa, wb) = (&ra[start..=j], &rb[start..=j]);
                wa.iter().chain(wb).all(|x| x.is_finite()).then(|| beta(wa, wb))?
            });
        }
        *slot = current;
    }
    out
}

/// All seven features in [`FEATURES`] order, over finite `closes` at
/// `times`; `benchmark` is the benchmark's `(times, closes)`, `None` (or
/// empty) for no benchmark rows.
pub fn compute(times: &[i64], closes: &[f64], benchmark: Option<(&[i64], &[f64])>) -> Vec<Vec<Option<f64>>> {
    let beta = match benchmark {
        Some((bench_times, bench_closes)) => rolling_beta(times, closes, bench_times, bench_closes, WINDOW),
        None => vec![None; closes.len()],
    };
    let (var, cvar) = rolling_tail_risk(closes, WINDOW);
    vec![
        volatility(closes, 30),
        volatility(closes, 90),
        beta,
        var,
        cvar,
        rolling_returns(closes, WINDOW, sharpe_ratio),
        rolling_closes(closes, WINDOW + 1, max_drawdown),
    ]
}

/// The `risk` transform.
pub struct Risk;

impl Transform for Risk {
    fn describe() -> Descriptor {
        let d = Descriptor::batch(
            "Risk measures of daily closes: volatility, beta against a benchmark, VaR, CVaR, Sharpe, max drawdown",
        )
        .input("close", ValueType::Float64, "Daily close, read from the first source")
        .param(BENCHMARK, ValueType::Text, Some(DEFAULT_BENCHMARK), "Ticker of the benchmark for beta")
        .related(BENCHMARK, "prices", BENCHMARK)
        .min_history(MIN_HISTORY);
        FEATURES.iter().fold(d, |d, (name, doc)| d.output(*name, ValueType::Float64, *doc))
    }

    fn batch(input: BatchInput) -> Result<Table, String> {
        let source = input.first_source()?;
        let closes = source.float64("close")?;
        let rows = source.rows();
        if closes.len() != rows {
            return Err(format!("column `close` has {} rows for {rows} timestamps", closes.len()));
        }
        // An absent series is treated like an empty one: no benchmark rows.
        let benchmark = match input.related(BENCHMARK) {
            Ok(t) if t.rows() > 0 => {
                let bench = t.float64("close").map_err(|e| format!("benchmark series: {e}"))?;
                if bench.len() != t.rows() {
                    return Err(format!(
                        "benchmark column `close` has {} rows for {} timestamps",
                        bench.len(),
                        t.rows()
                    ));
                }
                Some((t.timestamps.as_slice(), bench))
            }
            _ => None,
        };
        // Skip rows without a usable close (see the crate docs), mapping the
        // results back to their rows.
        let kept: Vec<usize> = (0..rows).filter(|&i| closes[i].is_finite()).collect();
        let features = if kept.len() == rows {
            compute(&source.timestamps, closes, benchmark)
        } else {
            let times: Vec<i64> = kept.iter().map(|&i| source.timestamps[i]).collect();
            let dense: Vec<f64> = kept.iter().map(|&i| closes[i]).collect();
            compute(&times, &dense, benchmark)
                .into_iter()
                .map(|values| {
                    let mut full = vec![None; rows];
                    for (&row, v) in kept.iter().zip(values) {
                        full[row] = v;
                    }
                    full
                })
                .collect()
        };
        Ok(FEATURES
            .iter()
            .zip(features)
            .fold(Table::new(source.timestamps.clone()), |t, ((name, _), v)| t.with(Column::float64(*name, v))))
    }
}

wafer_guest::export!(Risk);

#[cfg(test)]
mod tests;
