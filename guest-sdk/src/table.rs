//! Columns and tables: the data a transform receives and returns.
//!
//! These mirror the WIT `types` interface but keep one invariant the wire
//! format cannot: in a float64 [`Column`], every null row holds `NaN`. The WIT
//! record only promises that a null row's value is "a placeholder to ignore",
//! so a transform that read the raw values could silently use a 0.0 that was
//! never observed. With `NaN` there, arithmetic on a null poisons its result
//! visibly instead, and [`Column::float64`] turns that result back into a null
//! on the way out.

/// The value types a feature, source field or parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// 64-bit float (`list<f64>` on the wire).
    Float64,
    /// 64-bit signed integer.
    Int64,
    /// Boolean.
    Boolean,
    /// UTF-8 text.
    Text,
    /// A list of floats per row.
    Float64List,
    /// A list of texts per row.
    TextList,
}

/// The values of one column, one entry per row. Rows listed as null in the
/// owning [`Column`] hold a placeholder (`NaN` for floats).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Float values.
    Float64(Vec<f64>),
    /// Integer values.
    Int64(Vec<i64>),
    /// Boolean values.
    Boolean(Vec<bool>),
    /// Text values.
    Text(Vec<String>),
    /// Float lists.
    Float64List(Vec<Vec<f64>>),
    /// Text lists.
    TextList(Vec<Vec<String>>),
}

impl Values {
    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            Values::Float64(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Boolean(v) => v.len(),
            Values::Text(v) => v.len(),
            Values::Float64List(v) => v.len(),
            Values::TextList(v) => v.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type of these values.
    pub fn value_type(&self) -> ValueType {
        match self {
            Values::Float64(_) => ValueType::Float64,
            Values::Int64(_) => ValueType::Int64,
            Values::Boolean(_) => ValueType::Boolean,
            Values::Text(_) => ValueType::Text,
            Values::Float64List(_) => ValueType::Float64List,
            Values::TextList(_) => ValueType::TextList,
        }
    }
}

/// A named column with nulls.
///
/// Fields are private so the null invariant (sorted, in range, `NaN` at null
/// float rows) holds for every column, whoever built it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    name: String,
    values: Values,
    nulls: Vec<u32>,
}

impl Column {
    /// A column from raw parts, as on the wire. `nulls` lists null row
    /// indices; it is sorted, deduplicated and cut to the rows that exist, and
    /// float rows it names are set to `NaN`.
    pub fn new(name: impl Into<String>, mut values: Values, mut nulls: Vec<u32>) -> Self {
        let len = values.len();
        nulls.sort_unstable();
        nulls.dedup();
        nulls.retain(|&row| (row as usize) < len);
        if let Values::Float64(v) = &mut values {
            for &row in &nulls {
                v[row as usize] = f64::NAN;
            }
        }
        Column { name: name.into(), values, nulls }
    }

    /// A float column for output. `None` and non-finite values (`NaN`, ±∞)
    /// become nulls: a feature that cannot be computed is missing, never a
    /// number a consumer might trust.
    pub fn float64(name: impl Into<String>, values: Vec<Option<f64>>) -> Self {
        let mut nulls = Vec::new();
        let values = values
            .into_iter()
            .enumerate()
            .map(|(row, v)| match v {
                Some(x) if x.is_finite() => x,
                _ => {
                    nulls.push(row as u32);
                    f64::NAN
                }
            })
            .collect();
        Column { name: name.into(), values: Values::Float64(values), nulls }
    }

    /// A float column from plain values; non-finite values become nulls, as
    /// in [`Column::float64`].
    pub fn from_f64s(name: impl Into<String>, values: Vec<f64>) -> Self {
        let nulls = values.iter().enumerate().filter(|(_, x)| !x.is_finite()).map(|(row, _)| row as u32).collect();
        let values = values.into_iter().map(|x| if x.is_finite() { x } else { f64::NAN }).collect();
        Column { name: name.into(), values: Values::Float64(values), nulls }
    }

    /// An integer column; `None` becomes null.
    pub fn int64(name: impl Into<String>, values: Vec<Option<i64>>) -> Self {
        Self::from_options(name, values, Values::Int64)
    }

    /// A boolean column; `None` becomes null.
    pub fn boolean(name: impl Into<String>, values: Vec<Option<bool>>) -> Self {
        Self::from_options(name, values, Values::Boolean)
    }

    /// A text column; `None` becomes null.
    pub fn text(name: impl Into<String>, values: Vec<Option<String>>) -> Self {
        Self::from_options(name, values, Values::Text)
    }

    fn from_options<T: Default>(name: impl Into<String>, values: Vec<Option<T>>, wrap: fn(Vec<T>) -> Values) -> Self {
        let mut nulls = Vec::new();
        let values = values
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                v.unwrap_or_else(|| {
                    nulls.push(row as u32);
                    T::default()
                })
            })
            .collect();
        Column { name: name.into(), values: wrap(values), nulls }
    }

    /// The column's name (a source field, `group:feature`, or an output).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw values; null rows hold placeholders (`NaN` for floats).
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The null row indices, sorted and in range.
    pub fn nulls(&self) -> &[u32] {
        &self.nulls
    }

    /// The column's value type.
    pub fn value_type(&self) -> ValueType {
        self.values.value_type()
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.values.len()
    }

    /// True when `row` has no value.
    pub fn is_null(&self, row: usize) -> bool {
        u32::try_from(row).is_ok_and(|row| self.nulls.binary_search(&row).is_ok())
    }

    /// The floats of a float64 column, `NaN` at null rows, or `None` for
    /// another type. The cheapest view: no copy, and `NaN` propagates through
    /// arithmetic (the [`rolling`](crate::rolling) helpers treat it as a gap).
    pub fn as_float64(&self) -> Option<&[f64]> {
        match &self.values {
            Values::Float64(v) => Some(v),
            _ => None,
        }
    }

    /// The rows of a float64 column with nulls as `None`, or `None` for
    /// another type.
    pub fn float64_options(&self) -> Option<Vec<Option<f64>>> {
        let values = self.as_float64()?;
        let mut out: Vec<Option<f64>> = values.iter().copied().map(Some).collect();
        for &row in &self.nulls {
            out[row as usize] = None;
        }
        Some(out)
    }

    /// The integers of an int64 column (placeholders at null rows; check
    /// [`Column::is_null`]), or `None` for another type.
    pub fn as_int64(&self) -> Option<&[i64]> {
        match &self.values {
            Values::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// The name, values and nulls, for moving the column's data without a copy.
    pub fn into_parts(self) -> (String, Values, Vec<u32>) {
        (self.name, self.values, self.nulls)
    }
}

/// Rows of one entity in ascending time order: event times in microseconds
/// since the Unix epoch (UTC), and columns with one value per timestamp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Event times, one per row, in microseconds since the Unix epoch (UTC).
    pub timestamps: Vec<i64>,
    /// The columns; each must have exactly as many rows as `timestamps`, or
    /// the host rejects the result.
    pub columns: Vec<Column>,
}

impl Table {
    /// An empty table over these timestamps; add columns with [`Table::with`].
    pub fn new(timestamps: Vec<i64>) -> Self {
        Table { timestamps, columns: Vec::new() }
    }

    /// The table with `column` added, for building output in one expression.
    #[must_use]
    pub fn with(mut self, column: Column) -> Self {
        self.columns.push(column);
        self
    }

    /// The number of rows (timestamps).
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The floats of column `name` (`NaN` at null rows). The error names the
    /// column and what was wrong, ready to return from a transform with `?`.
    pub fn float64(&self, name: &str) -> Result<&[f64], String> {
        let column = self.column(name).ok_or_else(|| format!("no column named `{name}`"))?;
        column.as_float64().ok_or_else(|| format!("column `{name}` is {:?}, expected Float64", column.value_type()))
    }

    /// The rows of float column `name` with nulls as `None`; errors as in
    /// [`Table::float64`].
    pub fn float64_options(&self, name: &str) -> Result<Vec<Option<f64>>, String> {
        self.float64(name)?;
        Ok(self.column(name).and_then(Column::float64_options).unwrap_or_default())
    }
}

/// A table with the name it is known by: a source name, or a related series
/// such as a benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedTable {
    /// The source or related-series name.
    pub name: String,
    /// The rows.
    pub table: Table,
}

impl NamedTable {
    /// A named table.
    pub fn new(name: impl Into<String>, table: Table) -> Self {
        NamedTable { name: name.into(), table }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_output_turns_none_and_non_finite_into_nulls() {
        let c = Column::float64("x", vec![Some(1.0), None, Some(f64::NAN), Some(f64::INFINITY), Some(2.0)]);
        assert_eq!(c.nulls(), &[1, 2, 3]);
        assert_eq!(c.float64_options().unwrap(), vec![Some(1.0), None, None, None, Some(2.0)]);
        let c = Column::from_f64s("x", vec![1.0, f64::NEG_INFINITY]);
        assert_eq!(c.nulls(), &[1]);
    }

    #[test]
    fn wire_nulls_are_normalized_and_float_placeholders_become_nan() {
        let c = Column::new("x", Values::Float64(vec![1.0, 0.0, 3.0]), vec![1, 7, 1]);
        assert_eq!(c.nulls(), &[1]);
        assert!(c.is_null(1) && !c.is_null(0) && !c.is_null(7));
        let raw = c.as_float64().unwrap();
        assert_eq!((raw[0], raw[2]), (1.0, 3.0));
        assert!(raw[1].is_nan());
    }

    #[test]
    fn typed_option_columns_record_nulls() {
        let c = Column::int64("n", vec![Some(4), None]);
        assert_eq!((c.as_int64().unwrap(), c.nulls()), (&[4, 0][..], &[1][..]));
        let c = Column::text("t", vec![None, Some("a".into())]);
        assert_eq!((c.value_type(), c.nulls(), c.rows()), (ValueType::Text, &[0][..], 2));
    }

    #[test]
    fn table_lookups_explain_what_is_missing_or_mistyped() {
        let t = Table::new(vec![1, 2])
            .with(Column::float64("close", vec![Some(1.0), None]))
            .with(Column::int64("volume", vec![Some(1), Some(2)]));
        assert_eq!(t.rows(), 2);
        assert_eq!(t.float64_options("close").unwrap(), vec![Some(1.0), None]);
        assert_eq!(t.float64("open").unwrap_err(), "no column named `open`");
        assert_eq!(t.float64("volume").unwrap_err(), "column `volume` is Int64, expected Float64");
    }
}
