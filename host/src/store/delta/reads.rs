//! What each offline read answers, computed from a table's merged rows
//! (sorted by entity, event time, created time; one row per key unless
//! the read asked for every write).

use super::answer::{AsOfColumns, table_column};
use super::merge::Merged;
use crate::model::{EntityKey, FeatureRow, FreshnessCounts, SourceRow, Table, Timestamp, ValueType};
use crate::store::{AsOfPoints, AsOfRules, SourceRange, StoreResult};
use arrow_array::UInt32Array;

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
    points
        .iter()
        .map(|(entity, at)| found_at(merged, entity, *at, rules).map(|i| merged.feature_row(i)).transpose())
        .collect()
}

/// [`as_of`] as columns of the asked features (and provenance), gathered
/// from the merged columns by the found rows' indices.
pub(super) fn as_of_columns(merged: &Merged, points: AsOfPoints<'_>) -> StoreResult<AsOfColumns> {
    let found: UInt32Array = points
        .keys
        .iter()
        .zip(points.times)
        .map(|(entity, at)| found_at(merged, entity, *at, points.rules).map(|i| i as u32))
        .collect();
    AsOfColumns::gather(merged, &found, points.features, points.provenance)
}

/// The index of the row known at `at` for `entity`, if any.
fn found_at(merged: &Merged, entity: &EntityKey, at: Timestamp, rules: AsOfRules) -> Option<usize> {
    let (start, end) = merged.rows_of(entity.as_str())?;
    let (earliest, created_max) = rules.bounds(at);
    // Rows after `at` start at the partition point of the sorted run.
    let upper = start + partition_point(start, end, |i| merged.event(i) <= at.0);
    (start..upper)
        .rev()
        .take_while(|&i| merged.event(i) >= earliest)
        .find(|&i| merged.created(i) <= created_max || !merged.created_given(i))
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
