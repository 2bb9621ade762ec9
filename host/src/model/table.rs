//! Columnar tables: what crosses the boundary to transforms. These mirror
//! the WIT `types` interface; `runtime::bindings` converts between the two so
//! nothing outside `runtime/` names generated types.

use super::value::{Value, ValueType};

#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValues {
    Float64(Vec<f64>),
    Int64(Vec<i64>),
    Bool(Vec<bool>),
    Text(Vec<String>),
    Float64List(Vec<Vec<f64>>),
    TextList(Vec<Vec<String>>),
}

impl ColumnValues {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Float64(v) => v.len(),
            ColumnValues::Int64(v) => v.len(),
            ColumnValues::Bool(v) => v.len(),
            ColumnValues::Text(v) => v.len(),
            ColumnValues::Float64List(v) => v.len(),
            ColumnValues::TextList(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            ColumnValues::Float64(_) => ValueType::Float64,
            ColumnValues::Int64(_) => ValueType::Int64,
            ColumnValues::Bool(_) => ValueType::Bool,
            ColumnValues::Text(_) => ValueType::String,
            ColumnValues::Float64List(_) => ValueType::Float64List,
            ColumnValues::TextList(_) => ValueType::StringList,
        }
    }
}

/// A named column; rows listed in `nulls` (ascending) have no value.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: ColumnValues,
    pub nulls: Vec<u32>,
}

impl Column {
    /// Builds a typed column from values. Nulls, and values of another type
    /// that cannot be converted, become null rows.
    pub fn from_values<'a>(name: &str, ty: ValueType, values: impl IntoIterator<Item = &'a Value>) -> Column {
        let mut nulls = Vec::new();
        macro_rules! collect {
            ($variant:ident, $default:expr, $pick:expr) => {{
                let mut out = Vec::new();
                for (i, v) in values.into_iter().enumerate() {
                    match $pick(v) {
                        Some(x) => out.push(x),
                        None => {
                            nulls.push(i as u32);
                            out.push($default);
                        }
                    }
                }
                ColumnValues::$variant(out)
            }};
        }
        let values = match ty {
            ValueType::Float64 => collect!(Float64, 0.0, |v: &Value| v.as_f64()),
            ValueType::Int64 => collect!(Int64, 0, |v: &Value| match v {
                Value::Int64(i) => Some(*i),
                _ => None,
            }),
            ValueType::Bool => collect!(Bool, false, |v: &Value| match v {
                Value::Bool(b) => Some(*b),
                _ => None,
            }),
            ValueType::String => collect!(Text, String::new(), |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            }),
            ValueType::Float64List => collect!(Float64List, Vec::new(), |v: &Value| match v {
                Value::Float64List(l) => Some(l.clone()),
                _ => None,
            }),
            ValueType::StringList => collect!(TextList, Vec::new(), |v: &Value| match v {
                Value::StringList(l) => Some(l.clone()),
                _ => None,
            }),
        };
        Column { name: name.to_string(), values, nulls }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether `row` has no value: listed in `nulls`, past the end, or a
    /// non-finite float (JSON cannot carry them and no feature means them).
    pub fn is_null(&self, row: usize) -> bool {
        if self.nulls.binary_search(&(row as u32)).is_ok() {
            return true;
        }
        match &self.values {
            ColumnValues::Float64(v) => v.get(row).is_none_or(|x| !x.is_finite()),
            values => row >= values.len(),
        }
    }

    /// The value at `row`, `Value::Null` where [`Column::is_null`].
    pub fn value(&self, row: usize) -> Value {
        if self.is_null(row) {
            return Value::Null;
        }
        match &self.values {
            ColumnValues::Float64(v) => match v.get(row) {
                Some(x) if x.is_finite() => Value::Float64(*x),
                _ => Value::Null,
            },
            ColumnValues::Int64(v) => v.get(row).map_or(Value::Null, |x| Value::Int64(*x)),
            ColumnValues::Bool(v) => v.get(row).map_or(Value::Null, |x| Value::Bool(*x)),
            ColumnValues::Text(v) => v.get(row).map_or(Value::Null, |x| Value::String(x.clone())),
            ColumnValues::Float64List(v) => v.get(row).map_or(Value::Null, |x| Value::Float64List(x.clone())),
            ColumnValues::TextList(v) => v.get(row).map_or(Value::Null, |x| Value::StringList(x.clone())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Table {
    /// Microseconds since the Unix epoch, ascending.
    pub timestamps: Vec<i64>,
    pub columns: Vec<Column>,
}

impl Table {
    /// Source rows as a table with one typed column per field (`fields`:
    /// name and type, in order); a value a row lacks is null.
    pub fn of_source_rows(fields: &[(String, ValueType)], rows: &[super::SourceRow]) -> Table {
        let null = Value::Null;
        Table {
            timestamps: rows.iter().map(|r| r.ts.micros()).collect(),
            columns: fields
                .iter()
                .map(|(name, t)| {
                    Column::from_values(name, *t, rows.iter().map(|r| r.values.get(name).unwrap_or(&null)))
                })
                .collect(),
        }
    }

    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The bytes the table holds on the heap, as a cache that keeps tables
    /// counts them: every vector's elements, each string's and list's own
    /// allocation and header. (Transform output is bounded by a different,
    /// simpler estimate: `runtime::validate::output_bytes`.)
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let text = |v: &[String]| v.iter().map(|s| size_of::<String>() + s.len()).sum::<usize>();
        let columns: usize = self
            .columns
            .iter()
            .map(|c| {
                let values = match &c.values {
                    ColumnValues::Float64(v) => v.len() * size_of::<f64>(),
                    ColumnValues::Int64(v) => v.len() * size_of::<i64>(),
                    ColumnValues::Bool(v) => v.len(),
                    ColumnValues::Text(v) => text(v),
                    ColumnValues::Float64List(v) => {
                        v.iter().map(|l| size_of::<Vec<f64>>() + l.len() * size_of::<f64>()).sum()
                    }
                    ColumnValues::TextList(v) => v.iter().map(|l| size_of::<Vec<String>>() + text(l)).sum(),
                };
                size_of::<Column>() + c.name.len() + c.nulls.len() * size_of::<u32>() + values
            })
            .sum();
        size_of::<Table>() + self.timestamps.len() * size_of::<i64>() + columns
    }

    /// Every column has one value per timestamp and its nulls are in range.
    pub fn check_shape(&self) -> Result<(), String> {
        let n = self.rows();
        for c in &self.columns {
            if c.len() != n {
                return Err(format!("column '{}' has {} rows, expected {n}", c.name, c.len()));
            }
            if c.nulls.iter().any(|&i| i as usize >= n) {
                return Err(format!("column '{}' lists a null row past its end", c.name));
            }
            if c.nulls.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("column '{}' lists null rows out of order", c.name));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NamedTable {
    pub name: String,
    pub table: Table,
}

/// One entity's history for a batch transform (see the WIT `batch-input`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchInput {
    pub entity: String,
    pub sources: Vec<NamedTable>,
    pub related: Vec<NamedTable>,
    pub params: Vec<(String, String)>,
}

/// A request's entities for an on-demand transform, one row per entity.
#[derive(Clone, Debug, PartialEq)]
pub struct OnDemandInput {
    pub features: Vec<Column>,
    pub request: Vec<Column>,
    pub params: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_values_and_nulls() {
        let vals = [Value::Float64(1.5), Value::Null, Value::Int64(2)];
        let c = Column::from_values("x", ValueType::Float64, vals.iter());
        assert_eq!(c.nulls, vec![1]);
        assert_eq!(c.value(0), Value::Float64(1.5));
        assert_eq!(c.value(1), Value::Null);
        assert_eq!(c.value(2), Value::Float64(2.0));
        let t = Table { timestamps: vec![1, 2], columns: vec![c] };
        assert!(t.check_shape().unwrap_err().contains("3 rows, expected 2"));
    }
}
