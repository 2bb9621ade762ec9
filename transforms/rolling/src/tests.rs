//! Expected values are worked out by hand (in the comments), never taken from
//! this code: each test lists which rows fall in each window.

use super::*;
use wafer_guest::{NamedTable, Param};

const N: Option<f64> = None;
const T0: i64 = 1_700_000_000_000_000;

/// Midnight of day `d` after `T0`.
fn day(d: i64) -> i64 {
    T0 + d * DAY_MICROS
}

fn some(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().map(|&v| Some(v)).collect()
}

fn assert_close(got: &[Option<f64>], want: &[Option<f64>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-9, "{what} row {i}: got {g}, want {w}"),
            (None, None) => {}
            _ => panic!("{what} row {i}: got {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn a_seven_day_window_drops_the_event_exactly_seven_days_back() {
    // Events on days 0, 1, 3, 7, 8, 14 with values 1..=6. Window (t-7d, t]:
    // day 0: {d0}            count 1, sum 1,  mean 1,   min 1, max 1
    // day 1: {d0, d1}        count 2, sum 3,  mean 1.5, min 1, max 2
    // day 3: {d0, d1, d3}    count 3, sum 6,  mean 2,   min 1, max 3
    // day 7: {d1, d3, d7}    day 0 is exactly t-7d: out. sum 9, mean 3, min 2, max 4
    // day 8: {d3, d7, d8}    sum 12, mean 4, min 3, max 5
    // day 14: {d8, d14}      day 7 is exactly t-7d: out. sum 11, mean 5.5, min 5, max 6
    let ts: Vec<i64> = [0, 1, 3, 7, 8, 14].map(day).to_vec();
    let s = window_stats(&ts, &some(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 7 * DAY_MICROS);
    assert_eq!(s.count, [1.0, 2.0, 3.0, 3.0, 3.0, 2.0]);
    assert_eq!(s.sum, [1.0, 3.0, 6.0, 9.0, 12.0, 11.0]);
    assert_close(&s.mean, &some(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.5]), "mean");
    assert_eq!(s.min, some(&[1.0, 1.0, 1.0, 2.0, 3.0, 5.0]));
    assert_eq!(s.max, some(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
}

#[test]
fn window_bounds_are_exact_to_the_microsecond() {
    // Times 0, 1 us, 1 d, 1 d + 1 us (from T0), values 1, 2, 4, 8; 1d window.
    // t = 0:        {0}            sum 1
    // t = 1 us:     {0, 1us}       sum 3
    // t = 1 d:      (0, 1d]: 0 is exactly t-w, out; {1us, 1d}     sum 6
    // t = 1 d+1 us: (1us, 1d+1us]: 1us out; {1d, 1d+1us}          sum 12
    let ts = [T0, T0 + 1, T0 + DAY_MICROS, T0 + DAY_MICROS + 1];
    let s = window_stats(&ts, &some(&[1.0, 2.0, 4.0, 8.0]), DAY_MICROS);
    assert_eq!(s.sum, [1.0, 3.0, 6.0, 12.0]);
    assert_eq!(s.count, [1.0, 2.0, 2.0, 2.0]);
}

#[test]
fn rows_at_the_same_instant_are_all_in_each_others_window() {
    // Day 0: 10; day 1: 1 and 2 (same timestamp); day 2: 100. 1d window.
    // Both day-1 rows see {1, 2}: the event at t is included whatever its
    // position in the table.
    let ts = [day(0), day(1), day(1), day(2)];
    let s = window_stats(&ts, &some(&[10.0, 1.0, 2.0, 100.0]), DAY_MICROS);
    assert_eq!(s.count, [1.0, 2.0, 2.0, 1.0]);
    assert_eq!(s.sum, [10.0, 3.0, 3.0, 100.0]);
    assert_eq!(s.min, some(&[10.0, 1.0, 1.0, 100.0]));
    assert_eq!(s.max, some(&[10.0, 2.0, 2.0, 100.0]));
}

#[test]
fn nulls_are_not_counted_and_an_empty_window_is_zero_or_null() {
    // Days 0..=4, values 5, null, NaN, null, null; 2d window = days D-1..=D.
    // day 0: {5}        count 1, sum 5, mean/min/max 5
    // day 1: {5, null}  count 1, sum 5
    // day 2: {null, NaN}: nothing counts: count 0, sum 0, the rest null
    // days 3, 4: nulls only, the same
    let ts: Vec<i64> = (0..5).map(day).collect();
    let values = vec![Some(5.0), None, Some(f64::NAN), None, None];
    let s = window_stats(&ts, &values, 2 * DAY_MICROS);
    assert_eq!(s.count, [1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(s.sum, [5.0, 5.0, 0.0, 0.0, 0.0]);
    for column in [&s.mean, &s.min, &s.max] {
        assert_eq!(column, &[Some(5.0), Some(5.0), N, N, N]);
    }
    // Infinities are not values either.
    let s = window_stats(&ts[..2], &[Some(f64::INFINITY), Some(1.0)], DAY_MICROS * 3);
    assert_eq!((s.count, s.max), (vec![0.0, 1.0], vec![N, Some(1.0)]));
}

#[test]
fn min_and_max_track_a_sliding_window_of_ups_and_downs() {
    // Daily values 5, 3, 4, 1, 6, 2, 7; 3d window = the last 3 days.
    // windows: [5] [5,3] [5,3,4] [3,4,1] [4,1,6] [1,6,2] [6,2,7]
    let ts: Vec<i64> = (0..7).map(day).collect();
    let s = window_stats(&ts, &some(&[5.0, 3.0, 4.0, 1.0, 6.0, 2.0, 7.0]), 3 * DAY_MICROS);
    assert_eq!(s.min, some(&[5.0, 3.0, 3.0, 1.0, 1.0, 1.0, 2.0]));
    assert_eq!(s.max, some(&[5.0, 5.0, 5.0, 4.0, 6.0, 6.0, 7.0]));
    assert_eq!(s.sum, [5.0, 8.0, 12.0, 8.0, 11.0, 9.0, 15.0]);
    assert_close(&s.mean, &some(&[5.0, 4.0, 4.0, 8.0 / 3.0, 11.0 / 3.0, 3.0, 5.0]), "mean");
}

#[test]
fn a_window_that_empties_and_refills_starts_again_from_nothing() {
    // Days 0, 1, then a gap to days 10, 11; values 1.1, 2.2, 3.3, 4.4; 2d window.
    // day 0 {1.1}; day 1 {1.1, 2.2}; day 10 {3.3} (both old rows gone);
    // day 11 {3.3, 4.4}.
    let ts = [day(0), day(1), day(10), day(11)];
    let s = window_stats(&ts, &some(&[1.1, 2.2, 3.3, 4.4]), 2 * DAY_MICROS);
    assert_eq!(s.count, [1.0, 2.0, 1.0, 2.0]);
    assert_close(&s.sum.iter().map(|&x| Some(x)).collect::<Vec<_>>(), &some(&[1.1, 3.3, 3.3, 7.7]), "sum");
    assert_eq!(s.min, some(&[1.1, 1.1, 3.3, 3.3]));
}

#[test]
fn a_long_series_keeps_exact_counts_and_accurate_sums() {
    // Daily values x[i] = 0.1 * i for 5,000 days; 7d window. From row 6 the
    // window holds i-6..=i: count 7, sum 0.1 * (7i - 21), min 0.1(i-6), max 0.1i.
    let rows = 5_000;
    let ts: Vec<i64> = (0..rows).map(day).collect();
    let values: Vec<Option<f64>> = (0..rows).map(|i| Some(0.1 * i as f64)).collect();
    let s = window_stats(&ts, &values, 7 * DAY_MICROS);
    for i in 6..rows as usize {
        let x = i as f64;
        assert_eq!(s.count[i], 7.0);
        assert!((s.sum[i] - 0.1 * (7.0 * x - 21.0)).abs() < 1e-9, "row {i}: {}", s.sum[i]);
        assert!((s.min[i].unwrap() - 0.1 * (x - 6.0)).abs() < 1e-12);
        assert!((s.max[i].unwrap() - 0.1 * x).abs() < 1e-12);
    }
}

/// Source `engagement` with an int64 field `clicks`: day 0: 3, day 1: 0,
/// day 5: 2, day 6: null, day 9: 4.
fn engagement() -> BatchInput {
    let table = Table::new([0, 1, 5, 6, 9].map(day).to_vec())
        .with(Column::text("channel", vec![Some("web".into()); 5]))
        .with(Column::int64("clicks", vec![Some(3), Some(0), Some(2), None, Some(4)]));
    BatchInput {
        entity: "u1".into(),
        sources: vec![NamedTable::new("engagement", table)],
        related: vec![],
        params: vec![Param::new("field", "clicks")],
    }
}

fn column(t: &Table, name: &str) -> Vec<Option<f64>> {
    t.column(name).unwrap_or_else(|| panic!("no column {name}")).float64_options().unwrap()
}

#[test]
fn batch_aggregates_an_int64_field_into_every_declared_output() {
    // 7d windows: day 0 {d0}; day 1 {d0, d1}; day 5 {d0, d1, d5};
    // day 6 {d0, d1, d5, d6 (null)}; day 9 (2, 9] = {d5, d6 (null), d9}.
    // 1d windows hold the row alone.
    let input = engagement();
    let timestamps = input.sources[0].table.timestamps.clone();
    let out = Rolling::batch(input).unwrap();
    assert_eq!(out.timestamps, timestamps);
    assert_eq!(out.columns.len(), 25);
    assert_eq!(column(&out, "count_7d"), some(&[1.0, 2.0, 3.0, 3.0, 2.0]));
    assert_eq!(column(&out, "sum_7d"), some(&[3.0, 3.0, 5.0, 5.0, 6.0]));
    assert_eq!(column(&out, "max_7d"), some(&[3.0, 3.0, 3.0, 3.0, 4.0]));
    assert_eq!(column(&out, "min_7d"), some(&[3.0, 0.0, 0.0, 0.0, 2.0]));
    assert_eq!(column(&out, "count_1d"), some(&[1.0, 1.0, 1.0, 0.0, 1.0]));
    assert_eq!(column(&out, "sum_1d"), some(&[3.0, 0.0, 2.0, 0.0, 4.0]));
    assert_eq!(column(&out, "mean_1d"), [Some(3.0), Some(0.0), Some(2.0), N, Some(4.0)]);
    // Every row is within 365 days of day 0: cumulative count 1, 2, 3, 3, 4
    // and sum 3, 3, 5, 5, 9; mean 9/4 on day 9.
    assert_eq!(column(&out, "count_365d"), some(&[1.0, 2.0, 3.0, 3.0, 4.0]));
    assert_eq!(column(&out, "sum_365d"), some(&[3.0, 3.0, 5.0, 5.0, 9.0]));
    assert_eq!(column(&out, "mean_365d")[4], Some(2.25));
}

#[test]
fn batch_reads_the_source_named_by_param_and_float_fields_by_default_name() {
    // Param `source` picks the second table; `field` defaults to `value`.
    let mut input = engagement();
    input.params = vec![Param::new("source", "payments")];
    let payments = Table::new(vec![day(0), day(30)]).with(Column::float64("value", some(&[1.5, 2.5])));
    input.sources.push(NamedTable::new("payments", payments));
    let out = Rolling::batch(input).unwrap();
    assert_eq!(out.timestamps, [day(0), day(30)]);
    // Day 30: the 30d window (0, 30] drops day 0; the 90d window keeps it.
    assert_eq!(column(&out, "sum_30d"), some(&[1.5, 2.5]));
    assert_eq!(column(&out, "sum_90d"), some(&[1.5, 4.0]));
}

#[test]
fn batch_explains_a_missing_or_non_numeric_field_and_bad_input() {
    let mut missing = engagement();
    missing.params = vec![Param::new("field", "views")];
    assert_eq!(
        Rolling::batch(missing).unwrap_err(),
        "source `engagement` has no field `views` (param `field`); it has: [channel, clicks]"
    );
    let mut text = engagement();
    text.params = vec![Param::new("field", "channel")];
    assert_eq!(
        Rolling::batch(text).unwrap_err(),
        "field `channel` of source `engagement` is Text; rolling aggregates need Int64 or Float64"
    );
    let mut default_field = engagement();
    default_field.params.clear();
    assert!(Rolling::batch(default_field).unwrap_err().starts_with("source `engagement` has no field `value`"));
    let mut no_source = engagement();
    no_source.params.push(Param::new("source", "orders"));
    assert_eq!(Rolling::batch(no_source).unwrap_err(), "no source named `orders`");
    let mut unordered = engagement();
    unordered.sources[0].table.timestamps.swap(1, 2);
    assert_eq!(
        Rolling::batch(unordered).unwrap_err(),
        "source `engagement` is not in ascending time order (row 2 is earlier than row 1)"
    );
    assert_eq!(Rolling::batch(BatchInput::default()).unwrap_err(), "the input has no source table");
}

#[test]
fn describe_declares_no_inputs_twenty_five_outputs_and_the_params() {
    let d = Rolling::describe();
    assert_eq!((d.kind, d.min_history, d.inputs.len()), (wafer_guest::Kind::Batch, 1, 0));
    let names: Vec<&str> = d.outputs.iter().map(|f| f.name.as_str()).collect();
    let mut want = Vec::new();
    for agg in ["count", "sum", "mean", "min", "max"] {
        for window in ["1d", "7d", "30d", "90d", "365d"] {
            want.push(format!("{agg}_{window}"));
        }
    }
    assert_eq!(names, want);
    assert!(d.outputs.iter().all(|f| f.value_type == ValueType::Float64 && !f.description.is_empty()));
    let params: Vec<(&str, ValueType, Option<&str>)> =
        d.params.iter().map(|p| (p.name.as_str(), p.value_type, p.default_value.as_deref())).collect();
    assert_eq!(params, [("field", ValueType::Text, Some("value")), ("source", ValueType::Text, None)]);
}

#[test]
fn on_demand_is_refused() {
    assert!(Rolling::on_demand(Default::default()).is_err());
}
