//! Point-in-time values as Arrow columns: what
//! [`OfflineStore::feature_columns_as_of`](crate::store::OfflineStore::feature_columns_as_of)
//! answers and training data is encoded from. One array per feature,
//! gathered from the table's merged columns by index, rather than a row map
//! per point.
//!
//! Columns have the tables' types (`layout::arrow_type`): float64, int64,
//! boolean, utf8, and lists of float64 or utf8.

use super::layout::{self, downcast};
use super::merge::Merged;
use crate::model::{Column, ColumnValues, FeatureRow, Provenance, Value, ValueType};
use crate::store::{StoreError, StoreResult};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, UInt32Array, new_null_array};
use arrow_schema::DataType;
use deltalake::arrow::compute::take;

/// Values found for a run of points, aligned with them.
#[derive(Debug, Clone)]
pub struct AsOfColumns {
    /// One per asked feature, in order; null where no row was found or the
    /// row has no value.
    features: Vec<ArrayRef>,
    /// The found row's provenance (`transform@version#sha256`); null where
    /// no row was found or a client pushed it. `None` when not asked for.
    provenance: Option<StringArray>,
    len: usize,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("gathering point-in-time values: {e}"))
}

impl AsOfColumns {
    /// The columns of rows found one by one (the row-keeping stores).
    pub fn from_rows(rows: &[Option<FeatureRow>], features: &[(String, ValueType)], provenance: bool) -> Self {
        let features = features
            .iter()
            .map(|(name, t)| feature_array(*t, rows.iter().map(|r| r.as_ref().and_then(|r| r.values.get(name)))))
            .collect();
        let provenance = provenance.then(|| {
            rows.iter()
                .map(|r| r.as_ref().and_then(|r| r.provenance.as_ref()).map(Provenance::to_string))
                .collect::<StringArray>()
        });
        AsOfColumns { features, provenance, len: rows.len() }
    }

    /// The rows at `found` (null: none) of a merge's columns.
    pub(super) fn gather(
        merged: &Merged,
        found: &UInt32Array,
        features: &[(String, ValueType)],
        provenance: bool,
    ) -> StoreResult<Self> {
        let len = found.len();
        let features = features
            .iter()
            .map(|(name, t)| {
                let want = layout::arrow_type(*t);
                match merged.value_columns().iter().find(|(n, _)| n == name) {
                    None => Ok(new_null_array(&want, len)),
                    Some((_, a)) if *a.data_type() == want => take(a.as_ref(), found, None).map_err(corrupt),
                    // Stored under another type (the group was redefined):
                    // the values that are of the declared type.
                    Some((_, a)) => {
                        let values = found
                            .iter()
                            .map(|i| i.map(|i| layout::value_at(a.as_ref(), i as usize)).transpose())
                            .collect::<StoreResult<Vec<_>>>()?;
                        Ok(feature_array(*t, values.iter().map(|v| v.as_ref().and_then(Option::as_ref))))
                    }
                }
            })
            .collect::<StoreResult<_>>()?;
        let provenance = match (provenance, merged.provenance()) {
            (false, _) => None,
            (true, None) => Some(StringArray::new_null(len)),
            (true, Some(p)) => Some(downcast::<StringArray>(take(p, found, None).map_err(corrupt)?.as_any())?.clone()),
        };
        Ok(AsOfColumns { features, provenance, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `k`th asked feature's values.
    pub fn feature(&self, k: usize) -> &ArrayRef {
        &self.features[k]
    }

    /// The provenance of each point's row, if it was asked for.
    pub fn provenance(&self) -> Option<&StringArray> {
        self.provenance.as_ref()
    }
}

/// A column of type `t` from values, `None` (or a value of another type)
/// being null: transform output and the row-keeping stores' rows.
pub fn feature_array<'a>(t: ValueType, values: impl Iterator<Item = Option<&'a Value>>) -> ArrayRef {
    layout::lenient_column(t, values)
}

/// The Arrow type the tables store a feature of type `t` in, and training
/// data answers it in.
pub fn array_type(t: ValueType) -> DataType {
    layout::arrow_type(t)
}

/// The value at `row` of one of these columns; `None` for null.
pub fn value_at(column: &dyn Array, row: usize) -> StoreResult<Option<Value>> {
    layout::value_at(column, row)
}

/// Rows `start..end` of a value column as a transform's column of type
/// `t`, as [`Column::from_values`] builds it from the rows' values (null
/// slots hold the type's default). `None`: a column of nulls.
pub fn table_column(
    name: &str,
    t: ValueType,
    array: Option<&ArrayRef>,
    start: usize,
    end: usize,
) -> StoreResult<Column> {
    let Some(a) = array else {
        return Ok(Column::from_values(name, t, std::iter::repeat_n(&Value::Null, end - start)));
    };
    let nulls = || (start..end).filter(|&i| a.is_null(i)).map(|i| (i - start) as u32).collect();
    let values = match (t, a.data_type()) {
        (ValueType::Float64, DataType::Float64) => {
            let f = downcast::<Float64Array>(a.as_any())?;
            ColumnValues::Float64((start..end).map(|i| if f.is_null(i) { 0.0 } else { f.value(i) }).collect())
        }
        (ValueType::Int64, DataType::Int64) => {
            let v = downcast::<Int64Array>(a.as_any())?;
            ColumnValues::Int64((start..end).map(|i| if v.is_null(i) { 0 } else { v.value(i) }).collect())
        }
        (ValueType::Bool, DataType::Boolean) => {
            let v = downcast::<BooleanArray>(a.as_any())?;
            ColumnValues::Bool((start..end).map(|i| !v.is_null(i) && v.value(i)).collect())
        }
        (ValueType::String, DataType::Utf8) => {
            let v = downcast::<StringArray>(a.as_any())?;
            ColumnValues::Text((start..end).map(|i| if v.is_null(i) { "" } else { v.value(i) }.to_string()).collect())
        }
        _ => {
            let values = (start..end).map(|i| value_at(a.as_ref(), i)).collect::<StoreResult<Vec<_>>>()?;
            return Ok(Column::from_values(name, t, values.iter().map(|v| v.as_ref().unwrap_or(&Value::Null))));
        }
    };
    Ok(Column { name: name.to_string(), values, nulls: nulls() })
}
