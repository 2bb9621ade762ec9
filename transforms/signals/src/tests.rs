//! Expected values are worked out by hand (in the comments), never taken from
//! this code.

use super::*;
use wafer_guest::BatchInput;

const N: Option<f64> = None;

fn assert_close(got: &[Option<f64>], want: &[Option<f64>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-12, "{what} row {i}: got {g}, want {w}"),
            (None, None) => {}
            _ => panic!("{what} row {i}: got {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn pct_from_is_the_signed_fraction_above_the_average() {
    // (105 - 100)/100 = 0.05; (90 - 100)/100 = -0.1; at the average 0;
    // a price of 0 is 100 % below: -1.
    let cases = [(105.0, 100.0, 0.05), (90.0, 100.0, -0.1), (100.0, 100.0, 0.0), (0.0, 50.0, -1.0)];
    for (price, sma, want) in cases {
        assert_close(&[pct_from(Some(price), Some(sma))], &[Some(want)], &format!("{price} vs {sma}"));
    }
}

#[test]
fn above_is_strict() {
    assert_eq!(above(Some(105.0), Some(100.0)), Some(true));
    assert_eq!(above(Some(100.0), Some(100.0)), Some(false));
    assert_eq!(above(Some(99.5), Some(100.0)), Some(false));
}

#[test]
fn a_null_non_finite_or_zero_input_gives_null_not_infinity() {
    let bad = [(None, Some(100.0)), (Some(100.0), None), (Some(100.0), Some(0.0)), (Some(f64::NAN), Some(100.0))];
    for (price, sma) in bad.into_iter().chain([(Some(100.0), Some(f64::INFINITY)), (Some(1.0), Some(-0.0))]) {
        assert_eq!(pct_from(price, sma), None, "{price:?} vs {sma:?}");
        assert_eq!(above(price, sma), None, "{price:?} vs {sma:?}");
    }
    // An overflowing ratio is null too: (1e308 - 1e-308) / 1e-308 overflows.
    assert_eq!(pct_from(Some(1e308), Some(1e-308)), None);
}

fn input(sma_20: Vec<Option<f64>>, sma_50: Vec<Option<f64>>, price: Vec<Option<f64>>) -> OnDemandInput {
    OnDemandInput {
        features: vec![Column::float64(SMA_20, sma_20), Column::float64(SMA_50, sma_50)],
        request: vec![Column::float64(PRICE, price)],
        params: vec![],
    }
}

#[test]
fn on_demand_gives_one_row_per_entity_with_independent_nulls() {
    // Row 0: price 110, sma_20 100, sma_50 88: 10/100 = 0.1; 22/88 = 0.25; above.
    // Row 1: price 95, no sma_20, sma_50 100: pct_20 null; -5/100 = -0.05; not above.
    // Row 2: no price: everything null.
    // Row 3: price 50, sma_20 40, sma_50 0: 10/40 = 0.25; the sma_50 outputs null.
    let out = Signals::on_demand(input(
        vec![Some(100.0), N, Some(100.0), Some(40.0)],
        vec![Some(88.0), Some(100.0), Some(100.0), Some(0.0)],
        vec![Some(110.0), Some(95.0), N, Some(50.0)],
    ))
    .unwrap();
    assert_eq!(out.rows(), 4);
    let names: Vec<&str> = out.columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["pct_from_sma_20", "pct_from_sma_50", "above_sma_50"]);
    let float = |name: &str| out.column(name).unwrap().float64_options().unwrap();
    assert_close(&float("pct_from_sma_20"), &[Some(0.1), N, N, Some(0.25)], "pct_from_sma_20");
    assert_close(&float("pct_from_sma_50"), &[Some(0.25), Some(-0.05), N, N], "pct_from_sma_50");
    let above = out.column("above_sma_50").unwrap();
    assert_eq!(above.nulls(), &[2, 3]);
    assert_eq!(above.values(), &Values::Boolean(vec![true, false, false, false]));
}

#[test]
fn on_demand_accepts_an_integer_price() {
    // 120 vs sma_20 100: 0.2; vs sma_50 150: -30/150 = -0.2, not above.
    let mut input = input(vec![Some(100.0)], vec![Some(150.0)], vec![]);
    input.request = vec![Column::int64(PRICE, vec![Some(120)])];
    let out = Signals::on_demand(input).unwrap();
    assert_close(&out.column("pct_from_sma_20").unwrap().float64_options().unwrap(), &[Some(0.2)], "pct_20");
    assert_close(&out.column("pct_from_sma_50").unwrap().float64_options().unwrap(), &[Some(-0.2)], "pct_50");
    assert_eq!(out.column("above_sma_50").unwrap().values(), &Values::Boolean(vec![false]));
}

#[test]
fn on_demand_explains_missing_or_mistyped_columns() {
    let mut no_sma_50 = input(vec![Some(1.0)], vec![Some(1.0)], vec![Some(1.0)]);
    no_sma_50.features.pop();
    assert_eq!(Signals::on_demand(no_sma_50).unwrap_err(), "no input feature named `technical:sma_50`");
    let mut no_price = input(vec![Some(1.0)], vec![Some(1.0)], vec![Some(1.0)]);
    no_price.request.clear();
    assert_eq!(Signals::on_demand(no_price).unwrap_err(), "no request field named `price`");
    let mut text_price = input(vec![Some(1.0)], vec![Some(1.0)], vec![]);
    text_price.request = vec![Column::text(PRICE, vec![Some("1".into())])];
    assert_eq!(Signals::on_demand(text_price).unwrap_err(), "column `price` is Text, expected Float64");
    let short = input(vec![Some(1.0), Some(2.0)], vec![Some(1.0), Some(2.0)], vec![Some(1.0)]);
    assert_eq!(Signals::on_demand(short).unwrap_err(), "column `price` has 1 rows, but the input has 2");
}

#[test]
fn describe_declares_two_features_a_request_price_and_three_outputs() {
    let d = Signals::describe();
    assert_eq!((d.kind, d.min_history), (wafer_guest::Kind::OnDemand, 0));
    let typed = |fields: &[wafer_guest::Field]| -> Vec<(String, ValueType)> {
        fields.iter().map(|f| (f.name.clone(), f.value_type)).collect()
    };
    let f64_field = |name: &str| (name.to_string(), ValueType::Float64);
    assert_eq!(typed(&d.inputs), [f64_field("technical:sma_20"), f64_field("technical:sma_50")]);
    assert_eq!(typed(&d.request_fields), [f64_field("price")]);
    assert_eq!(
        typed(&d.outputs),
        [f64_field("pct_from_sma_20"), f64_field("pct_from_sma_50"), ("above_sma_50".to_string(), ValueType::Boolean)]
    );
    assert!(d.params.is_empty() && d.related.is_empty());
}

#[test]
fn batch_is_refused() {
    assert!(Signals::batch(BatchInput::default()).is_err());
}
