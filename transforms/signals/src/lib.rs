//! # wafer-signals
//!
//! The first-party on-demand transform behind price-vs-trend signals: how far
//! a price quoted at request time sits from the ticker's stored 20- and 50-day
//! moving averages.
//!
//! ## Input and output
//! - Input features (columns named `group:feature`, float64):
//!   `technical:sma_20` and `technical:sma_50`, as materialized by the
//!   `indicators` transform.
//! - Request field: `price` (float64; an int64 column is accepted and
//!   converted), the caller's current price for each entity.
//!
//! One output row per input row (one per entity of the request), in input
//! order. The result's timestamps are all 0: the host ignores them and stamps
//! request time.
//!
//! ## Conventions
//! With `p` the request price:
//! - `pct_from_sma_20 = (p - sma_20) / sma_20`, a fraction: 0.05 is 5 %
//!   above the average, -0.05 5 % below.
//! - `pct_from_sma_50 = (p - sma_50) / sma_50`, likewise.
//! - `above_sma_50`: boolean, `p > sma_50` (strictly: equal is not above).
//!
//! ## Null rules
//! Each output is null on a row where any input it uses is null or not
//! finite, or its SMA is 0 (no average price to compare against; a zero
//! divisor is never turned into ±∞). That holds for `above_sma_50` too, so
//! the boolean and `pct_from_sma_50` are null together. A null `sma_20` does
//! not affect the `sma_50` outputs, and the reverse. A result that is not
//! finite (an overflow) is null.
//!
//! ## Layout
//! The math is plain functions ([`pct_from`], [`above`]), tested natively in
//! `tests.rs`; [`Signals`] wires them to the host through
//! [`wafer_guest::Transform`].

use wafer_guest::{Column, Descriptor, OnDemandInput, Table, Transform, ValueType, Values};

/// Input feature: the 20-day SMA.
pub const SMA_20: &str = "technical:sma_20";
/// Input feature: the 50-day SMA.
pub const SMA_50: &str = "technical:sma_50";
/// Request field: the current price.
pub const PRICE: &str = "price";

/// An SMA a price can be compared with: present, finite and not 0.
fn usable_sma(sma: Option<f64>) -> Option<f64> {
    sma.filter(|s| s.is_finite() && *s != 0.0)
}

/// `(price - sma) / sma`, or `None` by the null rules.
pub fn pct_from(price: Option<f64>, sma: Option<f64>) -> Option<f64> {
    let p = price.filter(|p| p.is_finite())?;
    let s = usable_sma(sma)?;
    Some((p - s) / s).filter(|x| x.is_finite())
}

/// `price > sma`, or `None` by the null rules.
pub fn above(price: Option<f64>, sma: Option<f64>) -> Option<bool> {
    let p = price.filter(|p| p.is_finite())?;
    Some(p > usable_sma(sma)?)
}

/// The `signals` transform.
pub struct Signals;

impl Transform for Signals {
    fn describe() -> Descriptor {
        Descriptor::on_demand("Request price relative to the stored 20- and 50-day SMAs")
            .input(SMA_20, ValueType::Float64, "Mean of the last 20 closes (technical group)")
            .input(SMA_50, ValueType::Float64, "Mean of the last 50 closes (technical group)")
            .request_field(PRICE, ValueType::Float64, "The current price, supplied with the request")
            .output(
                "pct_from_sma_20",
                ValueType::Float64,
                "(price - sma_20) / sma_20, a fraction; null when an input is null or sma_20 is 0",
            )
            .output(
                "pct_from_sma_50",
                ValueType::Float64,
                "(price - sma_50) / sma_50, a fraction; null when an input is null or sma_50 is 0",
            )
            .output(
                "above_sma_50",
                ValueType::Boolean,
                "price > sma_50 (strictly); null when an input is null or sma_50 is 0",
            )
    }

    fn on_demand(input: OnDemandInput) -> Result<Table, String> {
        let rows = input.rows();
        let sma_20 = numeric(input.feature(SMA_20)?, rows)?;
        let sma_50 = numeric(input.feature(SMA_50)?, rows)?;
        let price = numeric(input.request(PRICE)?, rows)?;
        let pct = |sma: &[Option<f64>]| price.iter().zip(sma).map(|(&p, &s)| pct_from(p, s)).collect();
        Ok(Table::new(vec![0; rows])
            .with(Column::float64("pct_from_sma_20", pct(&sma_20)))
            .with(Column::float64("pct_from_sma_50", pct(&sma_50)))
            .with(Column::boolean("above_sma_50", price.iter().zip(&sma_50).map(|(&p, &s)| above(p, s)).collect())))
    }
}

/// A float64 (or int64) column as floats, `None` at nulls, checked to have
/// `rows` rows.
fn numeric(column: &Column, rows: usize) -> Result<Vec<Option<f64>>, String> {
    let name = column.name();
    let values: Vec<Option<f64>> = match column.values() {
        Values::Float64(v) => v.iter().map(|x| x.is_finite().then_some(*x)).collect(),
        Values::Int64(v) => v.iter().enumerate().map(|(i, x)| (!column.is_null(i)).then_some(*x as f64)).collect(),
        other => return Err(format!("column `{name}` is {:?}, expected Float64", other.value_type())),
    };
    if values.len() != rows {
        return Err(format!("column `{name}` has {} rows, but the input has {rows}", values.len()));
    }
    Ok(values)
}

wafer_guest::export!(Signals);

#[cfg(test)]
mod tests;
