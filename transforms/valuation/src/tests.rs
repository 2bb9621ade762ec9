//! Expected values are worked out by hand (in the comments), never taken from
//! this code. Figures are chosen so every ratio is a short exact decimal.

use super::*;
use wafer_guest::{NamedTable, Param};

const DAY: i64 = 86_400_000_000;

fn day(d: i64) -> i64 {
    1_700_000_000_000_000 + d * DAY
}

fn assert_close(got: Option<f64>, want: Option<f64>, what: &str) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{what}: got {g}, want {w}"),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

fn assert_ratios(got: Ratios, want: Ratios) {
    let names = FEATURES.map(|(name, _)| name);
    for ((g, w), name) in got.to_array().into_iter().zip(want.to_array()).zip(names) {
        assert_close(g, w, name);
    }
}

/// 2,000,000 shares, EPS 6, book value 30 a share, revenue 60,000,000,
/// dividends 3 a share.
fn acme() -> Fundamentals {
    Fundamentals {
        shares_outstanding: Some(2_000_000.0),
        eps_ttm: Some(6.0),
        book_value_per_share: Some(30.0),
        revenue_ttm: Some(60_000_000.0),
        dividends_per_share_ttm: Some(3.0),
    }
}

#[test]
fn ratios_follow_the_contract_formulas() {
    // Close 150: market cap 150 x 2,000,000 = 300,000,000; P/E 150/6 = 25;
    // P/B 150/30 = 5; P/S 300,000,000/60,000,000 = 5; yield 3/150 = 0.02.
    let want = Ratios {
        pe_ratio: Some(25.0),
        pb_ratio: Some(5.0),
        ps_ratio: Some(5.0),
        dividend_yield: Some(0.02),
        market_cap: Some(300_000_000.0),
    };
    assert_ratios(ratios(Some(150.0), Some(&acme())), want);
}

#[test]
fn a_loss_gives_a_negative_pe_without_clamping() {
    // Close 50, EPS -2: P/E -25; the rest as usual (P/B 50/30 = 5/3,
    // market cap 100,000,000, P/S 100/60 = 5/3, yield 3/50 = 0.06).
    let f = Fundamentals { eps_ttm: Some(-2.0), ..acme() };
    let want = Ratios {
        pe_ratio: Some(-25.0),
        pb_ratio: Some(5.0 / 3.0),
        ps_ratio: Some(5.0 / 3.0),
        dividend_yield: Some(0.06),
        market_cap: Some(100_000_000.0),
    };
    assert_ratios(ratios(Some(50.0), Some(&f)), want);
}

#[test]
fn a_zero_missing_or_non_finite_divisor_nulls_only_the_ratios_using_it() {
    let at_150 = |f: Fundamentals| ratios(Some(150.0), Some(&f));
    // Zero earnings: null P/E, never infinity; the other four unchanged.
    for eps in [Some(0.0), None, Some(f64::NAN), Some(f64::INFINITY)] {
        let r = at_150(Fundamentals { eps_ttm: eps, ..acme() });
        assert_eq!(r.pe_ratio, None, "eps {eps:?}");
        assert_eq!((r.pb_ratio, r.ps_ratio, r.market_cap), (Some(5.0), Some(5.0), Some(300_000_000.0)));
    }
    for book in [Some(0.0), None, Some(f64::NEG_INFINITY)] {
        let r = at_150(Fundamentals { book_value_per_share: book, ..acme() });
        assert_eq!((r.pb_ratio, r.pe_ratio), (None, Some(25.0)), "book {book:?}");
    }
    for revenue in [Some(0.0), None] {
        let r = at_150(Fundamentals { revenue_ttm: revenue, ..acme() });
        assert_eq!((r.ps_ratio, r.market_cap), (None, Some(300_000_000.0)), "revenue {revenue:?}");
    }
    // No usable share count: no market cap, so no P/S either.
    for shares in [Some(0.0), None, Some(f64::NAN)] {
        let r = at_150(Fundamentals { shares_outstanding: shares, ..acme() });
        assert_eq!((r.market_cap, r.ps_ratio), (None, None), "shares {shares:?}");
        assert_eq!((r.pe_ratio, r.pb_ratio), (Some(25.0), Some(5.0)));
    }
}

#[test]
fn a_non_payer_yields_zero_and_unknown_dividends_yield_null() {
    let yield_of = |d: Option<f64>| ratios(Some(150.0), Some(&Fundamentals { dividends_per_share_ttm: d, ..acme() }));
    assert_eq!(yield_of(Some(0.0)).dividend_yield, Some(0.0));
    assert_eq!(yield_of(None).dividend_yield, None);
    assert_eq!(yield_of(Some(f64::NAN)).dividend_yield, None);
    // 1.5 a share at 150: 0.01.
    assert_close(yield_of(Some(1.5)).dividend_yield, Some(0.01), "dividend_yield");
}

#[test]
fn without_a_usable_close_or_any_fundamentals_every_feature_is_null() {
    for close in [None, Some(0.0), Some(f64::NAN), Some(f64::INFINITY)] {
        assert_eq!(ratios(close, Some(&acme())), Ratios::default(), "close {close:?}");
    }
    assert_eq!(ratios(Some(150.0), None), Ratios::default());
}

#[test]
fn an_overflowing_result_is_null_not_infinite() {
    // 1e300 x 1e10 overflows f64; P/E 1e300/6 does not.
    let f = Fundamentals { shares_outstanding: Some(1e10), ..acme() };
    let r = ratios(Some(1e300), Some(&f));
    assert_eq!((r.market_cap, r.ps_ratio), (None, None));
    assert_close(r.pe_ratio, Some(1e300 / 6.0), "pe_ratio");
}

#[test]
fn as_of_picks_the_latest_row_published_on_or_before_each_price() {
    // Fundamentals at 2, 5, 5, 7. Price at 1: none yet; 2: row 0 (same
    // instant counts); 3: row 0; 5: the last of the two rows at 5 (row 2);
    // 6: row 2; 8: row 3.
    assert_eq!(as_of(&[1, 2, 3, 5, 6, 8], &[2, 5, 5, 7]), vec![None, Some(0), Some(0), Some(2), Some(2), Some(3)]);
    assert_eq!(as_of(&[1, 2], &[]), vec![None, None]);
    assert_eq!(as_of(&[], &[1]), Vec::<Option<usize>>::new());
}

#[test]
fn compute_joins_each_price_row_point_in_time_and_takes_the_row_whole() {
    // Close 40 on days 1..=5. Fundamentals published on day 2 (EPS 2) and on
    // day 4 (EPS 4, but no book value). P/E: day 1 none yet; days 2-3
    // 40/2 = 20; days 4-5 40/4 = 10. P/B: days 2-3 40/30 = 4/3; from day 4
    // null, not the stale 30 carried forward.
    let price_ts: Vec<i64> = (1..=5).map(day).collect();
    let closes = vec![Some(40.0); 5];
    let rows = [
        Fundamentals { eps_ttm: Some(2.0), ..acme() },
        Fundamentals { eps_ttm: Some(4.0), book_value_per_share: None, ..acme() },
    ];
    let out = compute(&price_ts, &closes, &[day(2), day(4)], &rows);
    let pe: Vec<Option<f64>> = out.iter().map(|r| r.pe_ratio).collect();
    assert_eq!(pe, [None, Some(20.0), Some(20.0), Some(10.0), Some(10.0)]);
    let pb: Vec<Option<f64>> = out.iter().map(|r| r.pb_ratio).collect();
    for (i, (g, w)) in pb.into_iter().zip([None, Some(4.0 / 3.0), Some(4.0 / 3.0), None, None]).enumerate() {
        assert_close(g, w, &format!("pb_ratio row {i}"));
    }
}

/// A `prices` table with `closes` on days 1.. and a `fundamentals` table
/// whose share counts are int64, as a source may declare them.
fn input(closes: Vec<Option<f64>>, published: &[(i64, f64, Option<f64>)]) -> BatchInput {
    let prices = Table::new((1..=closes.len() as i64).map(day).collect()).with(Column::float64("close", closes));
    let n = published.len();
    let fundamentals = Table::new(published.iter().map(|p| day(p.0)).collect())
        .with(Column::int64("shares_outstanding", vec![Some(1_000); n]))
        .with(Column::float64("eps_ttm", published.iter().map(|p| Some(p.1)).collect()))
        .with(Column::float64("book_value_per_share", vec![Some(8.0); n]))
        .with(Column::float64("revenue_ttm", vec![Some(25_000.0); n]))
        .with(Column::float64("dividends_per_share_ttm", published.iter().map(|p| p.2).collect()));
    BatchInput {
        entity: "ACME".into(),
        sources: vec![NamedTable::new("prices", prices), NamedTable::new("fundamentals", fundamentals)],
        related: vec![],
        params: vec![],
    }
}

fn column(t: &Table, name: &str) -> Vec<Option<f64>> {
    t.column(name).unwrap().float64_options().unwrap()
}

#[test]
fn batch_returns_one_row_per_price_row_with_int64_shares_converted() {
    // Closes 100, 100, 120 on days 1-3; null on day 4. Fundamentals from day
    // 2: 1,000 shares, EPS 5, book 8, revenue 25,000, dividends 2.
    // Day 1: nothing published yet, all null.
    // Day 2: cap 100,000; P/E 20; P/B 12.5; P/S 4; yield 0.02.
    // Day 3: cap 120,000; P/E 24; P/B 15; P/S 4.8; yield 2/120 = 1/60.
    // Day 4: no close, all null.
    let input = input(vec![Some(100.0), Some(100.0), Some(120.0), None], &[(2, 5.0, Some(2.0))]);
    let timestamps = input.sources[0].table.timestamps.clone();
    let out = Valuation::batch(input).unwrap();
    assert_eq!(out.timestamps, timestamps);
    let names: Vec<&str> = out.columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["pe_ratio", "pb_ratio", "ps_ratio", "dividend_yield", "market_cap"]);
    let want: [(&str, [Option<f64>; 4]); 5] = [
        ("market_cap", [None, Some(100_000.0), Some(120_000.0), None]),
        ("pe_ratio", [None, Some(20.0), Some(24.0), None]),
        ("pb_ratio", [None, Some(12.5), Some(15.0), None]),
        ("ps_ratio", [None, Some(4.0), Some(4.8), None]),
        ("dividend_yield", [None, Some(0.02), Some(1.0 / 60.0), None]),
    ];
    for (name, values) in want {
        let got = column(&out, name);
        for (i, (g, w)) in got.into_iter().zip(values).enumerate() {
            assert_close(g, w, &format!("{name} row {i}"));
        }
    }
}

#[test]
fn batch_reads_sources_named_by_params() {
    let mut input = input(vec![Some(100.0)], &[(1, 4.0, None)]);
    input.sources[0].name = "daily_bars".into();
    input.sources[1].name = "filings".into();
    input.params = vec![Param::new("prices_source", "daily_bars"), Param::new("fundamentals_source", "filings")];
    let out = Valuation::batch(input).unwrap();
    // 100 / 4 = 25; dividends null -> yield null.
    assert_eq!(column(&out, "pe_ratio"), [Some(25.0)]);
    assert_eq!(column(&out, "dividend_yield"), [None]);
}

#[test]
fn batch_explains_a_missing_source_column_or_unordered_rows() {
    let mut no_fundamentals = input(vec![Some(1.0)], &[]);
    no_fundamentals.sources.pop();
    assert_eq!(
        Valuation::batch(no_fundamentals).unwrap_err(),
        "valuation reads source `fundamentals` (param `fundamentals_source`), but the feature group's sources are: \
         [prices]"
    );
    let mut no_eps = input(vec![Some(1.0)], &[(1, 1.0, None)]);
    no_eps.sources[1].table.columns.retain(|c| c.name() != "eps_ttm");
    assert_eq!(Valuation::batch(no_eps).unwrap_err(), "source `fundamentals` has no column `eps_ttm`");
    let mut text_close = input(vec![Some(1.0)], &[]);
    text_close.sources[0].table.columns = vec![Column::text("close", vec![Some("1".into())])];
    assert_eq!(
        Valuation::batch(text_close).unwrap_err(),
        "column `close` of source `prices` is Text, expected Float64 or Int64"
    );
    let mut unordered = input(vec![Some(1.0)], &[(3, 1.0, None), (2, 1.0, None)]);
    unordered.sources[1].table.timestamps = vec![day(3), day(2)];
    assert_eq!(
        Valuation::batch(unordered).unwrap_err(),
        "source `fundamentals` is not in ascending time order (row 1 is earlier than row 0)"
    );
}

#[test]
fn describe_declares_close_in_five_features_out_and_the_source_params() {
    let d = Valuation::describe();
    assert_eq!((d.kind, d.min_history), (wafer_guest::Kind::Batch, 1));
    let inputs: Vec<(&str, ValueType)> = d.inputs.iter().map(|f| (f.name.as_str(), f.value_type)).collect();
    assert_eq!(inputs, [("close", ValueType::Float64)]);
    let names: Vec<&str> = d.outputs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["pe_ratio", "pb_ratio", "ps_ratio", "dividend_yield", "market_cap"]);
    assert!(d.outputs.iter().all(|f| f.value_type == ValueType::Float64 && !f.description.is_empty()));
    let params: Vec<(&str, Option<&str>)> =
        d.params.iter().map(|p| (p.name.as_str(), p.default_value.as_deref())).collect();
    assert_eq!(params, [("prices_source", Some("prices")), ("fundamentals_source", Some("fundamentals"))]);
    assert!(d.description.contains("dividends_per_share_ttm"));
}

#[test]
fn on_demand_is_refused() {
    assert!(Valuation::on_demand(Default::default()).is_err());
}
