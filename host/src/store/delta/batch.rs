//! Feature rows as Arrow columns: the form a columnar write (a Parquet or
//! Arrow IPC body) takes to the offline store, so a bulk load reaches its
//! Delta table without a row map per row.
//!
//! The columns are a log payload's (`layout.rs`): the join keys (utf8),
//! `event_timestamp`, `created_timestamp`, `created_given`, one column per
//! feature in the definition's order and type, then `provenance`. Stores
//! that keep rows (PostgreSQL) decode it with [`FeatureBatch::rows`].

use super::layout::{self, Kind};
use crate::model::{EntityKey, FeatureRow, Provenance, Timestamp, Value, ValueType};
use crate::store::{StoreError, StoreResult, TableDef};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::compute::concat_batches;

/// Validated feature rows of one group, as one record batch in the payload
/// layout of its table.
#[derive(Debug, Clone)]
pub struct FeatureBatch {
    batch: RecordBatch,
    key_count: usize,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("building feature columns: {e}"))
}

impl FeatureBatch {
    /// Rows from `parts`, each one body batch's columns in payload order
    /// (join keys, event and created time, created-given, the features of
    /// `def` in order, provenance), concatenated. The columns must have the
    /// payload's types; keys and times no nulls.
    pub fn new(def: &TableDef, parts: Vec<Vec<ArrayRef>>) -> StoreResult<Self> {
        let schema = layout::payload_schema(Kind::Features, def)?;
        let batches = parts
            .into_iter()
            .map(|columns| RecordBatch::try_new(schema.clone(), columns).map_err(corrupt))
            .collect::<StoreResult<Vec<_>>>()?;
        let batch = match batches.len() {
            1 => batches.into_iter().next().expect("one batch"),
            _ => concat_batches(&schema, &batches).map_err(corrupt)?,
        };
        Ok(FeatureBatch { batch, key_count: def.join_keys.len() })
    }

    /// `parts`, one after the other (each of `def`).
    pub fn concat<'a>(def: &TableDef, parts: impl IntoIterator<Item = &'a FeatureBatch>) -> StoreResult<Self> {
        let schema = layout::payload_schema(Kind::Features, def)?;
        let batch = concat_batches(&schema, parts.into_iter().map(|p| &p.batch)).map_err(corrupt)?;
        Ok(FeatureBatch { batch, key_count: def.join_keys.len() })
    }

    /// The rows as columns.
    pub fn from_rows(def: &TableDef, rows: &[FeatureRow]) -> StoreResult<Self> {
        Ok(FeatureBatch { batch: layout::encode_features(def, rows)?, key_count: def.join_keys.len() })
    }

    /// One feature column of type `t` from typed values (`None`: null).
    pub fn column(def: &TableDef, name: &str, t: ValueType, values: &[Option<Value>]) -> StoreResult<ArrayRef> {
        layout::value_column(&def.name, name, t, values.iter().map(Option::as_ref))
    }

    /// A feature column of type `t` with `n` nulls.
    pub fn nulls(t: ValueType, n: usize) -> ArrayRef {
        arrow_array::new_null_array(&layout::arrow_type(t), n)
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Every row, in order.
    pub fn rows(&self) -> StoreResult<Vec<FeatureRow>> {
        let columns = Columns::of(self)?;
        (0..self.len()).map(|i| columns.row(i)).collect()
    }

    /// Of each entity's rows the one an online store keeps after writing
    /// them all in order (latest event, then latest created, the later row
    /// among equals), in order of each entity's first row.
    pub fn newest_per_entity(&self) -> StoreResult<Vec<FeatureRow>> {
        let columns = Columns::of(self)?;
        let newest = crate::model::newest_per_entity(self.len(), |i| {
            (columns.entity(i), columns.events.value(i), columns.created.value(i))
        });
        newest.into_iter().map(|i| columns.row(i)).collect()
    }
}

/// A batch's columns, typed.
struct Columns<'a> {
    keys: Vec<&'a StringArray>,
    events: &'a TimestampMicrosecondArray,
    created: &'a TimestampMicrosecondArray,
    given: &'a BooleanArray,
    values: Vec<(String, ArrayRef)>,
    provenance: &'a StringArray,
    /// The last provenance parsed, by row: a batch's rows mostly share one.
    parsed: std::cell::RefCell<Option<(usize, Provenance)>>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a FeatureBatch) -> StoreResult<Self> {
        let b = &batch.batch;
        let k = batch.key_count;
        let at = |i: usize| b.column(i).as_any();
        let keys = (0..k).map(|i| layout::downcast::<StringArray>(at(i))).collect::<StoreResult<Vec<_>>>()?;
        let last = b.num_columns() - 1;
        let values = (k + 3..last).map(|i| (b.schema().field(i).name().clone(), b.column(i).clone())).collect();
        Ok(Columns {
            keys,
            events: layout::downcast(at(k))?,
            created: layout::downcast(at(k + 1))?,
            given: layout::downcast(at(k + 2))?,
            values,
            provenance: layout::downcast(at(last))?,
            parsed: std::cell::RefCell::new(None),
        })
    }

    fn entity(&self, row: usize) -> EntityKey {
        match self.keys.as_slice() {
            [only] => EntityKey(only.value(row).to_string()),
            keys => EntityKey::from_parts(&keys.iter().map(|k| k.value(row)).collect::<Vec<_>>()),
        }
    }

    fn provenance_at(&self, row: usize) -> StoreResult<Provenance> {
        let text = self.provenance.value(row);
        let mut parsed = self.parsed.borrow_mut();
        if let Some((seen, p)) = parsed.as_ref()
            && self.provenance.value(*seen) == text
        {
            return Ok(p.clone());
        }
        let p =
            Provenance::parse(text).map_err(|e| StoreError::Corrupt(format!("provenance of a feature row: {e}")))?;
        *parsed = Some((row, p.clone()));
        Ok(p)
    }

    fn row(&self, row: usize) -> StoreResult<FeatureRow> {
        let provenance = match self.provenance.is_null(row) {
            true => None,
            false => Some(self.provenance_at(row)?),
        };
        Ok(FeatureRow {
            entity: self.entity(row),
            event_ts: Timestamp(self.events.value(row)),
            created: Timestamp(self.created.value(row)),
            created_given: self.given.value(row),
            values: layout::values_at(&self.values, row)?,
            provenance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn def() -> TableDef {
        TableDef { name: "g".into(), join_keys: vec!["id".into()], columns: vec![("x".into(), ValueType::Float64)] }
    }

    fn row(entity: &str, event: i64, created: i64, x: f64) -> FeatureRow {
        FeatureRow {
            entity: EntityKey(entity.into()),
            event_ts: Timestamp(event),
            created: Timestamp(created),
            created_given: false,
            values: BTreeMap::from([("x".to_string(), Value::Float64(x))]),
            provenance: None,
        }
    }

    #[test]
    fn rows_read_back_as_they_were_written() {
        let by = |v: &str| Some(Provenance::parse(&format!("t@{v}#{}", "ab".repeat(32))).unwrap());
        let mut rows = vec![row("a", 1, 5, 1.5), row("b", 2, 6, -2.0), row("c", 3, 7, 0.0), row("d", 4, 8, 1.0)];
        (rows[1].provenance, rows[2].provenance, rows[3].provenance) = (by("1.0.0"), by("1.0.0"), by("2.0.0"));
        assert_eq!(FeatureBatch::from_rows(&def(), &rows).unwrap().rows().unwrap(), rows);
    }

    #[test]
    fn the_newest_row_of_an_entity_is_the_one_a_row_by_row_online_write_keeps() {
        let rows = vec![
            row("a", 10, 1, 1.0),
            row("b", 5, 1, 2.0),
            // An older event never wins, whatever its created time.
            row("a", 9, 99, 3.0),
            // A correction of the same event created later wins.
            row("a", 10, 2, 4.0),
            // Equal event and created: the later row wins, as a row-by-row write.
            row("b", 5, 1, 5.0),
        ];
        let newest = FeatureBatch::from_rows(&def(), &rows).unwrap().newest_per_entity().unwrap();
        assert_eq!(newest, vec![rows[3].clone(), rows[4].clone()]);
    }
}
