//! Data in: source rows (JSON objects or CSV) and pushed feature rows.
//! Rows are validated as a whole before anything is written, land in the
//! offline store in one transaction, and only then are acknowledged; pushed
//! feature rows are then written through to the online store.

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::{EntityKey, FeatureGroup, FeatureRow, Producer, Source, SourceRow, Timestamp, Value};
use crate::store::{FeatureBatch, TableDef};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One pushed feature row (`POST /v1/features/write`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureWriteRow {
    pub entity: serde_json::Map<String, serde_json::Value>,
    pub event_timestamp: SentTime,
    #[serde(default)]
    pub created_timestamp: Option<SentTime>,
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// A time as a client sent it, read when its row is validated: an
/// unreadable one is then refused as `invalid_timestamp` naming its row and
/// column, exactly like a readable time outside the window, rather than as
/// a malformed body.
///
/// Callers that read the time themselves (Feast's `df`) hand it over read.
#[derive(Clone, Debug)]
pub enum SentTime {
    Json(serde_json::Value),
    Read(Timestamp),
}

impl SentTime {
    fn read(&self, now: Timestamp) -> Result<Timestamp, String> {
        match self {
            SentTime::Json(json) => crate::model::time::read_json(json, now),
            SentTime::Read(t) => Ok(*t),
        }
    }
}

impl From<Timestamp> for SentTime {
    fn from(t: Timestamp) -> Self {
        SentTime::Read(t)
    }
}

impl<'de> Deserialize<'de> for SentTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(SentTime::Json)
    }
}

impl Wafer {
    /// Validates and writes JSON source rows; returns how many were written.
    pub async fn ingest_json(&self, source_name: &str, rows: &[serde_json::Value]) -> ServiceResult<u64> {
        let source = self.source(source_name)?;
        let join_keys = self.entity(&source.entity)?.join_keys.clone();
        let now = self.clock().now();
        let window = self.time_window();
        let mut parsed = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let obj =
                row.as_object().ok_or_else(|| ServiceError::Invalid(format!("row {i}: expected a JSON object")))?;
            let ts_field = &source.timestamp_field;
            let sent =
                obj.get(ts_field).ok_or_else(|| row_error(i, format!("missing timestamp field '{ts_field}'")))?;
            let bad = |e: String| time_error(i, ts_field, format!("row {i}: '{ts_field}': {e}"));
            let ts = crate::model::time::read_json(sent, now).map_err(bad)?;
            window.check(ts, "event time").map_err(|e| time_error(i, ts_field, format!("row {i}: {e}")))?;
            parsed.push(source_row_from_json(&source, &join_keys, obj, ts).map_err(|e| row_error(i, e))?);
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
        let now = self.clock().now();
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
                        let bad =
                            |e: String| time_error(i + 1, name, format!("CSV row {}, column '{name}': {e}", i + 1));
                        let t = csv_timestamp(cell, now).map_err(bad)?;
                        window.check(t, "event time").map_err(|e| bad(e.to_string()))?;
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

    pub(crate) async fn write_source_rows(&self, source: &Source, rows: Vec<SourceRow>) -> ServiceResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let written = self.offline().write_source_rows(&self.source_def(source)?, &rows).await;
        let mut entities: Vec<String> = rows.iter().map(|r| r.entity.as_str().to_string()).collect();
        entities.sort_unstable();
        entities.dedup();
        match written {
            Ok(written) => {
                self.source_rows_written(&source.name, entities).await?;
                Ok(written)
            }
            Err(e) => {
                // It may have committed before failing: this host forgets
                // the entities. The others hear of it when the client's
                // retry succeeds, or drop everything when their listener
                // reconnects after the outage that failed it.
                self.history().invalidate(&source.name, entities.iter().map(String::as_str));
                Err(e.into())
            }
        }
    }

    /// Writes pushed feature rows: offline first (durable), then the online
    /// store, which keeps the newest event time per entity.
    pub async fn write_features(&self, group_name: &str, rows: Vec<FeatureWriteRow>) -> ServiceResult<u64> {
        let group = self.feature_group(group_name)?;
        let parsed = self.feature_rows(&group, rows)?;
        self.store_feature_rows(&group, parsed).await
    }

    /// Writes validated pushed rows: offline first (durable), then online.
    pub(crate) async fn store_feature_rows(&self, group: &FeatureGroup, rows: Vec<FeatureRow>) -> ServiceResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let written = self.offline().write_feature_rows(&self.group_def(group)?, &rows).await?;
        let ttl = group.freshness.online_ttl_seconds().map(Duration::from_secs);
        let newest =
            crate::model::newest_per_entity(rows.len(), |i| (&rows[i].entity, rows[i].event_ts.0, rows[i].created.0));
        // Every row when each is its entity's only one (the usual push).
        let newest: std::borrow::Cow<[FeatureRow]> = match newest.len() == rows.len() {
            true => rows.as_slice().into(),
            false => newest.into_iter().map(|i| rows[i].clone()).collect::<Vec<_>>().into(),
        };
        self.online().write(&group.name, &newest, ttl).await?;
        Ok(written)
    }

    /// Writes feature rows given as columns: the whole history offline,
    /// then each entity's newest row online. Returns the rows written.
    pub(crate) async fn store_feature_batch(
        &self,
        group: &FeatureGroup,
        def: &TableDef,
        batch: &FeatureBatch,
    ) -> ServiceResult<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let written = self.offline().write_feature_batch(def, batch).await?;
        let ttl = group.freshness.online_ttl_seconds().map(Duration::from_secs);
        self.online().write(&group.name, &batch.newest_per_entity()?, ttl).await?;
        Ok(written)
    }

    /// A group clients may write to: one that stores values.
    pub(crate) fn check_writable(group: &FeatureGroup) -> ServiceResult<()> {
        if matches!(group.producer, Producer::OnDemand { .. }) {
            return Err(ServiceError::Invalid(format!(
                "feature group '{}' is computed on demand; it has no stored values to write",
                group.name
            )));
        }
        Ok(())
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
        Self::check_writable(group)?;
        let join_keys = self.entity(&group.entity)?.join_keys.clone();
        let now = self.clock().now();
        let window = self.time_window();
        let mut parsed = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let entity = EntityKey::from_json(&row.entity, &join_keys).map_err(|e| row_error(i, e.to_string()))?;
            let read = |column: &str, what: &str, sent: &SentTime| {
                let bad = |e: String| time_error(i, column, format!("row {i}: {column}: {e}"));
                let t = sent.read(now).map_err(bad)?;
                window.check(t, what).map_err(|e| time_error(i, column, format!("row {i}: {e}")))?;
                Ok::<_, ServiceError>(t)
            };
            let event_ts = read("event_timestamp", "event time", &row.event_timestamp)?;
            let created =
                row.created_timestamp.as_ref().map(|c| read("created_timestamp", "created time", c)).transpose()?;
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
                event_ts,
                created: created.unwrap_or(now),
                created_given: created.is_some(),
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
    ts: Timestamp,
) -> Result<SourceRow, String> {
    let entity = EntityKey::from_json(obj, join_keys).map_err(|e| e.to_string())?;
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

/// A CSV timestamp cell: RFC 3339 text; a number is explained in the unit
/// it looks like.
fn csv_timestamp(cell: &str, now: Timestamp) -> Result<Timestamp, String> {
    Timestamp::parse(cell).map_err(|e| match cell.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => crate::model::time::number_hint(n, now),
        _ => e.to_string(),
    })
}

/// A refused time of row `row`, from `column`.
pub(crate) fn time_error(row: usize, column: &str, message: String) -> ServiceError {
    ServiceError::InvalidTimestamp { row, column: column.to_string(), message }
}

fn row_error(i: usize, msg: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(format!("row {i}: {msg}"))
}
