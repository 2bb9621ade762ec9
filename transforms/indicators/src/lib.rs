//! # wafer-indicators
//!
//! The first-party batch transform behind the `technical` feature group: 12
//! technical indicators of one ticker's daily closes.
//!
//! ## Input and output
//! Reads the float64 column `close` from the **first** source table, whatever
//! the feature group calls it. Returns one row per input row, with the input's
//! timestamps and one float64 column per feature, in [`FEATURES`] order.
//!
//! ## Conventions
//! `c[i]` is the close on row `i` of the series (oldest first). A feature with
//! too little history is null, never computed over a shorter window. Rows
//! whose close is null (or not finite) are skipped: every feature is null on
//! such a row, and the other rows are computed over the series of the closes
//! that exist, so a missing bar neither poisons the EMAs forever nor shortens
//! a window.
//!
//! - `sma_n` (`sma_20`, `sma_50`, `sma_200`): mean of the last `n` closes;
//!   first value at row `n - 1`.
//! - `ema_n` (`ema_12`, `ema_26`): `alpha = 2 / (n + 1)`; seeded at row
//!   `n - 1` with the SMA of the first `n` closes, then
//!   `ema[i] = ema[i-1] + alpha * (c[i] - ema[i-1])`.
//! - `rsi_14`: Wilder's RSI. With changes `d[i] = c[i] - c[i-1]`, gain
//!   `max(d, 0)` and loss `max(-d, 0)`, the average gain `G` and loss `L` at
//!   row 14 are the simple means of the first 14 changes (rows 1..=14); after
//!   that `G = (13 * G + gain) / 14`, likewise `L`. `RSI = 100 * G / (G + L)`,
//!   and 0 when both are 0 (a flat series). First value at row 14.
//! - `macd = ema_12 - ema_26`, each EMA seeded on its own as above, so `macd`
//!   exists from row 25.
//! - `macd_signal`: EMA(9) (`alpha = 0.2`) of `macd`, seeded with the mean of
//!   its first 9 values; first value at row 33.
//! - `macd_histogram = macd - macd_signal`; from row 33.
//! - `bollinger_middle` = SMA(20); `bollinger_upper` / `bollinger_lower` =
//!   middle ± 2 × the **population** standard deviation (divisor 20, ddof 0)
//!   of the same 20 closes; from row 19.
//!
//! `min_history` is 200: `sma_200` needs the most rows. The EMAs (and so
//! MACD and RSI) depend on the whole series passed, as with any recursive
//! indicator; a longer lookback brings them closer to their long-run value.
//!
//! ## Layout
//! The math is plain functions over `&[f64]` ([`sma`], [`ema`], [`rsi`],
//! [`macd`], [`bollinger`], and [`compute`] for all 12), tested natively;
//! [`Indicators`] wires them to the host through [`wafer_guest::Transform`].

use wafer_guest::{BatchInput, Column, Descriptor, Table, Transform, ValueType, rolling};

/// The output features in column order, with their descriptions.
pub const FEATURES: [(&str, &str); 12] = [
    ("sma_20", "Mean of the last 20 closes"),
    ("sma_50", "Mean of the last 50 closes"),
    ("sma_200", "Mean of the last 200 closes"),
    ("ema_12", "12-day EMA of close: alpha 2/13, seeded with the SMA of the first 12 closes"),
    ("ema_26", "26-day EMA of close: alpha 2/27, seeded with the SMA of the first 26 closes"),
    ("rsi_14", "Wilder's 14-day RSI (0-100), averages seeded with simple means of the first 14 changes"),
    ("macd", "MACD line: ema_12 - ema_26"),
    ("macd_signal", "9-period EMA of macd, seeded with the mean of its first 9 values"),
    ("macd_histogram", "macd - macd_signal"),
    ("bollinger_upper", "SMA(20) + 2 x population std of the same 20 closes"),
    ("bollinger_middle", "SMA(20) of close"),
    ("bollinger_lower", "SMA(20) - 2 x population std of the same 20 closes"),
];

/// Source rows needed for a complete latest row: `sma_200` needs the most.
pub const MIN_HISTORY: u32 = 200;

/// Simple moving average: mean of the last `n` closes, `None` before row `n - 1`.
pub fn sma(closes: &[f64], n: usize) -> Vec<Option<f64>> {
    rolling::mean(closes, n)
}

/// EMA with `alpha = 2 / (n + 1)`, seeded at row `n - 1` with the SMA of the
/// first `n` closes.
pub fn ema(closes: &[f64], n: usize) -> Vec<Option<f64>> {
    rolling::ema(closes, n)
}

/// Wilder's RSI over `n` changes (see the crate docs); first value at row `n`.
pub fn rsi(closes: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; closes.len()];
    if n == 0 || closes.len() <= n {
        return out;
    }
    let change = |i: usize| closes[i] - closes[i - 1];
    let (mut gain, mut loss) = (0.0, 0.0);
    for i in 1..=n {
        let d = change(i);
        gain += d.max(0.0);
        loss += (-d).max(0.0);
    }
    let k = n as f64;
    (gain, loss) = (gain / k, loss / k);
    out[n] = Some(rsi_value(gain, loss));
    for (i, slot) in out.iter_mut().enumerate().skip(n + 1) {
        let d = change(i);
        gain = ((k - 1.0) * gain + d.max(0.0)) / k;
        loss = ((k - 1.0) * loss + (-d).max(0.0)) / k;
        *slot = Some(rsi_value(gain, loss));
    }
    out
}

/// `100 * G / (G + L)`, the same as `100 - 100 / (1 + G/L)` but defined when
/// `L` is 0 (RSI 100); 0 for a flat series, where both are 0.
fn rsi_value(gain: f64, loss: f64) -> f64 {
    if gain + loss == 0.0 { 0.0 } else { 100.0 * gain / (gain + loss) }
}

/// The MACD line, signal and histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Macd {
    /// `ema(fast) - ema(slow)`.
    pub macd: Vec<Option<f64>>,
    /// EMA(`signal`) of the MACD line, seeded with the mean of its first values.
    pub signal: Vec<Option<f64>>,
    /// `macd - signal`.
    pub histogram: Vec<Option<f64>>,
}

/// MACD with EMA periods `fast` and `slow` and a `signal`-period EMA of the
/// difference (12, 26, 9 for the `technical` group). Each EMA is seeded on its
/// own, so the line starts at row `max(fast, slow) - 1` and the signal
/// `signal - 1` rows later.
pub fn macd(closes: &[f64], fast: usize, slow: usize, signal: usize) -> Macd {
    let line: Vec<Option<f64>> =
        ema(closes, fast).into_iter().zip(ema(closes, slow)).map(|(f, s)| Some(f? - s?)).collect();
    let mut sig = vec![None; closes.len()];
    // The line is None before its first row and then defined on every row
    // (the closes are finite), so the signal is an EMA of that suffix.
    if let Some(start) = line.iter().position(Option::is_some) {
        let dense: Vec<f64> = line[start..].iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        sig[start..].copy_from_slice(&rolling::ema(&dense, signal));
    }
    let histogram = line.iter().zip(&sig).map(|(m, s)| Some((*m)? - (*s)?)).collect();
    Macd { macd: line, signal: sig, histogram }
}

/// Bollinger bands.
#[derive(Debug, Clone, PartialEq)]
pub struct Bollinger {
    /// `middle + k * std`.
    pub upper: Vec<Option<f64>>,
    /// SMA(`n`).
    pub middle: Vec<Option<f64>>,
    /// `middle - k * std`.
    pub lower: Vec<Option<f64>>,
}

/// Bollinger bands over `n` closes, `k` population standard deviations wide
/// (20 and 2 for the `technical` group).
pub fn bollinger(closes: &[f64], n: usize, k: f64) -> Bollinger {
    let middle = sma(closes, n);
    let std = rolling::std_pop(closes, n);
    let band = |sign: f64| middle.iter().zip(&std).map(|(m, s)| Some((*m)? + sign * k * (*s)?)).collect();
    Bollinger { upper: band(1.0), lower: band(-1.0), middle }
}

/// All 12 features over finite closes, in [`FEATURES`] order.
pub fn compute(closes: &[f64]) -> Vec<Vec<Option<f64>>> {
    let Macd { macd, signal, histogram } = macd(closes, 12, 26, 9);
    let Bollinger { upper, middle, lower } = bollinger(closes, 20, 2.0);
    vec![
        sma(closes, 20),
        sma(closes, 50),
        sma(closes, 200),
        ema(closes, 12),
        ema(closes, 26),
        rsi(closes, 14),
        macd,
        signal,
        histogram,
        upper,
        middle,
        lower,
    ]
}

/// The `indicators` transform.
pub struct Indicators;

impl Transform for Indicators {
    fn describe() -> Descriptor {
        let d = Descriptor::batch("Technical indicators of daily closes: SMAs, EMAs, RSI, MACD, Bollinger bands")
            .input("close", ValueType::Float64, "Daily close, read from the first source")
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
        // Skip rows without a usable close (see the crate docs), mapping the
        // results back to their rows.
        let kept: Vec<usize> = (0..rows).filter(|&i| closes[i].is_finite()).collect();
        let features = if kept.len() == rows {
            compute(closes)
        } else {
            let dense: Vec<f64> = kept.iter().map(|&i| closes[i]).collect();
            compute(&dense)
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

wafer_guest::export!(Indicators);

#[cfg(test)]
mod tests;
