//! How an offline table's rows are laid out as Arrow columns, the one
//! layout the write log's payloads, the Delta tables and every read share.
//!
//! A table's columns, in order (what outside engines see):
//!
//! | column | type | in |
//! |---|---|---|
//! | each join key of the entity, named as declared | utf8 | both |
//! | `event_timestamp` | timestamp[us, UTC] | both |
//! | `created_timestamp` | timestamp[us, UTC] | feature tables |
//! | `created_given` | bool: the writer gave the created time | feature tables |
//! | each feature or field, named as declared | its declared type | both |
//! | `provenance` | utf8 `transform@version#sha256`, null for pushed rows | feature tables |
//! | `ingested_at` | timestamp[us, UTC]: when wafer acknowledged the row | source tables |
//! | `write_seq` | int64: orders writes; of rows with one key the highest wins | both |
//! | `event_month` | date32, the first day of the event's month (partition) | both |
//!
//! The join keys come first and `event_timestamp` right after them, which
//! is how a reader tells them apart from values without other metadata.
//! A log payload holds the columns up to `provenance`; the log entry's
//! sequence number and time supply `write_seq` and `ingested_at`, and
//! `event_month` follows from the event time.

use crate::model::{EntityKey, FeatureRow, SourceRow, Value, ValueType};
use crate::store::{StoreError, StoreResult, TableDef};
use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) const EVENT_TIMESTAMP: &str = "event_timestamp";
pub(super) const CREATED_TIMESTAMP: &str = "created_timestamp";
pub(super) const CREATED_GIVEN: &str = "created_given";
pub(super) const PROVENANCE: &str = "provenance";
pub(super) const INGESTED_AT: &str = "ingested_at";
pub(super) const WRITE_SEQ: &str = "write_seq";
pub(super) const EVENT_MONTH: &str = "event_month";

const RESERVED: [&str; 7] =
    [EVENT_TIMESTAMP, CREATED_TIMESTAMP, CREATED_GIVEN, PROVENANCE, INGESTED_AT, WRITE_SEQ, EVENT_MONTH];

/// Which of the two kinds of offline table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Source,
    Features,
}

impl Kind {
    /// The table's path under the offline root, which also names it in the
    /// write log.
    pub(super) fn path(self, name: &str) -> String {
        match self {
            Kind::Source => format!("sources/{name}"),
            Kind::Features => format!("features/{name}"),
        }
    }

    pub(super) fn of_path(path: &str) -> Option<(Kind, &str)> {
        if let Some(name) = path.strip_prefix("sources/") {
            Some((Kind::Source, name))
        } else {
            path.strip_prefix("features/").map(|name| (Kind::Features, name))
        }
    }
}

pub(super) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(super) fn arrow_type(t: ValueType) -> DataType {
    match t {
        ValueType::Float64 => DataType::Float64,
        ValueType::Int64 => DataType::Int64,
        ValueType::Bool => DataType::Boolean,
        ValueType::String => DataType::Utf8,
        ValueType::Float64List => DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
        ValueType::StringList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    }
}

/// The columns of a log payload for `def`, refusing names that would
/// collide with the table's own columns.
pub(super) fn payload_schema(kind: Kind, def: &TableDef) -> StoreResult<SchemaRef> {
    let mut fields: Vec<Field> = def.join_keys.iter().map(|k| Field::new(k, DataType::Utf8, false)).collect();
    fields.push(Field::new(EVENT_TIMESTAMP, timestamp_type(), false));
    if kind == Kind::Features {
        fields.push(Field::new(CREATED_TIMESTAMP, timestamp_type(), false));
        fields.push(Field::new(CREATED_GIVEN, DataType::Boolean, false));
    }
    for (name, t) in &def.columns {
        if RESERVED.contains(&name.as_str()) || def.join_keys.contains(name) {
            return Err(StoreError::Conflict(format!(
                "'{name}' cannot be stored in offline table '{}': the name is taken by one of its key or \
                 bookkeeping columns ({}, {})",
                def.name,
                def.join_keys.join(", "),
                RESERVED.join(", ")
            )));
        }
        fields.push(Field::new(name, arrow_type(*t), true));
    }
    if kind == Kind::Features {
        fields.push(Field::new(PROVENANCE, DataType::Utf8, true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn key_columns(def: &TableDef, keys: &[&EntityKey]) -> StoreResult<Vec<ArrayRef>> {
    let width = def.join_keys.len();
    let mut builders: Vec<StringBuilder> = (0..width).map(|_| StringBuilder::new()).collect();
    for key in keys {
        let mut parts = 0;
        for (b, part) in builders.iter_mut().zip(key.parts()) {
            b.append_value(part);
            parts += 1;
        }
        if parts != width || key.parts().count() != width {
            return Err(StoreError::Conflict(format!(
                "entity key {key} of table '{}' does not have its {width} join key(s) ({})",
                def.name,
                def.join_keys.join(", ")
            )));
        }
    }
    Ok(builders.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef).collect())
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

/// A value column of type `t` (`None` and null are null; an integer fits
/// a float column). A value of another type is refused as a conflict
/// naming `name` and `table`.
pub(super) fn value_column<'a>(
    table: &str,
    name: &str,
    t: ValueType,
    values: impl Iterator<Item = Option<&'a Value>>,
) -> StoreResult<ArrayRef> {
    let refuse = |v: &Value| {
        Err(StoreError::Conflict(format!("value {v:?} of '{name}' in offline table '{table}' is not a {t}")))
    };
    typed_column(t, values, &refuse)
}

/// [`value_column`] where a value of another type is null instead.
pub(super) fn lenient_column<'a>(t: ValueType, values: impl Iterator<Item = Option<&'a Value>>) -> ArrayRef {
    typed_column(t, values, &|_| Ok(())).unwrap_or_else(|_| unreachable!("a lenient column refuses nothing"))
}

/// A column of type `t` from values; `mismatch` decides on a value of
/// another type: an error refuses the column, `Ok` makes the slot null.
/// An empty list fits either list type: read back from JSON text it has no
/// item type to tell it by.
fn typed_column<'a>(
    t: ValueType,
    values: impl Iterator<Item = Option<&'a Value>>,
    mismatch: &dyn Fn(&Value) -> StoreResult<()>,
) -> StoreResult<ArrayRef> {
    Ok(match t {
        ValueType::Float64 => {
            let mut b = Float64Builder::new();
            for v in values {
                match v {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::Float64(x)) => b.append_value(*x),
                    Some(Value::Int64(x)) => b.append_value(*x as f64),
                    Some(other) => {
                        mismatch(other)?;
                        b.append_null()
                    }
                }
            }
            Arc::new(b.finish())
        }
        ValueType::Int64 => {
            let mut b = Int64Builder::new();
            for v in values {
                match v {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::Int64(x)) => b.append_value(*x),
                    Some(other) => {
                        mismatch(other)?;
                        b.append_null()
                    }
                }
            }
            Arc::new(b.finish())
        }
        ValueType::Bool => {
            let mut b = BooleanBuilder::new();
            for v in values {
                match v {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::Bool(x)) => b.append_value(*x),
                    Some(other) => {
                        mismatch(other)?;
                        b.append_null()
                    }
                }
            }
            Arc::new(b.finish())
        }
        ValueType::String => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::String(x)) => b.append_value(x),
                    Some(other) => {
                        mismatch(other)?;
                        b.append_null()
                    }
                }
            }
            Arc::new(b.finish())
        }
        ValueType::Float64List => {
            let mut b = ListBuilder::new(Float64Builder::new());
            for v in values {
                match v {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::Float64List(xs)) => {
                        b.values().append_slice(xs);
                        b.append(true);
                    }
                    Some(Value::StringList(xs)) if xs.is_empty() => b.append(true),
                    Some(other) => {
                        mismatch(other)?;
                        b.append_null()
                    }
                }
            }
            Arc::new(b.finish())
        }
        ValueType::StringList => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in values {
                match v {
                    None | Some(Value::Null) => b.append_null(),
                    Some(Value::StringList(xs)) => {
                        for x in xs {
                            b.values().append_value(x);
                        }
                        b.append(true);
                    }
                    Some(Value::Float64List(xs)) if xs.is_empty() => b.append(true),
                    Some(other) => {
                        mismatch(other)?;
                        b.append_null()
                    }
                }
            }
            Arc::new(b.finish())
        }
    })
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> StoreResult<RecordBatch> {
    RecordBatch::try_new(schema, columns).map_err(|e| StoreError::Corrupt(format!("building offline rows: {e}")))
}

/// Feature rows as a payload batch of `def`'s table.
pub(super) fn encode_features(def: &TableDef, rows: &[FeatureRow]) -> StoreResult<RecordBatch> {
    let schema = payload_schema(Kind::Features, def)?;
    let keys: Vec<&EntityKey> = rows.iter().map(|r| &r.entity).collect();
    let mut columns = key_columns(def, &keys)?;
    columns.push(timestamps(rows.iter().map(|r| r.event_ts.0)));
    columns.push(timestamps(rows.iter().map(|r| r.created.0)));
    columns.push(Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.created_given)))));
    for (name, t) in &def.columns {
        columns.push(value_column(&def.name, name, *t, rows.iter().map(|r| r.values.get(name)))?);
    }
    let mut provenance = StringBuilder::new();
    let mut last: Option<(&crate::model::Provenance, String)> = None;
    for r in rows {
        match &r.provenance {
            None => provenance.append_null(),
            Some(p) => {
                if last.as_ref().is_none_or(|(seen, _)| *seen != p) {
                    last = Some((p, p.to_string()));
                }
                provenance.append_value(&last.as_ref().expect("just set").1);
            }
        }
    }
    columns.push(Arc::new(provenance.finish()));
    batch(schema, columns)
}

/// Source rows as a payload batch of `def`'s table.
pub(super) fn encode_sources(def: &TableDef, rows: &[SourceRow]) -> StoreResult<RecordBatch> {
    let schema = payload_schema(Kind::Source, def)?;
    let keys: Vec<&EntityKey> = rows.iter().map(|r| &r.entity).collect();
    let mut columns = key_columns(def, &keys)?;
    columns.push(timestamps(rows.iter().map(|r| r.ts.0)));
    for (name, t) in &def.columns {
        columns.push(value_column(&def.name, name, *t, rows.iter().map(|r| r.values.get(name)))?);
    }
    batch(schema, columns)
}

/// The first day of `micros`' month (UTC) in days since the epoch.
fn month_start(micros: i64) -> i32 {
    use chrono::{Datelike, NaiveDate};
    let day = micros.div_euclid(86_400_000_000) as i32;
    let date = NaiveDate::from_num_days_from_ce_opt(day + 719_163).unwrap_or_default();
    let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date);
    first.num_days_from_ce() - 719_163
}

/// The event months a batch of table rows (with the partition column)
/// holds.
pub(super) fn months_of(batch: &RecordBatch) -> StoreResult<std::collections::BTreeSet<i32>> {
    Ok(month_column(batch)?.values().iter().copied().collect())
}

/// The rows of a batch of table rows in event month `month`.
pub(super) fn rows_in_month(batch: &RecordBatch, month: i32) -> StoreResult<RecordBatch> {
    let keep: BooleanArray = month_column(batch)?.values().iter().map(|&m| Some(m == month)).collect();
    deltalake::arrow::compute::filter_record_batch(batch, &keep)
        .map_err(|e| StoreError::Corrupt(format!("selecting a month of offline rows: {e}")))
}

fn month_column(batch: &RecordBatch) -> StoreResult<&Date32Array> {
    let column = batch
        .column_by_name(EVENT_MONTH)
        .ok_or_else(|| StoreError::Corrupt(format!("offline rows have no {EVENT_MONTH} column")))?;
    downcast::<Date32Array>(column.as_any())
}

/// A payload batch as table rows: adds `write_seq` (and, for sources,
/// `ingested_at`) from the log entry and the `event_month` partition.
pub(super) fn complete(kind: Kind, payload: &RecordBatch, seq: i64, written_at: i64) -> StoreResult<RecordBatch> {
    let n = payload.num_rows();
    let events = payload
        .column_by_name(EVENT_TIMESTAMP)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| StoreError::Corrupt("an offline batch has no event_timestamp column".into()))?;
    let mut fields: Vec<Arc<Field>> = payload.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = payload.columns().to_vec();
    if kind == Kind::Source {
        fields.push(Arc::new(Field::new(INGESTED_AT, timestamp_type(), false)));
        columns.push(timestamps(std::iter::repeat_n(written_at, n)));
    }
    fields.push(Arc::new(Field::new(WRITE_SEQ, DataType::Int64, false)));
    columns.push(Arc::new(Int64Array::from(vec![seq; n])));
    fields.push(Arc::new(Field::new(EVENT_MONTH, DataType::Date32, false)));
    let mut months = Vec::with_capacity(n);
    let mut last = (i64::MIN, 0);
    for &e in events.values() {
        // Rows come in runs of nearby times; skip the calendar for each.
        if e / 86_400_000_000 != last.0 {
            last = (e / 86_400_000_000, month_start(e));
        }
        months.push(last.1);
    }
    columns.push(Arc::new(Date32Array::from(months)));
    batch(Arc::new(Schema::new(fields)), columns)
}

/// The value at `row` of a column as a [`Value`]; `None` for null (rows
/// read back carry only the values they have).
pub(super) fn value_at(column: &dyn Array, row: usize) -> StoreResult<Option<Value>> {
    if column.is_null(row) {
        return Ok(None);
    }
    let any = column.as_any();
    let value = match column.data_type() {
        DataType::Float64 => Value::Float64(downcast::<Float64Array>(any)?.value(row)),
        DataType::Int64 => Value::Int64(downcast::<Int64Array>(any)?.value(row)),
        DataType::Boolean => Value::Bool(downcast::<BooleanArray>(any)?.value(row)),
        DataType::Utf8 => Value::String(downcast::<StringArray>(any)?.value(row).to_string()),
        DataType::List(item) => {
            let list = downcast::<ListArray>(any)?.value(row);
            match item.data_type() {
                DataType::Float64 => Value::Float64List(
                    downcast::<Float64Array>(list.as_any())?.iter().map(|x| x.unwrap_or(f64::NAN)).collect(),
                ),
                DataType::Utf8 => Value::StringList(
                    downcast::<StringArray>(list.as_any())?.iter().map(|x| x.unwrap_or_default().to_string()).collect(),
                ),
                other => return Err(StoreError::Corrupt(format!("offline column of unexpected type list<{other}>"))),
            }
        }
        other => return Err(StoreError::Corrupt(format!("offline column of unexpected type {other}"))),
    };
    Ok(Some(value))
}

pub(super) fn downcast<T: 'static>(any: &dyn std::any::Any) -> StoreResult<&T> {
    any.downcast_ref::<T>()
        .ok_or_else(|| StoreError::Corrupt(format!("offline column is not a {}", std::any::type_name::<T>())))
}

/// The values of `row` in the named value columns (nulls left out).
pub(super) fn values_at(columns: &[(String, ArrayRef)], row: usize) -> StoreResult<BTreeMap<String, Value>> {
    let mut values = BTreeMap::new();
    for (name, column) in columns {
        if let Some(v) = value_at(column.as_ref(), row)? {
            values.insert(name.clone(), v);
        }
    }
    Ok(values)
}

/// Whether a column holds values (rather than keys or bookkeeping).
pub(super) fn is_value_column(name: &str, join_keys: &[String]) -> bool {
    !RESERVED.contains(&name) && !join_keys.iter().any(|k| k == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_on_their_first_day() {
        let at = |s: &str| crate::model::Timestamp::parse(s).unwrap().0;
        let days = |s: &str| at(s).div_euclid(86_400_000_000) as i32;
        assert_eq!(month_start(at("2024-02-29T23:59:59Z")), days("2024-02-01T00:00:00Z"));
        assert_eq!(month_start(at("1969-12-31T12:00:00Z")), days("1969-12-01T00:00:00Z"));
        assert_eq!(month_start(at("1000-01-15T00:00:00Z")), days("1000-01-01T00:00:00Z"));
    }
}
