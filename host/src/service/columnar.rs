//! Data in as Arrow record batches: the Parquet and Arrow IPC stream bodies
//! of `POST /v1/sources/{name}/rows` and `POST /v1/features/write`, decoded
//! by the API. Rows are validated exactly as JSON and CSV rows are (join
//! keys, the time window, each value against its declared type), as a whole
//! before anything is written; the errors name the row (0-based across the
//! body's batches) and the column.
//!
//! Columns are matched by name: a source's join keys, its timestamp field
//! and its fields; a group's join keys, `event_timestamp`, an optional
//! `created_timestamp` (a null cell: the server stamps its clock, as for a
//! JSON row without one) and its features. Any other column is refused, so
//! a misspelt field is not dropped silently. Arrow types are read leniently
//! where nothing is lost: any integer or float width for `float64`, any
//! integer width for `int64` (range-checked), `utf8`, `large_utf8`,
//! `utf8_view` or dictionary-encoded strings for text and keys, list types
//! for the list types, and `timestamp` of any unit (an instant, whatever its
//! zone label; naive is UTC), `date32`/`date64` (midnight UTC) or RFC 3339
//! text for times. Numbers are refused as times, as in JSON.

use super::ingest::time_error;
use super::{ServiceError, ServiceResult, Wafer};
use crate::model::time::number_hint;
use crate::model::{EntityKey, FeatureGroup, SourceRow, TimeWindow, Timestamp, Value, ValueType};
use crate::store::{FeatureBatch, TableDef};
use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, TimeUnit};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The group's column holding each row's event time.
pub const EVENT_TIMESTAMP: &str = "event_timestamp";
/// The group's optional column holding each row's writer-given created time.
pub const CREATED_TIMESTAMP: &str = "created_timestamp";

/// What a body column is to its target.
enum Role {
    Key(usize),
    Event,
    Created,
    Value(String, ValueType),
}

impl Wafer {
    /// Validates and writes source rows from record batches; returns how
    /// many were written.
    pub async fn ingest_batches(&self, source_name: &str, batches: &[RecordBatch]) -> ServiceResult<u64> {
        let source = self.source(source_name)?;
        let join_keys = self.entity(&source.entity)?.join_keys.clone();
        let roles =
            roles(batches, &join_keys, &source.timestamp_field, None, |name| source.field(name).map(|f| f.value_type))
                .map_err(|e| ServiceError::Invalid(format!("source '{}': {e}", source.name)))?;
        let (now, window) = (self.clock().now(), self.time_window());
        let mut rows = Vec::new();
        for_each_row(batches, &roles, join_keys.len(), now, |cells| {
            let ts = cells.time(&source.timestamp_field, "event time", &window)?;
            rows.push(SourceRow { entity: cells.entity(), ts, values: std::mem::take(&mut cells.values) });
            Ok(())
        })?;
        self.write_source_rows(&source, rows).await
    }

    /// Validates and writes pushed feature rows from record batches, as
    /// [`Wafer::write_features`] does JSON rows. The columns are checked
    /// and converted as columns, and reach the offline store as one
    /// [`FeatureBatch`]: no row map per row.
    pub async fn write_feature_batches(&self, group_name: &str, batches: &[RecordBatch]) -> ServiceResult<u64> {
        let group = self.feature_group(group_name)?;
        Self::check_writable(&group)?;
        let def = self.group_def(&group)?;
        let batch = self.feature_batch(&group, &def, batches)?;
        self.store_feature_batch(&group, &def, &batch).await
    }

    /// The body's rows as the table's columns, checked as a whole: the
    /// error is the one a row-by-row reading meets first.
    fn feature_batch(
        &self,
        group: &FeatureGroup,
        def: &TableDef,
        batches: &[RecordBatch],
    ) -> ServiceResult<FeatureBatch> {
        let join_keys = &def.join_keys;
        let roles = roles(batches, join_keys, EVENT_TIMESTAMP, Some(CREATED_TIMESTAMP), |name| {
            group.feature(name).map(|f| f.value_type)
        })
        .map_err(|e| ServiceError::Invalid(format!("feature group '{}': {e}", group.name)))?;
        let (now, window) = (self.clock().now(), self.time_window());
        let mut parts = Vec::with_capacity(batches.len());
        let mut base = 0;
        for batch in batches {
            if batch.num_columns() != roles.len() {
                return Err(ServiceError::Invalid("the body's batches do not share one schema".into()));
            }
            let columns = FeatureColumns { batch, roles: &roles, def, now, window: &window, base };
            parts.push(columns.convert().map_err(|failure| failure.error)?);
            base += batch.num_rows();
        }
        Ok(FeatureBatch::new(def, parts)?)
    }
}

/// Where a check fails, ordered as a row-by-row reading meets it: by row,
/// then the cells in column order, then the row's event time, then its
/// created time against the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct At {
    row: usize,
    phase: Phase,
    column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Cell,
    EventTime,
    CreatedWindow,
}

struct Failure {
    at: At,
    error: ServiceError,
}

/// One body batch, converted column by column to the table's columns.
struct FeatureColumns<'a> {
    batch: &'a RecordBatch,
    roles: &'a [Role],
    def: &'a TableDef,
    now: Timestamp,
    window: &'a TimeWindow,
    /// The batch's first row number in the body.
    base: usize,
}

impl FeatureColumns<'_> {
    /// The payload columns (join keys, event and created time, created
    /// given, the features in the definition's order, provenance), or the
    /// first failure of all columns.
    fn convert(&self) -> Result<Vec<ArrayRef>, Failure> {
        let n = self.batch.num_rows();
        let k = self.def.join_keys.len();
        let mut failures: Vec<Failure> = Vec::new();
        let mut keys: Vec<Option<ArrayRef>> = vec![None; k];
        let mut event: Option<ArrayRef> = None;
        let mut created: Option<(ArrayRef, ArrayRef)> = None;
        let mut values: Vec<Option<ArrayRef>> = vec![None; self.def.columns.len()];
        let fields = self.batch.schema_ref().fields().clone();
        for (column, ((array, role), field)) in
            self.batch.columns().iter().zip(self.roles).zip(fields.iter()).enumerate()
        {
            let name = field.name().as_str();
            let converted = match role {
                Role::Key(i) => self.key_column(array, name).map(|a| keys[*i] = Some(a)),
                Role::Event => self.event_column(array, name).map(|a| event = Some(a)),
                Role::Created => self.created_column(array, name).map(|a| created = Some(a)),
                Role::Value(feature, ty) => {
                    let slot = self.def.columns.iter().position(|(c, _)| c == feature).expect("a declared feature");
                    self.value_column(array, name, *ty).map(|a| values[slot] = Some(a))
                }
            };
            if let Err((row, phase, error)) = converted {
                failures.push(Failure { at: At { row, phase, column }, error });
            }
        }
        if let Some(first) = failures.into_iter().min_by_key(|f| f.at) {
            return Err(first);
        }
        let mut columns: Vec<ArrayRef> = keys.into_iter().map(|c| c.expect("every join key is a column")).collect();
        columns.push(event.expect("the event time is a column"));
        let (created, given) = created.unwrap_or_else(|| {
            (timestamps(vec![self.now.0; n]), Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef)
        });
        columns.extend([created, given]);
        for (slot, (_, ty)) in values.into_iter().zip(&self.def.columns) {
            // A feature the body lacks is null in every row.
            columns.push(slot.unwrap_or_else(|| FeatureBatch::nulls(*ty, n)));
        }
        columns.push(Arc::new(StringArray::new_null(n)));
        Ok(columns)
    }

    fn invalid(&self, i: usize, name: &str, e: String) -> (usize, Phase, ServiceError) {
        let row = self.base + i;
        (row, Phase::Cell, ServiceError::Invalid(format!("row {row}, column '{name}': {e}")))
    }

    fn bad_time(&self, i: usize, phase: Phase, name: &str, e: impl std::fmt::Display) -> (usize, Phase, ServiceError) {
        let row = self.base + i;
        (row, phase, time_error(row, name, format!("row {row}, column '{name}': {e}")))
    }

    /// A join-key column as text; no cell null or empty.
    fn key_column(&self, a: &ArrayRef, name: &str) -> Result<ArrayRef, (usize, Phase, ServiceError)> {
        if let DataType::Utf8 = a.data_type() {
            let text = a.as_string::<i32>();
            let offsets = text.value_offsets();
            let bad = (0..text.len()).find(|&i| text.is_null(i) || offsets[i] == offsets[i + 1]);
            return match bad {
                Some(i) if text.is_null(i) => Err(self.invalid(i, name, "null join key".into())),
                Some(i) => Err(self.invalid(i, name, "empty join key".into())),
                None => Ok(a.clone()),
            };
        }
        let mut parts = StringBuilder::with_capacity(a.len(), a.len() * 8);
        for i in 0..a.len() {
            let part = key_at(a, i).map_err(|e| self.invalid(i, name, e))?;
            if part.is_empty() {
                return Err(self.invalid(i, name, "empty join key".into()));
            }
            parts.append_value(part);
        }
        Ok(Arc::new(parts.finish()))
    }

    /// Event times in microseconds, each in the window; none null.
    fn event_column(&self, a: &ArrayRef, name: &str) -> Result<ArrayRef, (usize, Phase, ServiceError)> {
        let mut micros = Vec::with_capacity(a.len());
        for i in 0..a.len() {
            let t = match a.is_null(i) {
                true => Err("is null".to_string()),
                false => time_at(a, i, self.now),
            };
            let t = t.map_err(|e| self.bad_time(i, Phase::EventTime, name, e))?;
            self.window.check(t, "event time").map_err(|e| self.bad_time(i, Phase::EventTime, name, e))?;
            micros.push(t.0);
        }
        Ok(timestamps(micros))
    }

    /// Created times and whether the writer gave them: a null cell is
    /// stamped with the server's clock, as a JSON row without one. Either
    /// failure ends the column: nothing after it comes first.
    fn created_column(&self, a: &ArrayRef, name: &str) -> Result<(ArrayRef, ArrayRef), (usize, Phase, ServiceError)> {
        let (mut micros, mut given) = (Vec::with_capacity(a.len()), Vec::with_capacity(a.len()));
        for i in 0..a.len() {
            if a.is_null(i) {
                micros.push(self.now.0);
                given.push(false);
                continue;
            }
            let t = time_at(a, i, self.now).map_err(|e| self.bad_time(i, Phase::Cell, name, e))?;
            self.window.check(t, "created time").map_err(|e| self.bad_time(i, Phase::CreatedWindow, name, e))?;
            micros.push(t.0);
            given.push(true);
        }
        Ok((timestamps(micros), Arc::new(BooleanArray::from(given))))
    }

    /// A feature column in its declared type. Columns already in it are
    /// kept as they are (floats checked finite); others are read cell by
    /// cell.
    fn value_column(&self, a: &ArrayRef, name: &str, ty: ValueType) -> Result<ArrayRef, (usize, Phase, ServiceError)> {
        match (ty, a.data_type()) {
            (ValueType::Float64, DataType::Float64) => {
                let floats = a.as_primitive::<Float64Type>();
                let bad = (0..floats.len()).find(|&i| !floats.value(i).is_finite() && floats.is_valid(i));
                match bad {
                    Some(i) => Err(self.invalid(i, name, finite(floats.value(i)).expect_err("not finite"))),
                    None => Ok(a.clone()),
                }
            }
            (ValueType::Int64, DataType::Int64)
            | (ValueType::Bool, DataType::Boolean)
            | (ValueType::String, DataType::Utf8) => Ok(a.clone()),
            _ => {
                let mut values = Vec::with_capacity(a.len());
                for i in 0..a.len() {
                    let v = value_at(a, i, ty).map_err(|e| self.invalid(i, name, e))?;
                    values.push((v != Value::Null).then_some(v));
                }
                FeatureBatch::column(self.def, name, ty, &values).map_err(|e| (self.base, Phase::Cell, e.into()))
            }
        }
    }
}

fn timestamps(micros: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
}

/// Each column's role, from the first batch's schema (an IPC stream and a
/// Parquet file have one schema for all their batches).
fn roles(
    batches: &[RecordBatch],
    join_keys: &[String],
    event: &str,
    created: Option<&str>,
    field: impl Fn(&str) -> Option<ValueType>,
) -> Result<Vec<Role>, String> {
    let Some(first) = batches.first() else { return Ok(Vec::new()) };
    let schema = first.schema();
    let mut roles = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let name = f.name().as_str();
        roles.push(if let Some(k) = join_keys.iter().position(|k| k == name) {
            Role::Key(k)
        } else if name == event {
            Role::Event
        } else if Some(name) == created {
            Role::Created
        } else if let Some(ty) = field(name) {
            Role::Value(name.to_string(), ty)
        } else {
            return Err(format!("column '{name}' is not a join key, '{event}' or a declared field"));
        });
    }
    for required in join_keys.iter().map(String::as_str).chain([event]) {
        if !schema.fields().iter().any(|f| f.name() == required) {
            return Err(format!("the body lacks required column '{required}'"));
        }
    }
    Ok(roles)
}

/// One row's cells, read by role.
struct Cells {
    parts: Vec<String>,
    event: Option<Result<Timestamp, String>>,
    values: BTreeMap<String, Value>,
    row: usize,
}

impl Cells {
    fn entity(&self) -> EntityKey {
        EntityKey::from_parts(&self.parts)
    }

    /// The row's event time, checked against the window.
    fn time(&mut self, column: &str, what: &str, window: &TimeWindow) -> ServiceResult<Timestamp> {
        let row = self.row;
        let t = self.event.take().unwrap_or_else(|| Err("is null".into()));
        let t = t.map_err(|e| time_error(row, column, format!("row {row}, column '{column}': {e}")))?;
        self.check(column, what, t, window)
    }

    /// `t`, when it lies in the window.
    fn check(&self, column: &str, what: &str, t: Timestamp, window: &TimeWindow) -> ServiceResult<Timestamp> {
        let row = self.row;
        window.check(t, what).map_err(|e| time_error(row, column, format!("row {row}, column '{column}': {e}")))?;
        Ok(t)
    }
}

/// Reads every row of a source body's `batches` by `roles` and hands it to `each` (its
/// cells know their global row number); stops at the first error. `now`
/// only explains numbers sent as times.
fn for_each_row(
    batches: &[RecordBatch],
    roles: &[Role],
    key_count: usize,
    now: Timestamp,
    mut each: impl FnMut(&mut Cells) -> ServiceResult<()>,
) -> ServiceResult<()> {
    let mut row = 0;
    for batch in batches {
        if batch.num_columns() != roles.len() {
            return Err(ServiceError::Invalid("the body's batches do not share one schema".into()));
        }
        let columns: Vec<(&ArrayRef, &Role, &str)> = batch
            .columns()
            .iter()
            .zip(roles)
            .zip(batch.schema_ref().fields())
            .map(|((c, r), f)| (c, r, f.name().as_str()))
            .collect();
        for i in 0..batch.num_rows() {
            let at = |name: &str, e: String| ServiceError::Invalid(format!("row {row}, column '{name}': {e}"));
            let mut cells = Cells { parts: vec![String::new(); key_count], event: None, values: BTreeMap::new(), row };
            for (array, role, name) in &columns {
                match role {
                    Role::Key(k) => {
                        let part = key_at(array, i).map_err(|e| at(name, e))?;
                        if part.is_empty() {
                            return Err(at(name, "empty join key".into()));
                        }
                        cells.parts[*k] = part;
                    }
                    Role::Event => cells.event = (!array.is_null(i)).then(|| time_at(array, i, now)),
                    Role::Created => unreachable!("source bodies have no created column"),
                    Role::Value(field, ty) => {
                        let v = value_at(array, i, *ty).map_err(|e| at(name, e))?;
                        cells.values.insert(field.clone(), v);
                    }
                }
            }
            each(&mut cells)?;
            row += 1;
        }
    }
    Ok(())
}

/// A join-key cell: text as it is, integers in decimal (as JSON keys are).
fn key_at(a: &ArrayRef, i: usize) -> Result<String, String> {
    if a.is_null(i) {
        return Err("null join key".into());
    }
    if let Some(text) = text_at(a, i) {
        return Ok(text);
    }
    match int_at(a, i) {
        Some(n) => Ok(n.to_string()),
        None => Err(format!("a join key must be text or an integer, not {}", a.data_type())),
    }
}

/// A time cell, as microseconds since the epoch.
fn time_at(a: &ArrayRef, i: usize, now: Timestamp) -> Result<Timestamp, String> {
    let scaled = |v: i64, per_second: i64| -> Result<Timestamp, String> {
        let micros = match per_second {
            1 => v.checked_mul(1_000_000),
            1_000 => v.checked_mul(1_000),
            1_000_000 => Some(v),
            _ => Some(v.div_euclid(1_000)),
        };
        micros.map(Timestamp).ok_or_else(|| format!("{v} is out of the range of timestamps"))
    };
    match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => scaled(a.as_primitive::<TimestampSecondType>().value(i), 1),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            scaled(a.as_primitive::<TimestampMillisecondType>().value(i), 1_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            scaled(a.as_primitive::<TimestampMicrosecondType>().value(i), 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            scaled(a.as_primitive::<TimestampNanosecondType>().value(i), 1_000_000_000)
        }
        DataType::Date32 => scaled(i64::from(a.as_primitive::<Date32Type>().value(i)) * 86_400, 1),
        DataType::Date64 => scaled(a.as_primitive::<Date64Type>().value(i), 1_000),
        _ => {
            if let Some(text) = text_at(a, i) {
                return Timestamp::parse(&text).map_err(|e| e.to_string());
            }
            match float_at(a, i) {
                Some(n) => Err(number_hint(n, now)),
                None => Err(format!(
                    "a {} column cannot hold times; use timestamp (any unit) or RFC 3339 text",
                    a.data_type()
                )),
            }
        }
    }
}

/// A value cell read as `ty`; a null cell is null.
fn value_at(a: &ArrayRef, i: usize, ty: ValueType) -> Result<Value, String> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    let mismatch = || format!("a {} column cannot hold {ty} values", a.data_type());
    Ok(match ty {
        ValueType::Float64 => Value::Float64(finite(float_at(a, i).ok_or_else(mismatch)?)?),
        ValueType::Int64 => {
            let n = int_at(a, i).ok_or_else(mismatch)?;
            Value::Int64(i64::try_from(n).map_err(|_| format!("{n} does not fit in int64"))?)
        }
        ValueType::Bool => match a.data_type() {
            DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
            _ => return Err(mismatch()),
        },
        ValueType::String => Value::String(text_at(a, i).ok_or_else(mismatch)?),
        ValueType::Float64List => {
            let items = list_at(a, i).ok_or_else(mismatch)?;
            let values = (0..items.len())
                .map(|j| {
                    if items.is_null(j) {
                        return Err(format!("element {j} is null; lists hold no nulls"));
                    }
                    float_at(&items, j).ok_or_else(mismatch).and_then(finite)
                })
                .collect::<Result<Vec<f64>, String>>()?;
            Value::Float64List(values)
        }
        ValueType::StringList => {
            let items = list_at(a, i).ok_or_else(mismatch)?;
            let values = (0..items.len())
                .map(|j| {
                    if items.is_null(j) {
                        return Err(format!("element {j} is null; lists hold no nulls"));
                    }
                    text_at(&items, j).ok_or_else(mismatch)
                })
                .collect::<Result<Vec<String>, String>>()?;
            Value::StringList(values)
        }
    })
}

/// NaN and infinity are refused, as in JSON (which cannot carry them): a
/// missing value is a null.
fn finite(x: f64) -> Result<f64, String> {
    if x.is_finite() { Ok(x) } else { Err(format!("{x} is not a finite number; send null for a missing value")) }
}

fn text_at(a: &ArrayRef, i: usize) -> Option<String> {
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Some(a.as_string_view().value(i).to_string()),
        DataType::Dictionary(_, _) => {
            let dict = a.as_any_dictionary();
            let key = dict.normalized_keys()[i];
            text_at(dict.values(), key)
        }
        _ => None,
    }
}

fn int_at(a: &ArrayRef, i: usize) -> Option<i128> {
    Some(match a.data_type() {
        DataType::Int8 => i128::from(a.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => i128::from(a.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => i128::from(a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => i128::from(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => i128::from(a.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => i128::from(a.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => i128::from(a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => i128::from(a.as_primitive::<UInt64Type>().value(i)),
        _ => return None,
    })
}

fn float_at(a: &ArrayRef, i: usize) -> Option<f64> {
    match a.data_type() {
        DataType::Float64 => Some(a.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Some(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float16 => Some(f64::from(a.as_primitive::<Float16Type>().value(i))),
        _ => int_at(a, i).map(|n| n as f64),
    }
}

fn list_at(a: &ArrayRef, i: usize) -> Option<ArrayRef> {
    match a.data_type() {
        DataType::List(_) => Some(a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Some(a.as_list::<i64>().value(i)),
        DataType::FixedSizeList(_, _) => Some(a.as_fixed_size_list().value(i)),
        _ => None,
    }
}
