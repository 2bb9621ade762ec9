//! A batch transform's output as the group's feature columns: what
//! materialization writes and computing on a miss serves, built column by
//! column from the output table without a row map per row.
//!
//! Of the output's rows, those where every feature is null (warm-up rows)
//! are left out, and so are rows at or before `after` in incremental runs.
//! A non-finite float is null, as everywhere a value leaves a transform.

use super::ServiceResult;
use crate::model::{Column, ColumnValues, EntityKey, FeatureGroup, Provenance, Table, Timestamp, ValueType};
use crate::store::{FeatureBatch, TableDef};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use std::sync::Arc;

/// The feature rows of `entity` the transform's `output` holds, each
/// created at `created` (the job's clock, never a writer's) and naming the
/// version that computed it.
pub(crate) fn feature_batch(
    group: &FeatureGroup,
    def: &TableDef,
    entity: &EntityKey,
    output: &Table,
    created: Timestamp,
    after: Option<Timestamp>,
    provenance: &Provenance,
) -> ServiceResult<FeatureBatch> {
    let columns: Vec<Option<&Column>> = group.features.iter().map(|f| output.column(&f.name)).collect();
    let kept: Vec<usize> = (0..output.rows())
        .filter(|&i| after.is_none_or(|a| output.timestamps[i] > a.0))
        .filter(|&i| columns.iter().flatten().any(|c| !c.is_null(i)))
        .collect();
    let n = kept.len();
    let mut arrays: Vec<ArrayRef> = entity
        .parts()
        .map(|part| Arc::new(StringArray::from_iter_values(std::iter::repeat_n(part, n))) as ArrayRef)
        .collect();
    arrays.push(timestamps(kept.iter().map(|&i| output.timestamps[i])));
    arrays.push(timestamps(std::iter::repeat_n(created.0, n)));
    arrays.push(Arc::new(BooleanArray::from(vec![false; n])));
    for (feature, column) in group.features.iter().zip(&columns) {
        arrays.push(match column {
            Some(c) => feature_column(def, &feature.name, feature.value_type, c, &kept)?,
            None => FeatureBatch::nulls(feature.value_type, n),
        });
    }
    let provenance = provenance.to_string();
    arrays.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(provenance.as_str(), n))));
    Ok(FeatureBatch::new(def, vec![arrays])?)
}

fn timestamps(micros: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(micros).with_timezone("UTC"))
}

/// The `kept` rows of an output column as a feature column of type `t`.
fn feature_column(def: &TableDef, name: &str, t: ValueType, c: &Column, kept: &[usize]) -> ServiceResult<ArrayRef> {
    let valid = |i: usize| !c.is_null(i);
    Ok(match (&c.values, t) {
        (ColumnValues::Float64(v), ValueType::Float64) => {
            Arc::new(kept.iter().map(|&i| valid(i).then(|| v[i])).collect::<Float64Array>())
        }
        (ColumnValues::Int64(v), ValueType::Int64) => {
            Arc::new(kept.iter().map(|&i| valid(i).then(|| v[i])).collect::<Int64Array>())
        }
        (ColumnValues::Bool(v), ValueType::Bool) => {
            Arc::new(kept.iter().map(|&i| valid(i).then(|| v[i])).collect::<BooleanArray>())
        }
        (ColumnValues::Text(v), ValueType::String) => {
            Arc::new(kept.iter().map(|&i| valid(i).then(|| v[i].as_str())).collect::<StringArray>())
        }
        _ => {
            let values: Vec<_> = kept.iter().map(|&i| Some(c.value(i)).filter(|v| !v.is_null())).collect();
            FeatureBatch::column(def, name, t, &values)?
        }
    })
}
