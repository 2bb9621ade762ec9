//! What each offline read answers, computed from a table's merged rows
//! (sorted by entity, event time, created time; one row per key unless
//! the read asked for every write).

use super::layout::{downcast, value_at};
use super::merge::Merged;
use crate::model::{
    Column, ColumnValues, EntityKey, FeatureRow, FeatureStatistics, FreshnessCounts, SourceRow, Table, Timestamp,
    Value, ValueType,
};
use crate::store::sql::{interpolate, percentile_ranks};
use crate::store::{AsOfRules, SourceRange, StoreResult};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_schema::DataType;

/// The index range of `entity`'s rows `range` asks for.
fn source_range(merged: &Merged, entity: &EntityKey, range: SourceRange) -> (usize, usize) {
    let Some((start, end)) = merged.rows_of(entity.as_str()) else {
        return (0, 0);
    };
    let until = range.until.map_or(i64::MAX, |t| t.0);
    // Sorted by time within the entity: the rows up to `until` end here.
    let end = start + (start..end).take_while(|&i| merged.event(i) <= until).count();
    let start = match range.last {
        Some(n) => end.saturating_sub(n as usize).max(start),
        None => start,
    };
    (start, end)
}

pub(super) fn source_rows(merged: &Merged, entity: &EntityKey, range: SourceRange) -> StoreResult<Vec<SourceRow>> {
    let (start, end) = source_range(merged, entity, range);
    (start..end).map(|i| merged.source_row(i)).collect()
}

/// [`source_rows`] as a table of `fields`, sliced from the merged columns.
pub(super) fn source_table(
    merged: &Merged,
    entity: &EntityKey,
    range: SourceRange,
    fields: &[(String, ValueType)],
) -> StoreResult<Table> {
    let (start, end) = source_range(merged, entity, range);
    let columns = fields
        .iter()
        .map(|(name, t)| {
            let array = merged.value_columns().iter().find(|(n, _)| n == name).map(|(_, a)| a);
            table_column(name, *t, array, start, end)
        })
        .collect::<StoreResult<_>>()?;
    Ok(Table { timestamps: (start..end).map(|i| merged.event(i)).collect(), columns })
}

/// Rows `start..end` of a merged value column as a transform's column of
/// type `t`, as [`Column::from_values`] builds it from the rows' values
/// (null slots hold the type's default).
fn table_column(name: &str, t: ValueType, array: Option<&ArrayRef>, start: usize, end: usize) -> StoreResult<Column> {
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

/// Each entity with its newest event time, in key order.
pub(super) fn newest_per_entity(merged: &Merged) -> Vec<(EntityKey, Timestamp)> {
    merged
        .runs()
        .into_iter()
        .map(|(start, end)| (EntityKey(merged.entity(start).to_string()), Timestamp(merged.event(end - 1))))
        .collect()
}

/// Entities whose rows changed after `after`, each with the earliest event
/// time among the changed rows. `merged` holds every write, oldest first
/// within a key. A key changed when its newest write came after `after` and
/// holds other values than the write current at `after` (or there was
/// none): rewriting identical rows changes nothing, as in the SQL stores.
pub(super) fn changes_after(merged: &Merged, after: Timestamp) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
    let mut changed: Vec<(EntityKey, Timestamp)> = Vec::new();
    let mut i = 0;
    while i < merged.len() {
        let mut end = i + 1;
        while end < merged.len() && merged.entity(end) == merged.entity(i) && merged.event(end) == merged.event(i) {
            end += 1;
        }
        let newest = end - 1;
        if merged.ingested(newest) > after.0 {
            let before = (i..newest).rev().find(|&w| merged.ingested(w) <= after.0);
            let differs = match before {
                Some(w) => !merged.same_values(w, newest)?,
                None => true,
            };
            if differs {
                let (entity, event) = (merged.entity(i), Timestamp(merged.event(i)));
                match changed.last_mut() {
                    // Events ascend within an entity: the first one is the earliest.
                    Some((k, _)) if k.as_str() == entity => {}
                    _ => changed.push((EntityKey(entity.to_string()), event)),
                }
            }
        }
        i = end;
    }
    Ok(changed)
}

/// The newest row of each entity, aligned with `entities`.
pub(super) fn latest(merged: &Merged, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>> {
    entities
        .iter()
        .map(|e| merged.rows_of(e.as_str()).map(|(_, end)| merged.feature_row(end - 1)).transpose())
        .collect()
}

/// The row known at each point, aligned with `points`: within the entity's
/// rows up to the point's time, the newest (event, created) inside the
/// rules' bounds.
pub(super) fn as_of(
    merged: &Merged,
    points: &[(EntityKey, Timestamp)],
    rules: AsOfRules,
) -> StoreResult<Vec<Option<FeatureRow>>> {
    let mut out = Vec::with_capacity(points.len());
    for (entity, at) in points {
        let Some((start, end)) = merged.rows_of(entity.as_str()) else {
            out.push(None);
            continue;
        };
        let (earliest, created_max) = rules.bounds(*at);
        // Rows after `at` start at the partition point of the sorted run.
        let upper = start + partition_point(start, end, |i| merged.event(i) <= at.0);
        let found = (start..upper)
            .rev()
            .take_while(|&i| merged.event(i) >= earliest)
            .find(|&i| merged.created(i) <= created_max || !merged.created_given(i));
        out.push(found.map(|i| merged.feature_row(i)).transpose()?);
    }
    Ok(out)
}

/// How many of `start..end` satisfy `pred`, which holds for a prefix.
fn partition_point(start: usize, end: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (start, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo - start
}

pub(super) fn freshness(
    merged: &Merged,
    stale_before: Option<Timestamp>,
    expired_before: Option<Timestamp>,
) -> FreshnessCounts {
    let newest: Vec<i64> = merged.runs().into_iter().map(|(_, end)| merged.event(end - 1)).collect();
    let expired_before = expired_before.map_or(i64::MIN, |t| t.0);
    let stale_before = stale_before.map_or(i64::MIN, |t| t.0);
    let expired = newest.iter().filter(|&&t| t < expired_before).count() as u64;
    let stale = newest.iter().filter(|&&t| t >= expired_before && t < stale_before).count() as u64;
    let entities = newest.len() as u64;
    FreshnessCounts {
        entities,
        fresh: entities.saturating_sub(expired + stale),
        stale,
        expired,
        newest_event_timestamp: newest.iter().max().copied().map(Timestamp),
        oldest_event_timestamp: newest.iter().min().copied().map(Timestamp),
    }
}

/// Statistics of each named feature over every row; `numeric` features get
/// mean, sample standard deviation, extremes and interpolated percentiles.
pub(super) fn statistics(merged: &Merged, features: &[(String, bool)]) -> StoreResult<Vec<FeatureStatistics>> {
    let total = merged.len() as u64;
    let mut out = Vec::with_capacity(features.len());
    for (name, numeric) in features {
        let Some((_, column)) = merged.value_columns().iter().find(|(n, _)| n == name) else {
            out.push(FeatureStatistics { count: 0, nulls: total, ..FeatureStatistics::default() });
            continue;
        };
        let count = (column.len() - column.null_count()) as u64;
        let mut s = FeatureStatistics { count, nulls: total - count, ..FeatureStatistics::default() };
        let numbers: Option<Vec<f64>> = if let Some(f) = column.as_any().downcast_ref::<Float64Array>() {
            Some(f.iter().flatten().collect())
        } else {
            column.as_any().downcast_ref::<Int64Array>().map(|i| i.iter().flatten().map(|v| v as f64).collect())
        };
        if let (true, Some(mut values)) = (*numeric, numbers)
            && !values.is_empty()
        {
            let n = values.len();
            let mean = values.iter().sum::<f64>() / n as f64;
            s.mean = Some(mean);
            if n > 1 {
                // Deviations from the mean, so large values keep precision.
                let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
                s.std = Some((squares / (n - 1) as f64).sqrt());
            }
            values.sort_unstable_by(f64::total_cmp);
            s.min = values.first().copied();
            s.max = values.last().copied();
            let ranks = percentile_ranks(n as u64, &[0.5, 0.95]);
            let p = |k: usize| {
                let (rank, frac) = ranks[k];
                interpolate(values.get(rank).copied(), values.get(rank + 1).copied(), frac)
            };
            s.p50 = p(0);
            s.p95 = p(1);
        }
        out.push(s);
    }
    Ok(out)
}
