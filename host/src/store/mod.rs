//! Storage roles and their backends.
//!
//! Three roles, three traits: [`Registry`] (entities, sources, feature
//! groups, transform versions and their modules, jobs), [`OfflineStore`]
//! (source rows and the full history of feature rows) and [`OnlineStore`]
//! (the latest feature row per entity and group, for serving). Each backend
//! lives in one file; only this module runs SQL or talks to a cache.
//!
//! - `sqlite.rs`: the embedded default for registry and offline store.
//! - `postgres.rs`: the production registry and offline store (PostgreSQL).
//! - `memory.rs`: the in-process online store (dashmap) with per-group TTL.
//! - `redis.rs`: the Redis online store (one hash per group and entity, hash-tagged by entity).
//! - `pg_listen.rs`: registry change announcements from PostgreSQL (LISTEN/NOTIFY).

#[cfg(test)]
mod conformance;
pub mod delta;
pub mod memory;
mod pg_listen;
pub mod postgres;
pub mod redis;
mod sql;
pub mod sqlite;
mod stored;

pub use delta::{AsOfColumns, FeatureBatch};

use crate::model::{
    AuditEntry, Entity, EntityKey, FeatureGroup, FeatureRow, FeatureStatistics, FreshnessCounts, Job, JobTask,
    LeasedTask, Source, SourceRow, Table, TaskOutcome, Timestamp, TransformSettings, TransformSummary,
    TransformVersion, ValueType,
};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or failed; retrying may succeed.
    #[error("{backend} is unavailable: {message}")]
    Unavailable { backend: &'static str, message: String },
    /// The write conflicts with what is stored (e.g. different bytes for an
    /// existing transform version).
    #[error("{0}")]
    Conflict(String),
    /// Stored data could not be decoded; a bug or a hand-edited database.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An edit of a transform's settings, applied inside the store's
/// transaction by [`Registry::update_transform_settings`].
pub type SettingsChange = dyn Fn(&mut TransformSettings) + Send + Sync;

/// Outcome of storing a transform version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionInsert {
    /// A new version was stored.
    Created,
    /// The same name, version and bytes were already stored; nothing changed.
    AlreadyExists,
}

/// Outcome of deleting a transform version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionDelete {
    /// Deleted, and its module bytes too when no other version shares them.
    Deleted,
    NotFound,
    /// The version is the active one or the rollback target; nothing changed.
    InUse(&'static str),
}

/// A registry write announced by the store, possibly made by another host
/// sharing it. Hosts refresh what they cache of the named object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    Entity(String),
    Source(String),
    FeatureGroup(String),
    /// The transform's lifecycle or one of its versions.
    Transform(String),
    /// A job was created: idle hosts should look for tasks.
    JobCreated(String),
    /// Rows of `source` were written for `entities` (`None`: entities not
    /// named, any may have changed) by host `origin`, which announces it
    /// after the write is durable and before acknowledging it.
    SourceRows {
        source: String,
        entities: Option<Vec<String>>,
        origin: String,
    },
    /// Announcements may have been missed (the listener reconnected):
    /// reload everything.
    Resync,
}

/// Which rows of an entity's source history to read, oldest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceRange {
    /// Keep only the newest `last` rows (applied after the time bounds).
    pub last: Option<u32>,
    /// Only rows with ts <= `until`.
    pub until: Option<Timestamp>,
}

/// A point-in-time lookup answered as columns
/// ([`OfflineStore::feature_columns_as_of`]): the points `keys[i]` at
/// `times[i]`, and what to answer of the row known at each.
#[derive(Debug, Clone, Copy)]
pub struct AsOfPoints<'a> {
    pub keys: &'a [EntityKey],
    pub times: &'a [Timestamp],
    pub rules: AsOfRules,
    /// The features to answer, each of its declared type.
    pub features: &'a [(String, ValueType)],
    /// Whether to answer the found rows' provenance too.
    pub provenance: bool,
}

/// How a point-in-time lookup ([`OfflineStore::feature_rows_as_of`])
/// chooses the row known at each point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsOfRules {
    /// Only rows with `at - max_age <= event time` (inclusive); `None`:
    /// no lower bound.
    pub max_age: Option<Duration>,
    /// Only rows created at or before the point's time, so values
    /// backfilled or corrected later do not leak into what was "known".
    /// Applies to rows whose writer gave the created time
    /// ([`FeatureRow::created_given`]); rows the server stamped (pushes
    /// without one, materialized rows) are never hidden by it, though their
    /// created time still breaks ties.
    pub created_cutoff: bool,
}

impl AsOfRules {
    /// The point's bounds in stored units (microseconds): the earliest event
    /// time and the latest created time a row may have.
    pub(crate) fn bounds(&self, at: Timestamp) -> (i64, i64) {
        let earliest = match self.max_age {
            Some(age) => at.0.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX)),
            None => i64::MIN,
        };
        let created_max = if self.created_cutoff { at.0 } else { i64::MAX };
        (earliest, created_max)
    }
}

/// Registry of definitions, transform versions with their module bytes, and
/// job history. Writes here are rare and must be durable before they return.
#[async_trait]
pub trait Registry: Send + Sync {
    async fn put_entity(&self, entity: &Entity) -> StoreResult<()>;
    async fn get_entity(&self, name: &str) -> StoreResult<Option<Entity>>;
    async fn list_entities(&self) -> StoreResult<Vec<Entity>>;
    /// Returns whether something was deleted.
    async fn delete_entity(&self, name: &str) -> StoreResult<bool>;

    async fn put_source(&self, source: &Source) -> StoreResult<()>;
    async fn get_source(&self, name: &str) -> StoreResult<Option<Source>>;
    async fn list_sources(&self) -> StoreResult<Vec<Source>>;
    async fn delete_source(&self, name: &str) -> StoreResult<bool>;

    async fn put_feature_group(&self, group: &FeatureGroup) -> StoreResult<()>;
    async fn get_feature_group(&self, name: &str) -> StoreResult<Option<FeatureGroup>>;
    async fn list_feature_groups(&self) -> StoreResult<Vec<FeatureGroup>>;
    async fn delete_feature_group(&self, name: &str) -> StoreResult<bool>;

    /// Stores a version and its module bytes (by sha256) in one transaction.
    /// Same name+version with a different sha256 -> `StoreError::Conflict`.
    async fn insert_transform_version(&self, version: &TransformVersion, module: &[u8]) -> StoreResult<VersionInsert>;
    async fn get_transform_version(&self, name: &str, version: &str) -> StoreResult<Option<TransformVersion>>;
    /// Deletes a version unless it is the transform's active or previous
    /// (rollback) version, checked in the same transaction as activations
    /// are, so a concurrent activation cannot point at a deleted version.
    async fn delete_transform_version(&self, name: &str, version: &str) -> StoreResult<VersionDelete>;
    async fn get_module(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn get_transform(&self, name: &str) -> StoreResult<Option<TransformSummary>>;
    async fn list_transforms(&self) -> StoreResult<Vec<TransformSummary>>;
    /// Makes `version` the active one; the previously active version is
    /// remembered for rollback. `None` disables the transform.
    async fn set_active_version(&self, name: &str, version: Option<&str>) -> StoreResult<()>;
    /// Changes a transform's settings in one transaction (read, `change`,
    /// write), so concurrent admin calls do not lose each other's changes.
    /// Returns the new settings; `None` when the transform does not exist.
    async fn update_transform_settings(
        &self,
        name: &str,
        change: &SettingsChange,
    ) -> StoreResult<Option<TransformSettings>>;

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>>;
    async fn list_jobs(&self, feature_group: Option<&str>, limit: u32) -> StoreResult<Vec<Job>>;

    /// Stores a job and its tasks in one transaction; the tasks are then
    /// open for any host sharing the store to lease.
    async fn create_job(&self, job: &Job, tasks: &[JobTask]) -> StoreResult<()>;
    /// Leases the oldest open task for `owner`: a pending one, or one whose
    /// holder's lease has expired. Concurrent callers never get the same
    /// task. Lease times are on the store's own clock.
    async fn lease_task(&self, owner: &str, lease: Duration) -> StoreResult<Option<LeasedTask>>;
    /// Extends `owner`'s lease; `false` when it no longer holds the task.
    async fn renew_lease(&self, job_id: &str, task_no: u32, owner: &str, lease: Duration) -> StoreResult<bool>;
    /// Gives a task back unfinished (a host shutting down) so another host
    /// can take it at once.
    async fn release_task(&self, job_id: &str, task_no: u32, owner: &str) -> StoreResult<()>;
    /// Marks the task done and adds its outcome to the job, in one
    /// transaction; the call that completes the last open task finishes the
    /// job. `None` when `outcome.host` no longer holds the task (its lease
    /// expired and another host took it over), so nothing is counted twice.
    async fn complete_task(
        &self,
        job_id: &str,
        task_no: u32,
        outcome: &TaskOutcome,
        now: Timestamp,
    ) -> StoreResult<Option<Job>>;

    /// Claims the scheduled run of `group` due at or before `now`, and sets
    /// the next one to `next`. A group seen for the first time is
    /// registered with its first run at `next` (one interval on). Of several
    /// hosts claiming the same run, exactly one gets `true`.
    async fn claim_schedule(&self, group: &str, now: Timestamp, next: Timestamp) -> StoreResult<bool>;

    /// Appends one entry to the audit trail.
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The newest `limit` entries, newest first.
    async fn list_audit(&self, limit: u32) -> StoreResult<Vec<AuditEntry>>;

    /// Announcements of registry writes made by any host sharing this
    /// store. `None` when the store serves one host only (SQLite), where
    /// every write goes through this process anyway.
    async fn changes(&self) -> StoreResult<Option<mpsc::Receiver<RegistryChange>>> {
        Ok(None)
    }

    /// Tells every host listening to [`Registry::changes`] (this one too)
    /// of a change the store's own writes do not announce. A no-op where
    /// the store serves one host only.
    async fn announce(&self, _change: &RegistryChange) -> StoreResult<()> {
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()>;
}

/// What a write needs to know of its offline table: the source's or
/// group's name, the entity's join keys and the declared value columns. The
/// lakehouse store creates (or widens) a typed table from it; the SQL stores
/// need only the name.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub join_keys: Vec<String>,
    pub columns: Vec<(String, ValueType)>,
}

impl TableDef {
    pub fn of_source(source: &Source, entity: &Entity) -> Self {
        TableDef {
            name: source.name.clone(),
            join_keys: entity.join_keys.clone(),
            columns: source.fields.iter().map(|f| (f.name.clone(), f.value_type)).collect(),
        }
    }

    pub fn of_group(group: &FeatureGroup, entity: &Entity) -> Self {
        TableDef {
            name: group.name.clone(),
            join_keys: entity.join_keys.clone(),
            columns: group.features.iter().map(|f| (f.name.clone(), f.value_type)).collect(),
        }
    }
}

/// Source rows and feature history. Every write is durable before it returns
/// and idempotent: source rows upsert on (source, entity, ts); feature rows
/// upsert on (group, entity, event time, created time).
#[async_trait]
pub trait OfflineStore: Send + Sync {
    /// Returns the number of rows written.
    async fn write_source_rows(&self, source: &TableDef, rows: &[SourceRow]) -> StoreResult<u64>;
    /// One entity's rows in ascending ts.
    async fn read_source(&self, source: &str, entity: &EntityKey, range: SourceRange) -> StoreResult<Vec<SourceRow>>;
    /// [`OfflineStore::read_source`] of each of `entities`, as tables of
    /// `source`'s columns aligned with them: what batch transforms read. A
    /// columnar store slices its columns from one read of the table.
    async fn read_source_tables(
        &self,
        source: &TableDef,
        entities: &[EntityKey],
        range: SourceRange,
    ) -> StoreResult<Vec<Table>> {
        let mut tables = Vec::with_capacity(entities.len());
        for entity in entities {
            let rows = self.read_source(&source.name, entity, range).await?;
            tables.push(Table::of_source_rows(&source.columns, &rows));
        }
        Ok(tables)
    }
    /// Entities with at least one row in the source, with their newest ts.
    async fn source_entities(&self, source: &str) -> StoreResult<Vec<(EntityKey, Timestamp)>>;
    async fn delete_source_rows(&self, source: &str) -> StoreResult<()>;
    /// When the newest row of the source was ingested (the store's clock).
    /// Exact: no write still in flight can later add a row stamped at or
    /// before it, so "rows ingested after the watermark" misses nothing.
    async fn source_ingest_watermark(&self, source: &str) -> StoreResult<Option<Timestamp>>;
    /// Entities with rows ingested after `after` (the store's clock), each
    /// with the earliest event time among those rows: what an incremental
    /// run must recompute from.
    async fn source_changes(&self, source: &str, after: Timestamp) -> StoreResult<Vec<(EntityKey, Timestamp)>>;

    async fn write_feature_rows(&self, group: &TableDef, rows: &[FeatureRow]) -> StoreResult<u64>;
    /// [`OfflineStore::write_feature_rows`] of rows given as columns (a
    /// bulk load): a columnar store writes them as they are.
    async fn write_feature_batch(&self, group: &TableDef, batch: &FeatureBatch) -> StoreResult<u64> {
        self.write_feature_rows(group, &batch.rows()?).await
    }
    /// The latest row per entity (max event time, then max created), `None`
    /// where the entity has none. Output is aligned with `entities`.
    async fn latest_feature_rows(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>>;
    async fn delete_feature_rows(&self, group: &str) -> StoreResult<()>;
    /// Point-in-time lookup, aligned with `points`: for each (entity, at),
    /// among the rows with event time at or before `at` (and within the
    /// rules' bounds) the one with the latest event time, the latest created
    /// among ties; `None` where there is none. Never a row from after `at`.
    async fn feature_rows_as_of(
        &self,
        group: &str,
        points: &[(EntityKey, Timestamp)],
        rules: AsOfRules,
    ) -> StoreResult<Vec<Option<FeatureRow>>>;
    /// [`OfflineStore::feature_rows_as_of`] answered as columns: the found
    /// rows' values of the asked features (each of its declared type) and,
    /// if asked, their provenance. Training data is read this way, so a
    /// columnar store gathers the values without a row per point.
    async fn feature_columns_as_of(&self, group: &str, points: AsOfPoints<'_>) -> StoreResult<AsOfColumns> {
        let rows: Vec<(EntityKey, Timestamp)> = points.keys.iter().cloned().zip(points.times.iter().copied()).collect();
        let rows = self.feature_rows_as_of(group, &rows, points.rules).await?;
        Ok(AsOfColumns::from_rows(&rows, points.features, points.provenance))
    }

    /// Counts the group's entities by the age of their newest row: expired
    /// when it is before `expired_before`, else stale when before
    /// `stale_before`, else fresh (`None`: no such bound).
    async fn freshness(
        &self,
        group: &str,
        stale_before: Option<Timestamp>,
        expired_before: Option<Timestamp>,
    ) -> StoreResult<FreshnessCounts>;
    /// Statistics of each named feature over every stored row of the group;
    /// `numeric` says which features get mean, std, min, max and percentiles.
    async fn feature_statistics(&self, group: &str, features: &[(String, bool)])
    -> StoreResult<Vec<FeatureStatistics>>;

    /// Rewrites the named tables' small files into large ones and deletes
    /// files superseded more than `retention` ago (after flushing what
    /// waits). Stores without files to compact answer nothing.
    async fn compact(
        &self,
        _sources: &[String],
        _groups: &[String],
        _retention: Duration,
    ) -> StoreResult<Vec<Compaction>> {
        Ok(Vec::new())
    }

    /// Puts away what waits for a later write (the lakehouse store's write
    /// log); called once at shutdown.
    async fn close(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()>;
}

/// One acknowledged write waiting in the write log: an Arrow IPC stream of
/// rows for one offline table, in that table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Orders every write of every table; newer writes of the same row key
    /// win, whether they are still in the log or already in the table.
    pub seq: i64,
    pub payload: Vec<u8>,
    pub rows: u64,
    /// When the entry was appended (the store's clock).
    pub written_at: Timestamp,
}

/// A table with entries waiting in the write log.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTable {
    pub table: String,
    pub entries: u64,
    pub rows: u64,
    pub bytes: u64,
    /// When its oldest waiting entry was appended.
    pub oldest: Timestamp,
}

/// The durable write log of the lakehouse offline store, kept in the
/// registry database: small acknowledged writes land here in one cheap
/// transaction and are flushed to their table in batches later, so a pushed
/// row never costs a Parquet file and a table commit of its own.
///
/// Tables are named by the offline store (e.g. `features/technical`); the
/// log does not look inside payloads.
#[async_trait]
pub trait WriteLog: Send + Sync {
    /// Appends one entry durably and returns its `seq` and `written_at`.
    /// Appends to one table are stamped in commit order, so
    /// [`WriteLog::newest_written`] is exact.
    async fn append(&self, table: &str, payload: &[u8], rows: u64) -> StoreResult<(i64, Timestamp)>;
    /// A fresh sequence number from the same sequence as `append`'s, for a
    /// write that goes to its table directly.
    async fn next_seq(&self) -> StoreResult<i64>;
    /// The table's waiting entries, oldest first; at most `max_rows` rows in
    /// all (but always at least one entry when any waits).
    async fn entries(&self, table: &str, max_rows: u64) -> StoreResult<Vec<LogEntry>>;
    /// Removes the named entries once they are in the table.
    async fn remove(&self, table: &str, seqs: &[i64]) -> StoreResult<()>;
    /// Removes every waiting entry of the table (the table was deleted).
    async fn clear(&self, table: &str) -> StoreResult<()>;
    /// Tables with waiting entries.
    async fn pending(&self) -> StoreResult<Vec<PendingTable>>;
    /// The seqs of the table's waiting entries, ascending: what a reader
    /// that keeps rows in memory compares with the entries it holds (seqs
    /// only grow, so a seq it has not seen is a new entry).
    async fn seqs(&self, table: &str) -> StoreResult<Vec<i64>>;
    /// Those of the named entries that still wait, oldest first.
    async fn entries_in(&self, table: &str, seqs: &[i64]) -> StoreResult<Vec<LogEntry>>;
    /// When the newest waiting entry of the table was appended. It waits
    /// for appends in flight, so no entry stamped earlier can appear after
    /// it returns.
    async fn newest_written(&self, table: &str) -> StoreResult<Option<Timestamp>>;
    /// Takes or renews the named lease for `owner` (one flusher per table
    /// across every host sharing the registry); `false` while another
    /// owner's lease has not expired. Lease times are on the store's clock.
    async fn lease(&self, name: &str, owner: &str, lease: Duration) -> StoreResult<bool>;
    /// Gives the lease up, if `owner` holds it.
    async fn release(&self, name: &str, owner: &str) -> StoreResult<()>;
}

/// What compacting one offline table did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Compaction {
    /// `sources/<name>` or `features/<name>`.
    pub table: String,
    /// Data files before, and how many were rewritten into how many.
    pub files_before: u64,
    pub files_removed: u64,
    pub files_added: u64,
    /// Superseded files deleted from storage.
    pub files_deleted: u64,
}

/// The latest feature row per (group, entity), for low-latency serving.
#[async_trait]
pub trait OnlineStore: Send + Sync {
    /// Stores rows, keeping per entity the row with the newest event time (a
    /// row older than the stored one is ignored). `ttl` bounds how long the
    /// row is kept.
    async fn write(&self, group: &str, rows: &[FeatureRow], ttl: Option<Duration>) -> StoreResult<()>;
    /// Aligned with `entities`; `None` for a miss.
    async fn read(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>>;
    /// [`OnlineStore::read`] as shared rows: what serving reads, so an
    /// in-process store hands out the rows it holds without copying them.
    async fn read_shared(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<Arc<FeatureRow>>>> {
        Ok(self.read(group, entities).await?.into_iter().map(|row| row.map(Arc::new)).collect())
    }
    async fn delete_group(&self, group: &str) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    /// One line for the startup log, e.g. "in-process (dashmap)".
    fn summary(&self) -> String;
}
