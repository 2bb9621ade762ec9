//! Windowed statistics aligned with their input.
//!
//! Every function returns one entry per input value: `None` until the window
//! is full, so a feature is never computed over a shorter window than it
//! claims (the wafer convention: too little history means null, not a guess).
//! `window == 0` gives all `None`.
//!
//! Non-finite inputs (`NaN`, as at null rows of a [`Column`](crate::Column),
//! or ±∞) are gaps: every window that contains one is `None`, and the
//! statistic starts again after it, needing a full window of finite values.
//! An EMA restarts too, seeded afresh after the gap.
//!
//! All run in O(n). Running sums are recomputed from scratch at the start of
//! every `window`-th window, so rounding error cannot build up over long
//! series while the amortized cost stays O(1) per row.

use std::collections::VecDeque;
use std::ops::Range;

/// Mean of the last `window` values.
pub fn mean(values: &[f64], window: usize) -> Vec<Option<f64>> {
    windowed(values, window, |xs, out| {
        running_sums(xs, window, |i, sum| out[i] = Some(sum / window as f64));
    })
}

/// Sum of the last `window` values.
pub fn sum(values: &[f64], window: usize) -> Vec<Option<f64>> {
    windowed(values, window, |xs, out| running_sums(xs, window, |i, sum| out[i] = Some(sum)))
}

/// Smallest of the last `window` values.
pub fn min(values: &[f64], window: usize) -> Vec<Option<f64>> {
    windowed(values, window, |xs, out| extremes(xs, window, out, |a, b| a <= b))
}

/// Largest of the last `window` values.
pub fn max(values: &[f64], window: usize) -> Vec<Option<f64>> {
    windowed(values, window, |xs, out| extremes(xs, window, out, |a, b| a >= b))
}

/// Population standard deviation (divisor `window`, numpy's `ddof=0`) of the
/// last `window` values. Bollinger bands use this one.
pub fn std_pop(values: &[f64], window: usize) -> Vec<Option<f64>> {
    windowed(values, window, |xs, out| {
        running_m2(xs, window, |i, m2| out[i] = Some((m2 / window as f64).sqrt()));
    })
}

/// Sample standard deviation (divisor `window - 1`, `ddof=1`) of the last
/// `window` values; all `None` when `window < 2`, where it is undefined.
/// Volatilities use this one.
pub fn std_sample(values: &[f64], window: usize) -> Vec<Option<f64>> {
    if window < 2 {
        return vec![None; values.len()];
    }
    windowed(values, window, |xs, out| {
        running_m2(xs, window, |i, m2| out[i] = Some((m2 / (window - 1) as f64).sqrt()));
    })
}

/// Exponential moving average with `alpha = 2 / (window + 1)`, seeded with
/// the simple mean of the first `window` values at index `window - 1`, then
/// `ema = prev + alpha * (x - prev)` (the textbook "SMA-seeded" EMA, as in
/// StockCharts' worked example).
///
/// Seeding with an SMA rather than the first value means the first output
/// already averages a full window instead of over-weighting one price.
pub fn ema(values: &[f64], window: usize) -> Vec<Option<f64>> {
    let alpha = 2.0 / (window as f64 + 1.0);
    windowed(values, window, |xs, out| {
        let mut e = xs[..window].iter().sum::<f64>() / window as f64;
        out[window - 1] = Some(e);
        for (i, &x) in xs.iter().enumerate().skip(window) {
            e += alpha * (x - e);
            out[i] = Some(e);
        }
    })
}

/// Runs `kernel` on each maximal run of finite values long enough to fill a
/// window. The kernel gets the run and its slice of the output, and fills
/// indices `window - 1..`.
fn windowed(values: &[f64], window: usize, mut kernel: impl FnMut(&[f64], &mut [Option<f64>])) -> Vec<Option<f64>> {
    let mut out = vec![None; values.len()];
    if window == 0 {
        return out;
    }
    for run in finite_runs(values) {
        if run.len() >= window {
            kernel(&values[run.clone()], &mut out[run]);
        }
    }
    out
}

fn finite_runs(values: &[f64]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, x) in values.iter().enumerate() {
        match (x.is_finite(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push(s..values.len());
    }
    runs
}

/// Calls `emit(end, sum)` for every full window `xs[end + 1 - window..=end]`.
fn running_sums(xs: &[f64], window: usize, mut emit: impl FnMut(usize, f64)) {
    let mut sum = 0.0;
    for end in window - 1..xs.len() {
        let start = end + 1 - window;
        if start.is_multiple_of(window) {
            sum = xs[start..=end].iter().sum();
        } else {
            sum += xs[end] - xs[start - 1];
        }
        emit(end, sum);
    }
}

/// Calls `emit(end, m2)` with the sum of squared deviations from the mean of
/// every full window, updated in O(1) by Welford's sliding-window rule and
/// recomputed exactly (two passes) every `window` windows.
fn running_m2(xs: &[f64], window: usize, mut emit: impl FnMut(usize, f64)) {
    let n = window as f64;
    let (mut mean, mut m2) = (0.0, 0.0);
    for end in window - 1..xs.len() {
        let start = end + 1 - window;
        if start.is_multiple_of(window) {
            let w = &xs[start..=end];
            mean = w.iter().sum::<f64>() / n;
            m2 = w.iter().map(|x| (x - mean) * (x - mean)).sum();
        } else {
            let (x_in, x_out) = (xs[end], xs[start - 1]);
            let old_mean = mean;
            mean += (x_in - x_out) / n;
            m2 += (x_in - x_out) * (x_in - mean + x_out - old_mean);
            // Cancellation can leave a tiny negative for a flat window.
            m2 = m2.max(0.0);
        }
        emit(end, m2);
    }
}

/// Sliding min or max with a monotonic deque of indices: `keeps(a, b)` is true
/// when an older `a` still beats a newer `b`.
fn extremes(xs: &[f64], window: usize, out: &mut [Option<f64>], keeps: fn(f64, f64) -> bool) {
    let mut best: VecDeque<usize> = VecDeque::with_capacity(window);
    for (i, &x) in xs.iter().enumerate() {
        while best.back().is_some_and(|&j| !keeps(xs[j], x)) {
            best.pop_back();
        }
        best.push_back(i);
        if best.front().is_some_and(|&j| j + window <= i) {
            best.pop_front();
        }
        if i + 1 >= window {
            out[i] = best.front().map(|&j| xs[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Option<f64> = None;

    fn close(got: &[Option<f64>], want: &[Option<f64>], tol: f64) {
        assert_eq!(got.len(), want.len(), "length: got {got:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            match (g, w) {
                (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "row {i}: got {g}, want {w}"),
                (None, None) => {}
                _ => panic!("row {i}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn sums_and_means_wait_for_a_full_window() {
        // Windows of 3: 1+2+3 = 6, 2+3+4 = 9, 3+4+5 = 12.
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        close(&sum(&xs, 3), &[N, N, Some(6.0), Some(9.0), Some(12.0)], 1e-12);
        close(&mean(&xs, 3), &[N, N, Some(2.0), Some(3.0), Some(4.0)], 1e-12);
        close(&mean(&xs, 1), &xs.map(Some), 0.0);
    }

    #[test]
    fn degenerate_windows_give_all_none() {
        let xs = [1.0, 2.0];
        assert_eq!(mean(&xs, 0), vec![N, N]);
        assert_eq!(mean(&xs, 3), vec![N, N]);
        assert_eq!(ema(&xs, 3), vec![N, N]);
        assert_eq!(std_sample(&xs, 1), vec![N, N]);
        assert_eq!(max(&[], 2), vec![]);
    }

    #[test]
    fn min_and_max_slide_over_ties_and_drops() {
        // Windows of 3 over 3 1 4 1 5 9 2 6:
        // [3 1 4] [1 4 1] [4 1 5] [1 5 9] [5 9 2] [9 2 6]
        let xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let lows = [N, N, Some(1.0), Some(1.0), Some(1.0), Some(1.0), Some(2.0), Some(2.0)];
        let highs = [N, N, Some(4.0), Some(4.0), Some(5.0), Some(9.0), Some(9.0), Some(9.0)];
        assert_eq!(min(&xs, 3), lows);
        assert_eq!(max(&xs, 3), highs);
    }

    #[test]
    fn standard_deviations_match_the_textbook_example() {
        // 2 4 4 4 5 5 7 9: mean 5, squared deviations 9 1 1 1 0 0 4 16 sum to 32.
        // Population: sqrt(32/8) = 2. Sample: sqrt(32/7).
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(std_pop(&xs, 8)[7], Some(2.0));
        close(&std_sample(&xs, 8)[7..], &[Some((32.0f64 / 7.0).sqrt())], 1e-12);
        // Windows of 2 over 1 3 6: deviations ±1 then ±1.5.
        close(&std_pop(&[1.0, 3.0, 6.0], 2), &[N, Some(1.0), Some(1.5)], 1e-12);
        close(&std_sample(&[1.0, 3.0, 6.0], 2), &[N, Some(2f64.sqrt()), Some(4.5f64.sqrt())], 1e-12);
        // A flat window has no spread, exactly.
        assert_eq!(std_pop(&[7.0; 6], 3)[2..], [Some(0.0); 4]);
    }

    #[test]
    fn sliding_updates_agree_with_recomputing_every_window() {
        // Prices around 100 with small moves: where cancellation would show.
        let xs: Vec<f64> = (0..500).map(|i| 100.0 + ((i * 37) % 11) as f64 * 0.37 - (i % 7) as f64 * 0.11).collect();
        let w = 20;
        let (sums, pops, samples) = (sum(&xs, w), std_pop(&xs, w), std_sample(&xs, w));
        for end in w - 1..xs.len() {
            let win = &xs[end + 1 - w..=end];
            let m = win.iter().sum::<f64>() / w as f64;
            let m2: f64 = win.iter().map(|x| (x - m) * (x - m)).sum();
            assert!((sums[end].unwrap() - m * w as f64).abs() < 1e-9);
            assert!((pops[end].unwrap() - (m2 / w as f64).sqrt()).abs() < 1e-9);
            assert!((samples[end].unwrap() - (m2 / (w - 1) as f64).sqrt()).abs() < 1e-9);
        }
    }

    #[test]
    fn non_finite_values_are_gaps_that_restart_the_window() {
        let xs = [1.0, 2.0, f64::NAN, 4.0, 5.0, 6.0];
        close(&mean(&xs, 2), &[N, Some(1.5), N, N, Some(4.5), Some(5.5)], 1e-12);
        close(&max(&xs, 2), &[N, Some(2.0), N, N, Some(5.0), Some(6.0)], 0.0);
        // The EMA is seeded again after the gap: mean(4, 5) = 4.5, then
        // 4.5 + 2/3 * (6 - 4.5) = 5.5.
        close(&ema(&xs, 2), &[N, Some(1.5), N, N, Some(4.5), Some(5.5)], 1e-12);
        close(&sum(&[f64::INFINITY, 1.0, 2.0], 2), &[N, N, Some(3.0)], 0.0);
    }

    #[test]
    fn ema_is_seeded_with_the_mean_of_the_first_window() {
        // alpha = 2/(3+1) = 0.5. Seed at index 2: (1+2+3)/3 = 2.
        // Then 2 + 0.5*(4-2) = 3, and 3 + 0.5*(10-3) = 6.5.
        close(&ema(&[1.0, 2.0, 3.0, 4.0, 10.0], 3), &[N, N, Some(2.0), Some(3.0), Some(6.5)], 1e-12);
    }

    /// StockCharts ChartSchool, "Moving Averages - Simple and Exponential"
    /// (spreadsheet cs-movavg.xls): 10-day SMA and EMA of 30 closes.
    #[test]
    fn sma_and_ema_reproduce_the_stockcharts_worked_example() {
        let closes = [
            22.2734, 22.1940, 22.0847, 22.1741, 22.1840, 22.1344, 22.2337, 22.4323, 22.2436, 22.2933, 22.1542, 22.3926,
            22.3816, 22.6109, 23.3558, 24.0519, 23.7530, 23.8324, 23.9516, 23.6338, 23.8225, 23.8722, 23.6537, 23.1870,
            23.0976, 23.3260, 22.6805, 23.0976, 22.4025, 22.1725,
        ];
        // The published columns are rounded to 2 decimals, hence the tolerance.
        let published_sma = [
            22.22, 22.21, 22.23, 22.26, 22.31, 22.42, 22.61, 22.77, 22.91, 23.08, 23.21, 23.38, 23.53, 23.65, 23.71,
            23.69, 23.61, 23.51, 23.43, 23.28, 23.13,
        ];
        let published_ema = [
            22.22, 22.21, 22.24, 22.27, 22.33, 22.52, 22.80, 22.97, 23.13, 23.28, 23.34, 23.43, 23.51, 23.54, 23.47,
            23.40, 23.39, 23.26, 23.23, 23.08, 22.92,
        ];
        let warmup = [N; 9];
        let want = |p: &[f64]| warmup.iter().copied().chain(p.iter().map(|&x| Some(x))).collect::<Vec<_>>();
        close(&mean(&closes, 10), &want(&published_sma), 0.005 + 1e-9);
        close(&ema(&closes, 10), &want(&published_ema), 0.005 + 1e-9);
        // The first SMA is exact: the ten closes sum to 222.2475.
        assert!((mean(&closes, 10)[9].unwrap() - 22.22475).abs() < 1e-12);
    }
}
