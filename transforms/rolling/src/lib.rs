//! # wafer-rolling
//!
//! A first-party batch transform for time-windowed aggregations configured by
//! params alone: "engagement events in the last 7 / 30 / 90 days", "spend
//! over the last year", "largest order this week", without writing a
//! transform.
//!
//! ## Outputs
//! `describe` takes no params, so the outputs are one fixed set: `<agg>_<window>`
//! for every aggregate in [`AGGREGATES`] (`count`, `sum`, `mean`, `min`, `max`)
//! and every window in [`WINDOWS`] (`1d`, `7d`, `30d`, `90d`, `365d`), 25
//! float64 columns in aggregate-major order (`count_1d`, `count_7d`, ...,
//! `max_365d`, see [`outputs`]). A feature group declares only the ones it
//! wants; the host ignores the rest. `count` is float64 too, so every output
//! has one type and a group declares them all alike; counts are whole numbers,
//! exact far beyond any real history (below 2^53).
//!
//! ## Params
//! - `field` (text, default `value`): the numeric field of the source to
//!   aggregate. It may be int64 (converted to f64; exact below 2^53) or
//!   float64; a missing or non-numeric field is an error naming it.
//! - `source` (text, no default): the source table to read; unset means the
//!   group's first source.
//!
//! The descriptor declares **no inputs**: the field read is chosen by a param,
//! and the host checks declared inputs against the first source when a group
//! is registered, so a fixed input name would refuse every other field.
//!
//! ## Conventions
//! Windows are time-based over the source's event timestamps (microseconds;
//! `1d` is exactly 86,400 s, no calendar or DST rules). The output has one row
//! per input row, with the input's timestamps. For the row at time `t`, the
//! window of width `w` holds every row whose timestamp `s` satisfies
//! `t - w < s <= t`:
//! - a row exactly at `t - w` is **excluded**, a row at `t` **included**, so
//!   a daily series's `7d` window at day `D` holds days `D-6..=D` (7 rows);
//! - rows sharing the timestamp `t` are all in the window, whichever comes
//!   first in the table, so rows at the same instant get the same values.
//!
//! Over the rows in the window:
//! - `count`: the number of rows whose `field` is non-null (and, for
//!   float64, finite: `NaN` and ±∞ are not values). Rows with a null field do
//!   not count, even though the event happened.
//! - `sum`, `mean`, `min`, `max`: over those same non-null values.
//! - An empty window (no non-null value) gives `count` 0 and `sum` 0, since
//!   no events add up to nothing; `mean`, `min` and `max` are null, since
//!   they have no value to be.
//!
//! Unlike the price indicators, there is no warm-up null: a window reaching
//! before the first row simply holds fewer rows, because for events "no row"
//! means "no event". The host passes each entity's whole history, so windows
//! are complete.
//!
//! Rows must be in ascending time order (the host's contract); a table that is
//! not is refused.
//!
//! ## Cost
//! [`window_stats`] is one pass with two pointers per window: O(n) for
//! `count`, `sum` and `mean`, and `min` / `max` through monotonic deques,
//! also O(n) amortized. The running sum is recomputed from the window's rows
//! whenever as many rows have left as are in the window, which keeps
//! rounding error from building up over long histories at O(1) amortized
//! cost per row. All 25 outputs of `n` rows take five such passes.
//!
//! ## Layout
//! The math is [`window_stats`] (one window over one series), tested natively
//! in `tests.rs`; [`Rolling`] wires it to the host through
//! [`wafer_guest::Transform`].

use std::collections::VecDeque;
use wafer_guest::{BatchInput, Column, Descriptor, Table, Transform, ValueType, Values};

/// One day in microseconds, the unit of event timestamps.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// The aggregates, in output order, with what each is.
pub const AGGREGATES: [(&str, &str); 5] = [
    ("count", "Number of rows in the window with a non-null value (0 when none)"),
    ("sum", "Sum of the non-null values in the window (0 when none)"),
    ("mean", "Mean of the non-null values in the window (null when none)"),
    ("min", "Smallest non-null value in the window (null when none)"),
    ("max", "Largest non-null value in the window (null when none)"),
];

/// The windows, in output order: suffix and width in microseconds.
pub const WINDOWS: [(&str, i64); 5] = [
    ("1d", DAY_MICROS),
    ("7d", 7 * DAY_MICROS),
    ("30d", 30 * DAY_MICROS),
    ("90d", 90 * DAY_MICROS),
    ("365d", 365 * DAY_MICROS),
];

/// Param naming the field to aggregate, and its default.
pub const FIELD_PARAM: (&str, &str) = ("field", "value");

/// Param naming the source to read (the first source when unset).
pub const SOURCE_PARAM: &str = "source";

/// Every output: its name and description, aggregate-major.
pub fn outputs() -> Vec<(String, String)> {
    AGGREGATES
        .iter()
        .flat_map(|(agg, doc)| {
            WINDOWS.iter().map(move |(window, _)| {
                (format!("{agg}_{window}"), format!("{doc}, over the window (t - {window}, t] of the configured field"))
            })
        })
        .collect()
}

/// One window's aggregates, one entry per input row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStats {
    /// Non-null values in the window.
    pub count: Vec<f64>,
    /// Their sum; 0 for an empty window.
    pub sum: Vec<f64>,
    /// Their mean; `None` for an empty window.
    pub mean: Vec<Option<f64>>,
    /// The smallest; `None` for an empty window.
    pub min: Vec<Option<f64>>,
    /// The largest; `None` for an empty window.
    pub max: Vec<Option<f64>>,
}

impl WindowStats {
    /// The columns in [`AGGREGATES`] order, as optional values.
    pub fn into_columns(self) -> [Vec<Option<f64>>; 5] {
        [
            self.count.into_iter().map(Some).collect(),
            self.sum.into_iter().map(Some).collect(),
            self.mean,
            self.min,
            self.max,
        ]
    }
}

/// The aggregates over the window `(t - window, t]` for each row's time `t`
/// (see the crate docs). `timestamps` ascending; `values[i]` is row `i`'s
/// value, `None` or non-finite for no value; `window` in microseconds, at
/// least 1.
///
/// # Panics
/// If `timestamps` and `values` differ in length: a caller bug.
pub fn window_stats(timestamps: &[i64], values: &[Option<f64>], window: i64) -> WindowStats {
    assert_eq!(timestamps.len(), values.len(), "one value per timestamp");
    let n = timestamps.len();
    let value = |i: usize| values[i].filter(|x| x.is_finite());
    let mut out = WindowStats {
        count: Vec::with_capacity(n),
        sum: Vec::with_capacity(n),
        mean: Vec::with_capacity(n),
        min: Vec::with_capacity(n),
        max: Vec::with_capacity(n),
    };
    // The window is rows lo..hi. Deques hold row indices whose values are
    // increasing (mins) / decreasing (maxes) from the front, so the front is
    // the window's extreme once rows before lo are dropped.
    let (mut lo, mut hi) = (0, 0);
    let (mut count, mut sum, mut left_since_rebuild) = (0usize, 0.0, 0usize);
    let (mut mins, mut maxes) = (VecDeque::<usize>::new(), VecDeque::<usize>::new());
    for &t in timestamps {
        while hi < n && timestamps[hi] <= t {
            if let Some(x) = value(hi) {
                count += 1;
                sum += x;
                push(&mut mins, hi, |j| value(j).is_some_and(|y| y >= x));
                push(&mut maxes, hi, |j| value(j).is_some_and(|y| y <= x));
            }
            hi += 1;
        }
        let start = t.saturating_sub(window);
        while lo < hi && timestamps[lo] <= start {
            if let Some(x) = value(lo) {
                count -= 1;
                sum -= x;
            }
            lo += 1;
            left_since_rebuild += 1;
        }
        for deque in [&mut mins, &mut maxes] {
            while deque.front().is_some_and(|&j| j < lo) {
                deque.pop_front();
            }
        }
        // Costs hi - lo <= rows left since the last rebuild: O(1) amortized.
        if left_since_rebuild > 0 && left_since_rebuild >= hi - lo {
            sum = (lo..hi).filter_map(value).sum();
            left_since_rebuild = 0;
        }
        out.count.push(count as f64);
        out.sum.push(if count == 0 { 0.0 } else { sum });
        out.mean.push((count > 0).then(|| sum / count as f64));
        out.min.push(mins.front().and_then(|&j| value(j)));
        out.max.push(maxes.front().and_then(|&j| value(j)));
    }
    out
}

/// Pushes row `i`, first dropping rows from the back that it dominates.
fn push(deque: &mut VecDeque<usize>, i: usize, dominated: impl Fn(usize) -> bool) {
    while deque.back().is_some_and(|&j| dominated(j)) {
        deque.pop_back();
    }
    deque.push_back(i);
}

/// The `rolling` transform.
pub struct Rolling;

impl Transform for Rolling {
    fn describe() -> Descriptor {
        let d = Descriptor::batch(
            "Time-windowed count, sum, mean, min and max of one numeric source field (param `field`) over the \
             last 1, 7, 30, 90 and 365 days, one row per source row; declare only the outputs you need",
        )
        .param(FIELD_PARAM.0, ValueType::Text, Some(FIELD_PARAM.1), "The int64 or float64 source field to aggregate")
        .param(SOURCE_PARAM, ValueType::Text, None, "The source table to read; the group's first source when unset")
        .min_history(1);
        outputs().into_iter().fold(d, |d, (name, doc)| d.output(name, ValueType::Float64, doc))
    }

    fn batch(input: BatchInput) -> Result<Table, String> {
        let (source_name, table) = match input.param(SOURCE_PARAM) {
            Some(name) => (name, input.source(name)?),
            None => (input.sources.first().map_or("", |s| s.name.as_str()), input.first_source()?),
        };
        let field = input.param(FIELD_PARAM.0).unwrap_or(FIELD_PARAM.1);
        let values = numeric(source_name, table, field)?;
        if let Some(row) = table.timestamps.windows(2).position(|w| w[0] > w[1]) {
            return Err(format!(
                "source `{source_name}` is not in ascending time order (row {} is earlier than row {row})",
                row + 1
            ));
        }
        // Window-major computation, aggregate-major columns.
        let mut columns: Vec<Vec<Vec<Option<f64>>>> = vec![Vec::new(); AGGREGATES.len()];
        for (_, width) in WINDOWS {
            for (agg, values) in window_stats(&table.timestamps, &values, width).into_columns().into_iter().enumerate()
            {
                columns[agg].push(values);
            }
        }
        let mut out = Table::new(table.timestamps.clone());
        for ((name, _), values) in outputs().into_iter().zip(columns.into_iter().flatten()) {
            out = out.with(Column::float64(name, values));
        }
        Ok(out)
    }
}

/// Field `name` of `table` as floats, `None` at nulls, or an error naming
/// what is wrong.
fn numeric(source: &str, table: &Table, name: &str) -> Result<Vec<Option<f64>>, String> {
    let column = table.column(name).ok_or_else(|| {
        let have: Vec<&str> = table.columns.iter().map(Column::name).collect();
        format!("source `{source}` has no field `{name}` (param `field`); it has: [{}]", have.join(", "))
    })?;
    let values: Vec<Option<f64>> = match column.values() {
        Values::Float64(v) => v.iter().map(|x| x.is_finite().then_some(*x)).collect(),
        Values::Int64(v) => v.iter().enumerate().map(|(i, x)| (!column.is_null(i)).then_some(*x as f64)).collect(),
        other => {
            return Err(format!(
                "field `{name}` of source `{source}` is {:?}; rolling aggregates need Int64 or Float64",
                other.value_type()
            ));
        }
    };
    if values.len() != table.rows() {
        return Err(format!("field `{name}` has {} rows for {} timestamps", values.len(), table.rows()));
    }
    Ok(values)
}

wafer_guest::export!(Rolling);

#[cfg(test)]
mod tests;
