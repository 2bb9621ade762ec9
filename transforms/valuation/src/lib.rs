//! # wafer-valuation
//!
//! The first-party batch transform behind the `valuation` feature group: five
//! valuation ratios of one ticker, from its daily closes and its published
//! fundamentals.
//!
//! ## Input and output
//! The feature group reads two sources of the same entity,
//! `"sources": ["prices", "fundamentals"]`, and the transform finds them **by
//! name**: params `prices_source` (default `prices`) and `fundamentals_source`
//! (default `fundamentals`) hold the names, so a group whose sources are
//! called otherwise sets the params. A missing source is an error naming the
//! sources the group does have. List the prices source first: the host checks
//! a batch transform's declared inputs against the group's first source only,
//! which is why the descriptor declares `close` alone.
//!
//! - prices: column `close` (float64; int64 is accepted and converted).
//! - fundamentals: columns `shares_outstanding`, `eps_ttm`,
//!   `book_value_per_share`, `revenue_ttm`, `dividends_per_share_ttm`
//!   ([`FUNDAMENTAL_FIELDS`]), each float64 or int64. A missing column is an
//!   error (the source is misconfigured), a null value is not.
//!
//! Both tables must be in ascending time order (the host's contract); a table
//! that is not is refused rather than joined wrongly. The result has one row
//! per price row, with the price timestamps and one float64 column per
//! feature, in [`FEATURES`] order.
//!
//! ## Conventions
//! For each price row at time `t` with close `c`, the fundamentals row used is
//! the **latest row whose timestamp (the date its figures became public) is on
//! or before `t`**, compared to the microsecond (`fundamentals_ts <= t`); when
//! several rows share that timestamp, the last one in table order. The row is
//! taken whole: a null field in it is not filled from an older row, since the
//! newest publication is what was known at `t`. With that row's figures:
//!
//! - `market_cap = c × shares_outstanding`
//! - `pe_ratio = c / eps_ttm`, not clamped: a loss gives a negative ratio.
//! - `pb_ratio = c / book_value_per_share`
//! - `ps_ratio = market_cap / revenue_ttm`
//! - `dividend_yield = dividends_per_share_ttm / c`, a fraction (0.02 is 2 %).
//!
//! ## Null rules
//! - No fundamentals row on or before `t` yet: every feature is null on that
//!   row (including `market_cap`, whose share count comes from fundamentals).
//! - `close` null, non-finite or 0 (not a price): every feature is null.
//! - `shares_outstanding`, `eps_ttm`, `book_value_per_share` or `revenue_ttm`
//!   null, non-finite or 0: every feature computed from it is null. So zero
//!   earnings give a null `pe_ratio`, never ±∞; zero shares give a null
//!   `market_cap` and so a null `ps_ratio`.
//! - `dividends_per_share_ttm` null or non-finite: `dividend_yield` is null;
//!   0 (a non-payer) gives a yield of 0.
//! - A result that is not finite (an overflow) is null.
//!
//! `min_history` is 1: every feature needs only the row's own close.
//!
//! ## Layout
//! The math is plain functions ([`as_of`] for the point-in-time join,
//! [`ratios`] for one row's features, [`compute`] for a whole series), tested
//! natively in `tests.rs`; [`Valuation`] wires them to the host
//! through [`wafer_guest::Transform`].

use wafer_guest::{BatchInput, Column, Descriptor, Table, Transform, ValueType, Values};

/// The output features in column order, with their descriptions.
pub const FEATURES: [(&str, &str); 5] = [
    ("pe_ratio", "close / eps_ttm (not clamped; null when eps_ttm is missing or 0)"),
    ("pb_ratio", "close / book_value_per_share (null when book value is missing or 0)"),
    ("ps_ratio", "market_cap / revenue_ttm (null when revenue is missing or 0)"),
    (
        "dividend_yield",
        "dividends_per_share_ttm / close, a fraction; 0 for non-payers, null when dividends are missing",
    ),
    ("market_cap", "close x shares_outstanding"),
];

/// The fundamentals fields read, in [`Fundamentals`] field order.
pub const FUNDAMENTAL_FIELDS: [&str; 5] =
    ["shares_outstanding", "eps_ttm", "book_value_per_share", "revenue_ttm", "dividends_per_share_ttm"];

/// Param naming the source that holds `close`, and its default.
pub const PRICES_PARAM: (&str, &str) = ("prices_source", "prices");

/// Param naming the source that holds the fundamentals, and its default.
pub const FUNDAMENTALS_PARAM: (&str, &str) = ("fundamentals_source", "fundamentals");

/// One fundamentals row's figures; `None` where the row has no value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fundamentals {
    /// Shares outstanding.
    pub shares_outstanding: Option<f64>,
    /// Earnings per share over the trailing twelve months.
    pub eps_ttm: Option<f64>,
    /// Book value per share.
    pub book_value_per_share: Option<f64>,
    /// Revenue over the trailing twelve months.
    pub revenue_ttm: Option<f64>,
    /// Dividends per share over the trailing twelve months.
    pub dividends_per_share_ttm: Option<f64>,
}

/// One row's features; `None` is a null.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ratios {
    /// `close / eps_ttm`.
    pub pe_ratio: Option<f64>,
    /// `close / book_value_per_share`.
    pub pb_ratio: Option<f64>,
    /// `market_cap / revenue_ttm`.
    pub ps_ratio: Option<f64>,
    /// `dividends_per_share_ttm / close`.
    pub dividend_yield: Option<f64>,
    /// `close × shares_outstanding`.
    pub market_cap: Option<f64>,
}

impl Ratios {
    /// The features in [`FEATURES`] order.
    pub fn to_array(self) -> [Option<f64>; 5] {
        [self.pe_ratio, self.pb_ratio, self.ps_ratio, self.dividend_yield, self.market_cap]
    }
}

/// For each price timestamp, the index of the latest fundamentals row at or
/// before it (the last of equal timestamps), or `None` when there is none
/// yet. Both slices must be in ascending order; one pass over each.
pub fn as_of(price_ts: &[i64], fundamentals_ts: &[i64]) -> Vec<Option<usize>> {
    let mut next = 0;
    price_ts
        .iter()
        .map(|&t| {
            while next < fundamentals_ts.len() && fundamentals_ts[next] <= t {
                next += 1;
            }
            next.checked_sub(1)
        })
        .collect()
}

/// A value a ratio can use: present, finite and not 0.
fn usable(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite() && *v != 0.0)
}

/// A finite result, or null.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// One row's features from its close and the fundamentals in force (`None`
/// when none are published yet), by the crate's conventions and null rules.
pub fn ratios(close: Option<f64>, fundamentals: Option<&Fundamentals>) -> Ratios {
    let (Some(c), Some(f)) = (usable(close), fundamentals) else {
        return Ratios::default();
    };
    let market_cap = usable(f.shares_outstanding).and_then(|s| finite(c * s));
    Ratios {
        pe_ratio: usable(f.eps_ttm).and_then(|e| finite(c / e)),
        pb_ratio: usable(f.book_value_per_share).and_then(|b| finite(c / b)),
        ps_ratio: market_cap.zip(usable(f.revenue_ttm)).and_then(|(m, r)| finite(m / r)),
        // 0 is a real dividend (a non-payer), so only null and non-finite are refused.
        dividend_yield: f.dividends_per_share_ttm.filter(|d| d.is_finite()).and_then(|d| finite(d / c)),
        market_cap,
    }
}

/// Every price row's features: `closes[i]` at `price_ts[i]`, joined as of
/// its time to `fundamentals[j]` published at `fundamentals_ts[j]`. Both
/// timestamp slices ascending; `closes` as long as `price_ts` and
/// `fundamentals` as long as `fundamentals_ts`.
pub fn compute(
    price_ts: &[i64],
    closes: &[Option<f64>],
    fundamentals_ts: &[i64],
    fundamentals: &[Fundamentals],
) -> Vec<Ratios> {
    as_of(price_ts, fundamentals_ts)
        .into_iter()
        .zip(closes)
        .map(|(row, &close)| ratios(close, row.and_then(|j| fundamentals.get(j))))
        .collect()
}

/// The `valuation` transform.
pub struct Valuation;

impl Transform for Valuation {
    fn describe() -> Descriptor {
        let d = Descriptor::batch(
            "Valuation ratios from the latest close and the latest fundamentals published on or before its date \
             (fundamentals fields: shares_outstanding, eps_ttm, book_value_per_share, revenue_ttm, \
             dividends_per_share_ttm; float64 or int64)",
        )
        .input("close", ValueType::Float64, "Daily close, read from the prices source (listed first)")
        .param(
            PRICES_PARAM.0,
            ValueType::Text,
            Some(PRICES_PARAM.1),
            "Name of the group's source holding `close`; list it first",
        )
        .param(
            FUNDAMENTALS_PARAM.0,
            ValueType::Text,
            Some(FUNDAMENTALS_PARAM.1),
            "Name of the group's source holding the fundamentals, timestamped by publication date",
        )
        .min_history(1);
        FEATURES.iter().fold(d, |d, (name, doc)| d.output(*name, ValueType::Float64, *doc))
    }

    fn batch(input: BatchInput) -> Result<Table, String> {
        let (prices_name, prices) = named_source(&input, PRICES_PARAM)?;
        let (fundamentals_name, fundamentals) = named_source(&input, FUNDAMENTALS_PARAM)?;
        ascending(prices_name, prices)?;
        ascending(fundamentals_name, fundamentals)?;
        let closes = numeric(prices_name, prices, "close")?;
        let [shares, eps, book, revenue, dividends] =
            FUNDAMENTAL_FIELDS.map(|field| numeric(fundamentals_name, fundamentals, field));
        let (shares, eps, book, revenue, dividends) = (shares?, eps?, book?, revenue?, dividends?);
        let rows: Vec<Fundamentals> = (0..fundamentals.rows())
            .map(|j| Fundamentals {
                shares_outstanding: shares[j],
                eps_ttm: eps[j],
                book_value_per_share: book[j],
                revenue_ttm: revenue[j],
                dividends_per_share_ttm: dividends[j],
            })
            .collect();
        let values = compute(&prices.timestamps, &closes, &fundamentals.timestamps, &rows);
        let mut columns: [Vec<Option<f64>>; 5] = Default::default();
        for v in values {
            for (column, x) in columns.iter_mut().zip(v.to_array()) {
                column.push(x);
            }
        }
        Ok(FEATURES
            .iter()
            .zip(columns)
            .fold(Table::new(prices.timestamps.clone()), |t, ((name, _), v)| t.with(Column::float64(*name, v))))
    }
}

/// The source named by `param` (or its default), or an error listing the
/// sources the group does have.
fn named_source<'a>(input: &'a BatchInput, (param, default): (&str, &'a str)) -> Result<(&'a str, &'a Table), String> {
    let name = input.param(param).unwrap_or(default);
    input.source(name).map(|table| (name, table)).map_err(|_| {
        let have: Vec<&str> = input.sources.iter().map(|s| s.name.as_str()).collect();
        format!(
            "valuation reads source `{name}` (param `{param}`), but the feature group's sources are: [{}]",
            have.join(", ")
        )
    })
}

/// Refuses a table whose rows go back in time: the as-of join would pick
/// the wrong fundamentals without noticing.
fn ascending(source: &str, table: &Table) -> Result<(), String> {
    match table.timestamps.windows(2).position(|w| w[0] > w[1]) {
        None => Ok(()),
        Some(row) => {
            Err(format!("source `{source}` is not in ascending time order (row {} is earlier than row {row})", row + 1))
        }
    }
}

/// A float64 or int64 column as floats, `None` at nulls and non-finite
/// values, checked to have one value per timestamp.
fn numeric(source: &str, table: &Table, name: &str) -> Result<Vec<Option<f64>>, String> {
    let column = table.column(name).ok_or_else(|| format!("source `{source}` has no column `{name}`"))?;
    let values: Vec<Option<f64>> = match column.values() {
        Values::Float64(v) => v.iter().map(|x| x.is_finite().then_some(*x)).collect(),
        Values::Int64(v) => v.iter().enumerate().map(|(i, x)| (!column.is_null(i)).then_some(*x as f64)).collect(),
        other => {
            return Err(format!(
                "column `{name}` of source `{source}` is {:?}, expected Float64 or Int64",
                other.value_type()
            ));
        }
    };
    if values.len() != table.rows() {
        return Err(format!(
            "column `{name}` of source `{source}` has {} rows for {} timestamps",
            values.len(),
            table.rows()
        ));
    }
    Ok(values)
}

wafer_guest::export!(Valuation);

#[cfg(test)]
mod tests;
