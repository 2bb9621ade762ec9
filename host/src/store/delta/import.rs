//! Offline history that a data dir's SQLite file holds from before the
//! tables, moved into the tables on first start.
//!
//! Per source and group: its rows are appended to its table in one commit
//! (source rows keep the time they were ingested, so incremental runs see
//! no change), then dropped from the file. A crash between the two imports
//! them again at the next start; the merge reads the two copies as one.

use super::DeltaOffline;
use super::layout::{self, INGESTED_AT, Kind, timestamp_type};
use crate::store::sqlite::SqliteStore;
use crate::store::{Registry, StoreError, StoreResult, TableDef};
use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{Field, Schema};
use std::sync::Arc;

/// What an import moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub source_rows: u64,
    pub feature_rows: u64,
    /// Names whose rows stayed behind: no definition says their columns.
    pub skipped: Vec<String>,
}

impl DeltaOffline {
    /// Moves every offline row `sqlite` holds into the tables.
    pub async fn import_sqlite(&self, sqlite: &SqliteStore) -> StoreResult<Imported> {
        let mut imported = Imported::default();
        let (sources, groups) = sqlite.legacy_offline_names().await?;
        for name in sources {
            let Some(def) = source_def(sqlite, &name).await? else {
                imported.skipped.push(format!("source {name}"));
                continue;
            };
            let rows = sqlite.legacy_source_rows(&name).await?;
            let (plain, ingested): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            let payload = layout::encode_sources(&def, &plain)?;
            let seq = self.log.next_seq().await?;
            let batch = with_ingested(layout::complete(Kind::Source, &payload, seq, 0)?, &ingested)?;
            self.tables.append(&Kind::Source.path(&name), vec![batch]).await?;
            self.local.changed(&Kind::Source.path(&name));
            sqlite.drop_legacy_rows(true, &name).await?;
            imported.source_rows += plain.len() as u64;
        }
        for name in groups {
            let Some(def) = group_def(sqlite, &name).await? else {
                imported.skipped.push(format!("feature group {name}"));
                continue;
            };
            let rows = sqlite.legacy_feature_rows(&name).await?;
            let seq = self.log.next_seq().await?;
            let batch = layout::complete(Kind::Features, &layout::encode_features(&def, &rows)?, seq, 0)?;
            self.tables.append(&Kind::Features.path(&name), vec![batch]).await?;
            self.local.changed(&Kind::Features.path(&name));
            sqlite.drop_legacy_rows(false, &name).await?;
            imported.feature_rows += rows.len() as u64;
        }
        Ok(imported)
    }
}

async fn source_def(sqlite: &SqliteStore, name: &str) -> StoreResult<Option<TableDef>> {
    let Some(source) = sqlite.get_source(name).await? else { return Ok(None) };
    let Some(entity) = sqlite.get_entity(&source.entity).await? else { return Ok(None) };
    Ok(Some(TableDef::of_source(&source, &entity)))
}

async fn group_def(sqlite: &SqliteStore, name: &str) -> StoreResult<Option<TableDef>> {
    let Some(group) = sqlite.get_feature_group(name).await? else { return Ok(None) };
    let Some(entity) = sqlite.get_entity(&group.entity).await? else { return Ok(None) };
    Ok(Some(TableDef::of_group(&group, &entity)))
}

/// `batch` with each row's own `ingested_at`.
fn with_ingested(batch: RecordBatch, ingested: &[crate::model::Timestamp]) -> StoreResult<RecordBatch> {
    let schema = batch.schema();
    let at = schema.index_of(INGESTED_AT).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[at] =
        Arc::new(TimestampMicrosecondArray::from_iter_values(ingested.iter().map(|t| t.0)).with_timezone("UTC"));
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == INGESTED_AT { Field::new(INGESTED_AT, timestamp_type(), false) } else { f.as_ref().clone() }
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
