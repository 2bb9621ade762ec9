//! Data in: source rows (JSON objects or CSV) and pushed feature rows.
//! Rows are validated as a whole before anything is written, land in the
//! offline store in one transaction, and only then are acknowledged; pushed
//! feature rows are then written through to the online store.

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::{EntityKey, FeatureGroup, FeatureRow, Producer, Source, SourceRow, Timestamp, Value};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One pushed feature row (`POST /v1/features/write`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureWriteRow {
    pub entity: serde_json::Map<String, serde_json::Value>,
    pub event_timestamp: Timestamp,
    #[serde(default)]
    pub created_timestamp: Option<Timestamp>,
    pub values: serde_json::Map<String, serde_json::Value>,
}

impl Wafer {
    /// Validates and writes JSON source rows; returns how many were written.
    pub async fn ingest_json(&self, source_name: &str, rows: &[serde_json::Value]) -> ServiceResult<u64> {
        let source = self.source(source_name)?;
        let join_keys = self.entity(&source.entity)?.join_keys.clone();
        let window = self.time_window();
        let mut parsed = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let obj =
                row.as_object().ok_or_else(|| ServiceError::Invalid(format!("row {i}: expected a JSON object")))?;
            let ts_field = &source.timestamp_field;
            if let Some(serde_json::Value::Number(n)) = obj.get(ts_field) {
                let hint = crate::model::time::number_hint(n.as_f64().unwrap_or(f64::NAN), window.latest);
                return Err(time_error(i, ts_field, format!("row {i}: '{ts_field}': {hint}")));
            }
            let row = source_row_from_json(&source, &join_keys, obj).map_err(|e| row_error(i, e))?;
            window.check(row.ts, "event time").map_err(|e| time_error(i, ts_field, format!("row {i}: {e}")))?;
            parsed.push(row);
        }
        self.write_source_rows(&source, parsed).await
    }

    /// Validates and writes CSV source rows (header row of join keys, the
    /// timestamp field and source fields, in any order).
    pub async fn ingest_csv(&self, source_name: &str, body: &[u8]) -> ServiceResult<u64> {
        let source = self.source(source_name)?;
        let join_keys = self.entity(&source.entity)?.join_keys.clone();
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body);
        let headers = reader.headers().map_err(|e| ServiceError::Invalid(format!("CSV header: {e}")))?.clone();
        enum Col {
            Key(usize),
            Ts,
            Field(crate::model::ValueType),
        }
        let mut cols = Vec::with_capacity(headers.len());
        for h in headers.iter() {
            cols.push(if let Some(k) = join_keys.iter().position(|k| k == h) {
                Col::Key(k)
            } else if h == source.timestamp_field {
                Col::Ts
            } else if let Some(f) = source.field(h) {
                Col::Field(f.value_type)
            } else {
                return Err(ServiceError::Invalid(format!(
                    "CSV column '{h}' is not a join key, the timestamp field or a field of source '{}' (fields: {})",
                    source.name,
                    field_list(&source)
                )));
            });
        }
        for required in join_keys.iter().chain(std::iter::once(&source.timestamp_field)) {
            if !headers.iter().any(|h| h == required) {
                return Err(ServiceError::Invalid(format!("CSV header lacks required column '{required}'")));
            }
        }
        let window = self.time_window();
        let mut parsed = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| ServiceError::Invalid(format!("CSV row {}: {e}", i + 1)))?;
            let mut parts = vec![String::new(); join_keys.len()];
            let mut ts = None;
            let mut values = BTreeMap::new();
            for ((col, cell), name) in cols.iter().zip(record.iter()).zip(headers.iter()) {
                let at = |msg: String| ServiceError::Invalid(format!("CSV row {}, column '{name}': {msg}", i + 1));
                match col {
                    Col::Key(k) => {
                        if cell.is_empty() {
                            return Err(at("empty join key".into()));
                        }
                        parts[*k] = cell.to_string();
                    }
                    Col::Ts => {
                        let t = csv_timestamp(cell, window.latest).map_err(|e| match e {
                            CsvTime::Unreadable(e) => at(e),
                            CsvTime::Number(hint) => {
                                time_error(i + 1, name, format!("CSV row {}, column '{name}': {hint}", i + 1))
                            }
                        })?;
                        window
                            .check(t, "event time")
                            .map_err(|e| time_error(i + 1, name, format!("CSV row {}, column '{name}': {e}", i + 1)))?;
                        ts = Some(t);
                    }
                    Col::Field(ty) => {
                        values.insert(name.to_string(), Value::from_text(cell, *ty).map_err(|e| at(e.to_string()))?);
                    }
                }
            }
            let ts = ts.ok_or_else(|| ServiceError::Invalid(format!("CSV row {}: missing timestamp", i + 1)))?;
            parsed.push(SourceRow { entity: EntityKey::from_parts(&parts), ts, values });
        }
        self.write_source_rows(&source, parsed).await
    }

    async fn write_source_rows(&self, source: &Source, rows: Vec<SourceRow>) -> ServiceResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        Ok(self.offline().write_source_rows(&source.name, &rows).await?)
    }

    /// Writes pushed feature rows: offline first (durable), then the online
    /// store, which keeps the newest event time per entity.
    pub async fn write_features(&self, group_name: &str, rows: Vec<FeatureWriteRow>) -> ServiceResult<u64> {
        let group = self.feature_group(group_name)?;
        let parsed = self.feature_rows(&group, rows)?;
        if parsed.is_empty() {
            return Ok(0);
        }
        let written = self.offline().write_feature_rows(group_name, &parsed).await?;
        let ttl = group.freshness.online_ttl_seconds().map(Duration::from_secs);
        self.online().write(group_name, &parsed, ttl).await?;
        Ok(written)
    }

    /// Validates pushed rows against `group` as a whole, before anything is
    /// written: a group that stores values, the entity's join keys, and
    /// each value against its feature's declared type.
    pub(crate) fn feature_rows(
        &self,
        group: &FeatureGroup,
        rows: Vec<FeatureWriteRow>,
    ) -> ServiceResult<Vec<FeatureRow>> {
        let group_name = &group.name;
        if matches!(group.producer, Producer::OnDemand { .. }) {
            return Err(ServiceError::Invalid(format!(
                "feature group '{group_name}' is computed on demand; it has no stored values to write"
            )));
        }
        let join_keys = self.entity(&group.entity)?.join_keys.clone();
        let now = self.clock().now();
        let window = self.time_window();
        let mut parsed = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let entity = EntityKey::from_json(&row.entity, &join_keys).map_err(|e| row_error(i, e.to_string()))?;
            let times = [
                ("event_timestamp", "event time", Some(row.event_timestamp)),
                ("created_timestamp", "created time", row.created_timestamp),
            ];
            for (column, what, t) in times {
                if let Some(t) = t {
                    window.check(t, what).map_err(|e| time_error(i, column, format!("row {i}: {e}")))?;
                }
            }
            let mut values = BTreeMap::new();
            for (name, json) in &row.values {
                let spec = group.feature(name).ok_or_else(|| ServiceError::UnknownFeature {
                    refs: vec![format!("{group_name}:{name}")],
                    available: group.features.iter().map(|f| format!("{group_name}:{}", f.name)).collect(),
                })?;
                let v = Value::from_json(json, spec.value_type).map_err(|e| row_error(i, format!("'{name}': {e}")))?;
                values.insert(name.clone(), v);
            }
            parsed.push(FeatureRow {
                entity,
                event_ts: row.event_timestamp,
                created: row.created_timestamp.unwrap_or(now),
                created_given: row.created_timestamp.is_some(),
                values,
                // Pushed by a client: no transform of ours computed it.
                provenance: None,
            });
        }
        Ok(parsed)
    }
}

fn source_row_from_json(
    source: &Source,
    join_keys: &[String],
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<SourceRow, String> {
    let entity = EntityKey::from_json(obj, join_keys).map_err(|e| e.to_string())?;
    let ts = match obj.get(&source.timestamp_field) {
        Some(serde_json::Value::String(s)) => Timestamp::parse(s).map_err(|e| e.to_string())?,
        Some(_) => {
            return Err(format!("'{}' must be an RFC 3339 string", source.timestamp_field));
        }
        None => {
            return Err(format!("missing timestamp field '{}'", source.timestamp_field));
        }
    };
    let mut values = BTreeMap::new();
    for (name, json) in obj {
        if join_keys.contains(name) || *name == source.timestamp_field {
            continue;
        }
        let field = source
            .field(name)
            .ok_or_else(|| format!("unknown field '{name}'; source '{}' has: {}", source.name, field_list(source)))?;
        values.insert(name.clone(), Value::from_json(json, field.value_type).map_err(|e| format!("'{name}': {e}"))?);
    }
    Ok(SourceRow { entity, ts, values })
}

fn field_list(source: &Source) -> String {
    source.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Why a CSV timestamp cell was refused: not a time at all, or a number
/// (explained in the unit it looks like).
enum CsvTime {
    Unreadable(String),
    Number(String),
}

fn csv_timestamp(cell: &str, now: Timestamp) -> Result<Timestamp, CsvTime> {
    Timestamp::parse(cell).map_err(|e| match cell.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => CsvTime::Number(crate::model::time::number_hint(n, now)),
        _ => CsvTime::Unreadable(e.to_string()),
    })
}

/// A refused time of row `row`, from `column`.
pub(crate) fn time_error(row: usize, column: &str, message: String) -> ServiceError {
    ServiceError::InvalidTimestamp { row, column: column.to_string(), message }
}

fn row_error(i: usize, msg: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(format!("row {i}: {msg}"))
}
