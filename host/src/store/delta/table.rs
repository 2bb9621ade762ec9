//! The Delta tables under the offline root: opening them, appending record
//! batches in one commit, scanning them with DataFusion (partition and
//! file-statistics pruning), and deleting them.
//!
//! A handle per table is kept and brought up to the newest commit before
//! each scan, so commits by other hosts (or flushers) are always seen.

use super::layout::EVENT_MONTH;
use crate::store::{Compaction, StoreError, StoreResult};
use arrow_array::RecordBatch;
use deltalake::datafusion::prelude::{Expr, SessionConfig, SessionContext};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use url::Url;

const BACKEND: &str = "offline tables";

/// What a write to a table did to its versions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Commit {
    /// The version the write started from (`None`: the table was new).
    pub read: Option<u64>,
    /// The version it left.
    pub version: u64,
    /// Whether every version from `read` to `version` is this write's own:
    /// no other writer committed in between.
    pub only_change: bool,
}

pub(super) struct Tables {
    root: Url,
    options: HashMap<String, String>,
    open: Mutex<HashMap<String, DeltaTable>>,
    session: SessionContext,
}

pub(super) fn delta_err(e: DeltaTableError) -> StoreError {
    match e {
        DeltaTableError::Arrow { .. } | DeltaTableError::Parquet { .. } | DeltaTableError::InvalidJsonLog { .. } => {
            StoreError::Corrupt(e.to_string())
        }
        DeltaTableError::SchemaMismatch { .. } | DeltaTableError::Generic(_) => StoreError::Conflict(e.to_string()),
        other => StoreError::Unavailable { backend: BACKEND, message: other.to_string() },
    }
}

fn df_err(e: deltalake::datafusion::error::DataFusionError) -> StoreError {
    StoreError::Unavailable { backend: BACKEND, message: e.to_string() }
}

impl Tables {
    /// `root` is a directory path or a URL (`file://`, `s3://bucket/prefix`).
    pub(super) fn new(root: &str, options: HashMap<String, String>) -> StoreResult<Self> {
        let mut root = if root.contains("://") {
            Url::parse(root).map_err(|e| StoreError::Conflict(format!("offline URL '{root}': {e}")))?
        } else {
            std::fs::create_dir_all(root)
                .map_err(|e| StoreError::Unavailable { backend: BACKEND, message: format!("creating {root}: {e}") })?;
            let path = std::fs::canonicalize(root)
                .map_err(|e| StoreError::Unavailable { backend: BACKEND, message: format!("{root}: {e}") })?;
            Url::from_directory_path(&path)
                .map_err(|()| StoreError::Conflict(format!("offline path {} is not absolute", path.display())))?
        };
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        // Plain Utf8 rather than views: what the merge and the value
        // decoding read.
        let mut config = SessionConfig::new();
        config.options_mut().execution.parquet.schema_force_view_types = false;
        Ok(Tables { root, options, open: Mutex::new(HashMap::new()), session: SessionContext::new_with_config(config) })
    }

    pub(super) fn root(&self) -> &Url {
        &self.root
    }

    fn url(&self, path: &str) -> StoreResult<Url> {
        self.root.join(&format!("{path}/")).map_err(|e| StoreError::Conflict(format!("table path '{path}': {e}")))
    }

    /// The table at its newest commit; `None` when it has none yet.
    pub(super) async fn latest(&self, path: &str) -> StoreResult<Option<DeltaTable>> {
        let cached = self.open.lock().expect("table handles").get(path).cloned();
        let mut table = match cached {
            Some(t) => t,
            None => {
                let url = self.url(path)?;
                if url.scheme() == "file" {
                    let dir = url.to_file_path().map_err(|()| StoreError::Conflict(format!("table path {url}")))?;
                    if !dir.join("_delta_log").exists() {
                        return Ok(None);
                    }
                }
                DeltaTable::try_from_url_with_storage_options(url, self.options.clone()).await.map_err(delta_err)?
            }
        };
        match table.update_incremental(None).await {
            Ok(()) => {}
            Err(DeltaTableError::NotATable(_)) => return Ok(None),
            Err(e) => return Err(delta_err(e)),
        }
        if table.version().is_none() {
            return Ok(None);
        }
        self.open.lock().expect("table handles").insert(path.to_string(), table.clone());
        Ok(Some(table))
    }

    /// Appends `batches` in one commit, creating the table (partitioned by
    /// event month) on first write and adding columns a definition gained.
    /// Returns the commit, or `None` when there was nothing to write.
    pub(super) async fn append(&self, path: &str, batches: Vec<RecordBatch>) -> StoreResult<Option<Commit>> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        let latest = self.latest(path).await?;
        let read = latest.as_ref().and_then(DeltaTable::version);
        let table = match latest {
            Some(t) => t,
            None => {
                let url = self.url(path)?;
                if url.scheme() == "file" {
                    let dir = url.to_file_path().map_err(|()| StoreError::Conflict(format!("table path {url}")))?;
                    std::fs::create_dir_all(&dir).map_err(|e| StoreError::Unavailable {
                        backend: BACKEND,
                        message: format!("creating {}: {e}", dir.display()),
                    })?;
                }
                DeltaTable::try_from_url_with_storage_options(url, self.options.clone()).await.map_err(delta_err)?
            }
        };
        let written = table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .with_partition_columns([EVENT_MONTH])
            .await
            .map_err(delta_err)?;
        let version = written.version().unwrap_or(0);
        let commit = Commit { read, version, only_change: version == read.map_or(0, |r| r + 1) };
        self.open.lock().expect("table handles").insert(path.to_string(), written);
        Ok(Some(commit))
    }

    /// The table's rows matching the predicate `filter` makes from the
    /// table's join keys (all rows for `None`), as DataFusion reads them:
    /// files pruned by partition and statistics.
    pub(super) async fn scan(
        &self,
        path: &str,
        filter: impl FnOnce(&[String]) -> Option<Expr>,
    ) -> StoreResult<Vec<RecordBatch>> {
        let Some(table) = self.latest(path).await? else {
            return Ok(Vec::new());
        };
        table.update_datafusion_session(&self.session.state()).map_err(delta_err)?;
        let provider = table.table_provider().await.map_err(df_err)?;
        let join_keys: Vec<String> = provider
            .schema()
            .fields()
            .iter()
            .take_while(|f| f.name() != super::layout::EVENT_TIMESTAMP)
            .map(|f| f.name().clone())
            .collect();
        let mut frame = self.session.read_table(provider).map_err(df_err)?;
        if let Some(filter) = filter(&join_keys) {
            frame = frame.filter(filter).map_err(df_err)?;
        }
        frame.collect().await.map_err(df_err)
    }

    /// Bin-packs the table's small files into large ones, then deletes the
    /// files no version newer than `retention` still needs. `None` when the
    /// table has no commit yet.
    pub(super) async fn compact(&self, path: &str, retention: Duration) -> StoreResult<Option<(Compaction, Commit)>> {
        let Some(table) = self.latest(path).await? else {
            return Ok(None);
        };
        let files_before = table.get_file_uris().map_err(delta_err)?.count() as u64;
        let read = table.version();
        let (table, metrics) = table.optimize().await.map_err(delta_err)?;
        let optimized = table.version();
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let (table, vacuumed) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await
            .map_err(delta_err)?;
        let version = table.version();
        self.open.lock().expect("table handles").insert(path.to_string(), table);
        // Each commit lands on the version it read unless another writer
        // came first: optimize adds at most one, vacuum two (start, end)
        // when it deletes anything.
        let optimize_commits = u64::from(optimized != read);
        let vacuum_commits = if vacuumed.files_deleted.is_empty() { 0 } else { 2 };
        let only_change =
            version.zip(read).is_some_and(|(v, r)| v == r + optimize_commits + vacuum_commits) || version == read;
        let commit = Commit { read, version: version.unwrap_or(0), only_change };
        Ok(Some((
            Compaction {
                table: path.to_string(),
                files_before,
                files_removed: metrics.num_files_removed,
                files_added: metrics.num_files_added,
                files_deleted: vacuumed.files_deleted.len() as u64,
            },
            commit,
        )))
    }

    /// The event months (days since the epoch of each month's first day,
    /// as the partition column holds them) that have files in the table's
    /// newest version, in order.
    pub(super) async fn months(&self, path: &str) -> StoreResult<Vec<i32>> {
        let Some(table) = self.latest(path).await? else {
            return Ok(Vec::new());
        };
        let state = table.snapshot().map_err(delta_err)?;
        let mut months = std::collections::BTreeSet::new();
        for file in state.log_data().iter() {
            let text = file.partition_values_map().get(EVENT_MONTH).cloned().flatten();
            let day = text.as_deref().and_then(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok());
            let day = day.ok_or_else(|| {
                StoreError::Corrupt(format!("a data file of table '{path}' has no readable {EVENT_MONTH} partition"))
            })?;
            months.insert((day - chrono::NaiveDate::default()).num_days() as i32);
        }
        Ok(months.into_iter().collect())
    }

    /// Data files in the table's newest version.
    pub(super) async fn file_count(&self, path: &str) -> StoreResult<u64> {
        match self.latest(path).await? {
            Some(table) => Ok(table.get_file_uris().map_err(delta_err)?.count() as u64),
            None => Ok(0),
        }
    }

    /// Deletes every object of the table.
    pub(super) async fn delete(&self, path: &str) -> StoreResult<()> {
        self.open.lock().expect("table handles").remove(path);
        let url = self.url(path)?;
        if url.scheme() == "file" {
            let dir = url.to_file_path().map_err(|()| StoreError::Conflict(format!("table path {url}")))?;
            return match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Unavailable {
                    backend: BACKEND,
                    message: format!("deleting {}: {e}", dir.display()),
                }),
                _ => Ok(()),
            };
        }
        let table =
            DeltaTable::try_from_url_with_storage_options(url, self.options.clone()).await.map_err(delta_err)?;
        let store = table.object_store();
        let locations = store.list(None).map(|meta| meta.map(|m| m.location)).boxed();
        let mut deleted = store.delete_stream(locations);
        while let Some(done) = deleted.next().await {
            done.map_err(|e| StoreError::Unavailable { backend: BACKEND, message: e.to_string() })?;
        }
        Ok(())
    }
}
