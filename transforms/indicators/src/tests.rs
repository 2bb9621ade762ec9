//! Expected values are worked out by hand (in the comments) or published in
//! StockCharts ChartSchool's worked spreadsheets, never taken from this code.

use super::*;
use wafer_guest::{NamedTable, Param};

const N: Option<f64> = None;

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

/// `None` for `warmup` rows, then `values`.
fn after(warmup: usize, values: &[f64]) -> Vec<Option<f64>> {
    std::iter::repeat_n(None, warmup).chain(values.iter().map(|&v| Some(v))).collect()
}

/// c[i] = i.
fn linear(rows: usize) -> Vec<f64> {
    (0..rows).map(|i| i as f64).collect()
}

#[test]
fn smas_of_a_linear_series_lag_by_half_their_window() {
    // The mean of i-n+1..=i is i - (n-1)/2, first defined at row n-1.
    let c = linear(230);
    for n in [20, 50, 200] {
        let want: Vec<Option<f64>> =
            (0..230).map(|i| (i + 1 >= n).then(|| i as f64 - (n as f64 - 1.0) / 2.0)).collect();
        assert_close(&sma(&c, n), &want, 1e-9);
    }
    assert_eq!(sma(&linear(199), 200), vec![None; 199]);
}

#[test]
fn emas_and_macd_of_a_linear_series_follow_the_seeding_rules() {
    // For c[i] = i the SMA seed at row n-1 is (n-1)/2 = c[n-1] - (n-1)/2, and
    // if ema[i-1] = i-1-L then ema[i] = i-1-L + alpha*(1+L), which equals i-L
    // exactly when L = (1-alpha)/alpha = (n-1)/2. So ema_n[i] = i - (n-1)/2:
    // ema_12 = i - 5.5 from row 11, ema_26 = i - 12.5 from row 25,
    // macd = 7 from row 25, its EMA(9) seeded with the mean of nine 7s is 7
    // from row 33, and the histogram is 0 from row 33.
    let c = linear(60);
    let shifted = |n: usize, lag: f64| after(n - 1, &c[n - 1..].iter().map(|x| x - lag).collect::<Vec<_>>());
    assert_close(&ema(&c, 12), &shifted(12, 5.5), 1e-9);
    assert_close(&ema(&c, 26), &shifted(26, 12.5), 1e-9);
    let m = macd(&c, 12, 26, 9);
    assert_close(&m.macd, &after(25, &[7.0; 35]), 1e-9);
    assert_close(&m.signal, &after(33, &[7.0; 27]), 1e-9);
    assert_close(&m.histogram, &after(33, &[0.0; 27]), 1e-9);
}

#[test]
fn macd_reacts_to_a_jump_as_worked_by_hand() {
    // 34 closes of 10, then 23 (a jump of 13) on row 34. Every EMA is 10 up
    // to row 33, so macd is 0 on rows 25..=33 and the signal seed is 0.
    // Row 34: ema_12 = 10 + 2/13*13 = 12; ema_26 = 10 + 2/27*13 = 10 + 26/27;
    // macd = 2 - 26/27 = 28/27; signal = 0 + 0.2*28/27 = 5.6/27;
    // histogram = 28/27 - 5.6/27 = 22.4/27.
    let mut c = vec![10.0; 34];
    c.push(23.0);
    let m = macd(&c, 12, 26, 9);
    assert_close(
        &m.macd[24..],
        &[
            N,
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(28.0 / 27.0),
        ],
        1e-12,
    );
    assert_eq!(m.signal[32], None);
    assert_close(&m.signal[33..], &[Some(0.0), Some(5.6 / 27.0)], 1e-12);
    assert_close(&m.histogram[33..], &[Some(0.0), Some(22.4 / 27.0)], 1e-12);
}

#[test]
fn macd_signal_is_seeded_with_the_mean_of_the_first_nine_macd_values() {
    // A wiggly series, so the first nine macd values differ.
    let c: Vec<f64> = (0..60).map(|i| 50.0 + (i as f64 * 0.7).sin() * 3.0 + i as f64 * 0.1).collect();
    let m = macd(&c, 12, 26, 9);
    let first_nine: Vec<f64> = m.macd[25..34].iter().map(|v| v.unwrap()).collect();
    let seed = first_nine.iter().sum::<f64>() / 9.0;
    assert_eq!(m.signal[32], None);
    assert!((m.signal[33].unwrap() - seed).abs() < 1e-12);
    let next = seed + 0.2 * (m.macd[34].unwrap() - seed);
    assert!((m.signal[34].unwrap() - next).abs() < 1e-12);
}

/// StockCharts ChartSchool, "Relative Strength Index (RSI)", spreadsheet
/// cs-rsi.xls: QQQQ closes and the published 14-day RSI (2 decimals).
#[test]
fn rsi_reproduces_the_stockcharts_worked_example() {
    let closes = [
        44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826, 45.8931, 46.0328,
        45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439, 46.2122, 46.2521, 45.7137, 46.4515,
        45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672, 43.4205, 42.6628, 43.1314,
    ];
    let published = [
        70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99, 41.46, 41.87, 45.46,
        37.30, 33.08, 37.77,
    ];
    assert_close(&rsi(&closes, 14), &after(14, &published), 0.005 + 1e-9);
}

#[test]
fn rsi_edge_cases_follow_the_convention() {
    // 14 closes give only 13 changes: no RSI yet.
    assert_eq!(rsi(&linear(14), 14), vec![None; 14]);
    // Only gains: L = 0, RSI = 100. Only losses: G = 0, RSI = 0.
    // Flat: both 0, RSI defined as 0.
    assert_close(&rsi(&linear(16), 14), &after(14, &[100.0, 100.0]), 0.0);
    let falling: Vec<f64> = linear(16).iter().map(|x| 100.0 - x).collect();
    assert_close(&rsi(&falling, 14), &after(14, &[0.0, 0.0]), 0.0);
    assert_close(&rsi(&[5.0; 16], 14), &after(14, &[0.0, 0.0]), 0.0);
    // Alternating +1, -1 for 14 changes: G = L = 7/14 = 0.5, RSI 50. Next
    // change +1: G = (13*0.5 + 1)/14 = 7.5/14, L = 6.5/14, RSI = 100*7.5/14 = 53.571428...
    let mut zigzag: Vec<f64> = (0..15).map(|i| (i % 2) as f64).collect();
    zigzag.push(zigzag[14] + 1.0);
    assert_close(&rsi(&zigzag, 14), &after(14, &[50.0, 750.0 / 14.0]), 1e-12);
}

/// StockCharts ChartSchool, "Bollinger Bands", spreadsheet cs-bbands.xls:
/// SPY closes with the published (20, 2) bands (6 decimals).
#[test]
fn bollinger_bands_reproduce_the_stockcharts_worked_example() {
    let closes = [
        86.1557, 89.0867, 88.7829, 90.3228, 89.0671, 91.1453, 89.4397, 89.1750, 86.9302, 87.6752, 86.9596, 89.4299,
        89.3221, 88.7241, 87.4497, 87.2634, 89.4985, 87.9006, 89.1260, 90.7043, 92.9001, 92.9784, 91.8021, 92.6647,
        92.6843, 92.3021, 92.7725, 92.5373, 92.9490, 93.2039, 91.0669, 89.8318, 89.7435, 90.3994, 90.7387, 88.0177,
        88.0867, 88.8439, 90.7781, 90.5416, 91.3894, 90.6500,
    ];
    let middle = [
        88.70794, 89.04516, 89.239745, 89.390705, 89.5078, 89.68866, 89.7465, 89.91314, 90.081255, 90.382195, 90.65863,
        90.863995, 90.88409, 90.90516, 90.988925, 91.153375, 91.19109, 91.1205, 91.167665, 91.25027, 91.242135,
        91.1666, 91.05018,
    ];
    let upper = [
        91.291862, 91.949268, 92.612595, 92.9342, 93.31195, 93.72845, 93.899592, 94.266255, 94.565096, 94.786912,
        95.043001, 94.907605, 94.902912, 94.89532, 94.861013, 94.673629, 94.556593, 94.678752, 94.575786, 94.534271,
        94.532306, 94.369251, 94.148503,
    ];
    let lower = [
        86.124018, 86.141052, 85.866895, 85.84721, 85.70365, 85.64887, 85.593408, 85.560025, 85.597414, 85.977478,
        86.274259, 86.820385, 86.865268, 86.915, 87.116837, 87.633121, 87.825587, 87.562248, 87.759544, 87.966269,
        87.951964, 87.963949, 87.951857,
    ];
    let b = bollinger(&closes, 20, 2.0);
    assert_close(&b.middle, &after(19, &middle), 1e-6);
    assert_close(&b.upper, &after(19, &upper), 1e-5);
    assert_close(&b.lower, &after(19, &lower), 1e-5);
}

#[test]
fn bollinger_uses_the_population_std_of_the_same_twenty_closes() {
    // Closes 1..=20: mean 10.5; population variance (n^2 - 1)/12 = 399/12 = 33.25.
    let c: Vec<f64> = (1..=20).map(f64::from).collect();
    let b = bollinger(&c, 20, 2.0);
    let sd = 33.25f64.sqrt();
    assert_close(&b.middle, &after(19, &[10.5]), 1e-12);
    assert_close(&b.upper, &after(19, &[10.5 + 2.0 * sd]), 1e-12);
    assert_close(&b.lower, &after(19, &[10.5 - 2.0 * sd]), 1e-12);
}

fn prices(closes: Vec<Option<f64>>) -> BatchInput {
    let rows = closes.len() as i64;
    let table = Table::new((0..rows).map(|d| 1_700_000_000_000_000 + d * 86_400_000_000).collect())
        .with(Column::float64("open", vec![Some(1.0); rows as usize]))
        .with(Column::float64("close", closes));
    BatchInput {
        entity: "AAPL".into(),
        sources: vec![NamedTable::new("daily_bars", table)],
        related: vec![],
        params: vec![Param::new("unused", "1")],
    }
}

#[test]
fn describe_declares_close_in_and_twelve_features_out() {
    let d = Indicators::describe();
    assert_eq!(d.kind, wafer_guest::Kind::Batch);
    assert_eq!(d.min_history, 200);
    assert_eq!(d.inputs.len(), 1);
    assert_eq!((d.inputs[0].name.as_str(), d.inputs[0].value_type), ("close", ValueType::Float64));
    let names: Vec<&str> = d.outputs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sma_20",
            "sma_50",
            "sma_200",
            "ema_12",
            "ema_26",
            "rsi_14",
            "macd",
            "macd_signal",
            "macd_histogram",
            "bollinger_upper",
            "bollinger_middle",
            "bollinger_lower"
        ]
    );
    assert!(d.outputs.iter().all(|f| f.value_type == ValueType::Float64 && !f.description.is_empty()));
}

#[test]
fn batch_returns_every_input_row_with_nulls_until_each_window_is_full() {
    let input = prices(linear(210).into_iter().map(Some).collect());
    let timestamps = input.sources[0].table.timestamps.clone();
    let out = Indicators::batch(input).unwrap();
    assert_eq!(out.timestamps, timestamps);
    assert_eq!(out.columns.len(), 12);
    // First non-null row per feature, from the conventions.
    let first = [19, 49, 199, 11, 25, 14, 25, 33, 33, 19, 19, 19];
    for (column, first) in out.columns.iter().zip(first) {
        assert_eq!(column.rows(), 210);
        assert_eq!(column.nulls(), (0..first).collect::<Vec<u32>>(), "{}", column.name());
    }
    // sma_200 on row 209 of c[i] = i: 209 - 99.5.
    assert_eq!(out.column("sma_200").unwrap().as_float64().unwrap()[209], 109.5);
}

#[test]
fn batch_skips_rows_without_a_close() {
    // c[i] = i for rows 0..25, row 5 null. The 20th existing close is on row
    // 20; sma_20 there is the mean of 0..=20 without 5: (210 - 5)/20 = 10.25.
    let mut closes: Vec<Option<f64>> = linear(25).into_iter().map(Some).collect();
    closes[5] = None;
    let out = Indicators::batch(prices(closes)).unwrap();
    let sma20 = out.column("sma_20").unwrap().float64_options().unwrap();
    assert_eq!(sma20[19], None);
    assert_eq!(sma20[20], Some(10.25));
    assert!(out.columns.iter().all(|c| c.is_null(5)));
}

#[test]
fn batch_refuses_input_without_a_float_close() {
    let mut input = prices(vec![Some(1.0)]);
    input.sources[0].table.columns.pop();
    assert_eq!(Indicators::batch(input).unwrap_err(), "no column named `close`");
    assert_eq!(Indicators::batch(BatchInput::default()).unwrap_err(), "the input has no source table");
}

#[test]
fn on_demand_is_refused() {
    assert!(Indicators::on_demand(Default::default()).is_err());
}
