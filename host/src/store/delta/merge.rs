//! One table's rows, from its Delta files and its waiting log entries,
//! merged into one batch sorted by entity, event time and created time:
//! what every read of the lakehouse store answers from.
//!
//! Tables are appended to, never updated in place, so a row written twice
//! (an upsert, or a log entry flushed again after a crash between commit and
//! log trim) is stored twice. The merge keeps, of the rows with one key
//! (entity and event time, and created time in feature tables), the one
//! with the highest `write_seq`: the newest write wins, wherever it is.

use super::layout::{
    CREATED_GIVEN, CREATED_TIMESTAMP, EVENT_MONTH, EVENT_TIMESTAMP, INGESTED_AT, Kind, PROVENANCE, WRITE_SEQ, downcast,
    is_value_column, values_at,
};
use crate::model::{EntityKey, FeatureRow, Provenance, SourceRow, Timestamp};
use crate::store::{StoreError, StoreResult};
use arrow_array::builder::StringBuilder;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
    new_null_array,
};
use arrow_schema::{DataType, Field, Schema};
use deltalake::arrow::compute::{cast, concat_batches, take};
use std::sync::Arc;

/// A table's rows, sorted by (entity, event time, created time, write).
pub(super) struct Merged {
    kind: Kind,
    rows: usize,
    entities: StringArray,
    events: TimestampMicrosecondArray,
    created: Option<TimestampMicrosecondArray>,
    created_given: Option<BooleanArray>,
    ingested: Option<TimestampMicrosecondArray>,
    provenance: Option<StringArray>,
    values: Vec<(String, ArrayRef)>,
    /// Every column in merged order (sharing the arrays above), so a part
    /// can be merged again with newer rows.
    batch: Option<RecordBatch>,
    /// Each entity's rows, built on first use.
    index: std::sync::OnceLock<std::collections::HashMap<String, (usize, usize)>>,
}

fn normalized(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::Dictionary(_, v) => normalized(v),
        DataType::List(item) | DataType::LargeList(item) => {
            DataType::List(Arc::new(Field::new("item", normalized(item.data_type()), true)))
        }
        other => other.clone(),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("merging offline rows: {e}"))
}

/// The batches in one schema: every column any of them has (in first-seen
/// order, the partition column left out), views and dictionaries cast to
/// plain arrays, absent columns null.
fn unify(batches: &[RecordBatch]) -> StoreResult<RecordBatch> {
    let mut fields: Vec<Field> = Vec::new();
    for b in batches {
        for f in b.schema().fields() {
            if f.name() != EVENT_MONTH && !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(Field::new(f.name(), normalized(f.data_type()), true));
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let mut aligned = Vec::with_capacity(batches.len());
    for b in batches {
        let columns = schema
            .fields()
            .iter()
            .map(|f| match b.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => cast(c, f.data_type()).map_err(corrupt),
                None => Ok(new_null_array(f.data_type(), b.num_rows())),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        aligned.push(RecordBatch::try_new(schema.clone(), columns).map_err(corrupt)?);
    }
    concat_batches(&schema, &aligned).map_err(corrupt)
}

fn column<T: Clone + 'static>(batch: &RecordBatch, name: &str) -> StoreResult<Option<T>> {
    batch.column_by_name(name).map(|c| downcast::<T>(c.as_any()).cloned()).transpose()
}

fn required<T: Clone + 'static>(batch: &RecordBatch, name: &str) -> StoreResult<T> {
    column(batch, name)?.ok_or_else(|| StoreError::Corrupt(format!("offline rows have no {name} column")))
}

impl Merged {
    pub(super) fn empty(kind: Kind) -> Self {
        let ts = TimestampMicrosecondArray::from(Vec::<i64>::new());
        Merged {
            kind,
            rows: 0,
            entities: StringArray::from(Vec::<&str>::new()),
            events: ts.clone(),
            created: None,
            created_given: None,
            ingested: None,
            provenance: None,
            values: Vec::new(),
            batch: None,
            index: std::sync::OnceLock::new(),
        }
    }

    /// Merges `batches` (table rows, each with `write_seq`). `dedup`: keep
    /// only the newest write of each key; otherwise every write, oldest
    /// first within a key.
    pub(super) fn new(kind: Kind, batches: &[RecordBatch], dedup: bool) -> StoreResult<Self> {
        let batches: Vec<RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).cloned().collect();
        if batches.is_empty() {
            return Ok(Merged::empty(kind));
        }
        let all = unify(&batches)?;
        let schema = all.schema();
        let first = batches[0].schema();
        let join_keys: Vec<String> =
            first.fields().iter().take_while(|f| f.name() != EVENT_TIMESTAMP).map(|f| f.name().clone()).collect();
        if join_keys.is_empty() {
            return Err(StoreError::Corrupt("offline rows have no join key columns".into()));
        }
        let entities = entity_keys(&all, &join_keys)?;
        let events: TimestampMicrosecondArray = required(&all, EVENT_TIMESTAMP)?;
        let created: Option<TimestampMicrosecondArray> = column(&all, CREATED_TIMESTAMP)?;
        let seqs: Int64Array = required(&all, WRITE_SEQ)?;

        // Sorted as (entity, event time, created time, write) with the row
        // last, so equal keys keep the order they came in: of a key written
        // twice in one call the later row wins, as a row-by-row upsert.
        // Entities compare by their rank among the distinct entities, so the
        // sort compares integers, not strings.
        let ranks = entity_ranks(&entities);
        let created_of = |i: usize| match (&created, kind) {
            (Some(c), Kind::Features) => c.value(i),
            _ => 0,
        };
        let mut keyed: Vec<(u32, i64, i64, i64, u32)> =
            (0..all.num_rows()).map(|i| (ranks[i], events.value(i), created_of(i), seqs.value(i), i as u32)).collect();
        keyed.sort_unstable();
        let same_key =
            |a: &(u32, i64, i64, i64, u32), b: &(u32, i64, i64, i64, u32)| (a.0, a.1, a.2) == (b.0, b.1, b.2);
        let order: Vec<u32> = if dedup {
            // Sorted by key then write: the last of each run is the newest.
            keyed
                .iter()
                .enumerate()
                .filter(|(i, k)| keyed.get(i + 1).is_none_or(|next| !same_key(k, next)))
                .map(|(_, k)| k.4)
                .collect()
        } else {
            keyed.iter().map(|k| k.4).collect()
        };
        let indices = UInt32Array::from(order);
        let pick = |c: &ArrayRef| take(c.as_ref(), &indices, None).map_err(corrupt);
        let sorted = RecordBatch::try_new(schema.clone(), all.columns().iter().map(pick).collect::<StoreResult<_>>()?)
            .map_err(corrupt)?;
        let entities = downcast::<StringArray>(take(&entities, &indices, None).map_err(corrupt)?.as_any())?.clone();
        let values = schema
            .fields()
            .iter()
            .zip(sorted.columns())
            .filter(|(f, _)| is_value_column(f.name(), &join_keys))
            .map(|(f, c)| (f.name().clone(), c.clone()))
            .collect();
        Ok(Merged {
            kind,
            rows: sorted.num_rows(),
            entities,
            events: required(&sorted, EVENT_TIMESTAMP)?,
            created: column(&sorted, CREATED_TIMESTAMP)?,
            created_given: column(&sorted, CREATED_GIVEN)?,
            ingested: column(&sorted, INGESTED_AT)?,
            provenance: column(&sorted, PROVENANCE)?,
            values,
            batch: Some(sorted),
            index: std::sync::OnceLock::new(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.rows
    }

    pub(super) fn entity(&self, row: usize) -> &str {
        self.entities.value(row)
    }

    pub(super) fn event(&self, row: usize) -> i64 {
        self.events.value(row)
    }

    pub(super) fn created(&self, row: usize) -> i64 {
        self.created.as_ref().map_or(0, |c| c.value(row))
    }

    pub(super) fn created_given(&self, row: usize) -> bool {
        self.created_given.as_ref().is_some_and(|c| !c.is_null(row) && c.value(row))
    }

    pub(super) fn ingested(&self, row: usize) -> i64 {
        self.ingested.as_ref().map_or(0, |c| c.value(row))
    }

    /// The value columns, by name.
    pub(super) fn value_columns(&self) -> &[(String, ArrayRef)] {
        &self.values
    }

    /// Each row's provenance text (feature tables).
    pub(super) fn provenance(&self) -> Option<&StringArray> {
        self.provenance.as_ref()
    }

    /// The rows of each entity: `(first, end)` index ranges, in key order.
    pub(super) fn runs(&self) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=self.rows {
            if i == self.rows || self.entity(i) != self.entity(start) {
                runs.push((start, i));
                start = i;
            }
        }
        runs
    }

    /// The rows of `entity` as an index range.
    pub(super) fn rows_of(&self, entity: &str) -> Option<(usize, usize)> {
        let index = self.index.get_or_init(|| {
            self.runs().into_iter().map(|(start, end)| (self.entity(start).to_string(), (start, end))).collect()
        });
        index.get(entity).copied()
    }

    /// Every row, as merged (none for an empty merge).
    pub(super) fn batch(&self) -> Option<&RecordBatch> {
        self.batch.as_ref()
    }

    /// The memory its arrays hold.
    pub(super) fn bytes(&self) -> usize {
        self.batch.as_ref().map_or(0, RecordBatch::get_array_memory_size)
    }

    /// The rows of `entity`, sharing this merge's arrays.
    pub(super) fn batch_of(&self, entity: &str) -> Option<RecordBatch> {
        let (start, end) = self.rows_of(entity)?;
        self.batch.as_ref().map(|b| b.slice(start, end - start))
    }

    /// Whether two rows hold the same values (the value columns only).
    pub(super) fn same_values(&self, a: usize, b: usize) -> StoreResult<bool> {
        Ok(values_at(&self.values, a)? == values_at(&self.values, b)?)
    }

    pub(super) fn feature_row(&self, row: usize) -> StoreResult<FeatureRow> {
        debug_assert_eq!(self.kind, Kind::Features);
        let provenance = match &self.provenance {
            Some(p) if !p.is_null(row) => Some(
                Provenance::parse(p.value(row)).map_err(|e| StoreError::Corrupt(format!("stored provenance: {e}")))?,
            ),
            _ => None,
        };
        Ok(FeatureRow {
            entity: EntityKey(self.entity(row).to_string()),
            event_ts: Timestamp(self.event(row)),
            created: Timestamp(self.created(row)),
            created_given: self.created_given(row),
            values: values_at(&self.values, row)?,
            provenance,
        })
    }

    pub(super) fn source_row(&self, row: usize) -> StoreResult<SourceRow> {
        Ok(SourceRow {
            entity: EntityKey(self.entity(row).to_string()),
            ts: Timestamp(self.event(row)),
            values: values_at(&self.values, row)?,
        })
    }
}

/// Each row's entity's rank in the sorted order of the distinct entities.
fn entity_ranks(entities: &StringArray) -> Vec<u32> {
    let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let row_ids: Vec<u32> = (0..entities.len())
        .map(|i| {
            let next = ids.len() as u32;
            *ids.entry(entities.value(i)).or_insert(next)
        })
        .collect();
    let mut names: Vec<(&str, u32)> = ids.into_iter().collect();
    names.sort_unstable();
    let mut rank_of = vec![0u32; names.len()];
    for (rank, (_, id)) in names.iter().enumerate() {
        rank_of[*id as usize] = rank as u32;
    }
    row_ids.into_iter().map(|id| rank_of[id as usize]).collect()
}

/// Each row's entity key in wafer's text form: the join key itself, or the
/// join keys joined with U+001F.
fn entity_keys(batch: &RecordBatch, join_keys: &[String]) -> StoreResult<StringArray> {
    let columns: Vec<StringArray> = join_keys.iter().map(|k| required(batch, k)).collect::<StoreResult<_>>()?;
    if let [only] = columns.as_slice() {
        return Ok(only.clone());
    }
    let mut keys = StringBuilder::new();
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        text.clear();
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                text.push(crate::model::entity_key::KEY_SEPARATOR);
            }
            text.push_str(c.value(row));
        }
        keys.append_value(&text);
    }
    Ok(keys.finish())
}
