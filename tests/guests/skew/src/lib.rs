//! # wafer-skew-guest
//!
//! A test-only transform with the same interface as the evil guest's `ok`
//! mode (input `x`, output `x`), standing in for a new version of it with a
//! numerical change and a bug, so shadow-mode tests have a candidate whose
//! differences are known exactly:
//!
//! - `x >= 0`: `2x * (1 + 1e-7)`, a relative difference of 1e-7 from the
//!   active `2x`: a match at tolerance 1e-6, a mismatch at 1e-9 (except 0);
//! - `x < 0`: `2x + 1`, off by 1: a mismatch at any tolerance below
//!   `1 / max(1, |2x|)`.

use wafer_guest::{BatchInput, Column, Descriptor, OnDemandInput, Table, Transform, ValueType};

/// Relative skew of non-negative values.
pub const RELATIVE_SKEW: f64 = 1e-7;
/// What negative values are off by.
pub const NEGATIVE_OFFSET: f64 = 1.0;

pub struct Skew;

/// The candidate's answer for one input value.
pub fn skewed(x: f64) -> f64 {
    if x >= 0.0 { 2.0 * x * (1.0 + RELATIVE_SKEW) } else { 2.0 * x + NEGATIVE_OFFSET }
}

impl Transform for Skew {
    fn describe() -> Descriptor {
        Descriptor::batch("The evil guest's `ok` mode with a skew; for shadow-mode tests only")
            .input("x", ValueType::Float64, "Any number")
            .output("x", ValueType::Float64, "The input doubled, skewed")
            .output("text", ValueType::Text, "Never filled")
            .param("mode", ValueType::Text, Some("ok"), "Ignored; accepted so the evil guest's groups can run it")
            .min_history(1)
    }

    fn batch(input: BatchInput) -> Result<Table, String> {
        let source = input.first_source()?;
        let x = source.columns.iter().find_map(|c| c.as_float64()).ok_or("the first source has no float64 column")?;
        Ok(Table::new(source.timestamps.clone()).with(Column::from_f64s("x", x.iter().map(|&v| skewed(v)).collect())))
    }

    fn on_demand(_input: OnDemandInput) -> Result<Table, String> {
        Err("skew is a batch transform".to_string())
    }
}

wafer_guest::export!(Skew);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skews_as_documented() {
        assert_eq!(skewed(0.0), 0.0);
        assert_eq!(skewed(-2.0), -3.0);
        assert!((skewed(1.5) - 3.0000003).abs() < 1e-12);
    }
}
