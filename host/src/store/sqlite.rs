//! The embedded backend: one SQLite file holds the registry, the module
//! bytes, the job history and the write log of the offline tables
//! (`store::delta`). Offline rows that earlier versions kept here are read
//! once, to be imported into the tables.
//!
//! Durability: WAL with `synchronous = FULL`, so a write is on disk when its
//! commit returns. Concurrency: one writer connection (SQLite serializes
//! writers anyway; queueing them in the pool is cheaper than busy-waiting on
//! the file lock) and a few reader connections, which WAL lets run alongside
//! the writer. Every write is one `BEGIN IMMEDIATE` transaction, so a write
//! that starts by reading never has to upgrade its lock.
//!

use super::sql::{
    AUDIT_INSERT_SQL, AUDIT_LIST_SQL, AuditRow, CLAIM_SCHEDULE_SQL, DELETE_UNUSED_MODULE_SQL, DELETE_VERSION_SQL,
    LOG_CLEAR_SQL, LOG_ENTRIES_SQL, LOG_PENDING_SQL, LeasedRow, LogRow, Named, REGISTER_SCHEDULE_SQL,
    RELEASE_LOG_LEASE_SQL, TRANSFORM_COLUMNS, TransformRow, VersionRow, from_spec, job_from_spec, job_spec,
    job_state_name, pending_table, settings_from_json, settings_to_json, spec_json, sqlite_placeholders,
    take_log_lease_sql, task_columns, values_from_json, version_in_use,
};
use super::{
    LogEntry, PendingTable, Registry, SettingsChange, StoreError, StoreResult, VersionDelete, VersionInsert, WriteLog,
};
use crate::clock::{Clock, SystemClock};
use crate::model::{
    AuditEntry, Entity, EntityKey, FeatureGroup, FeatureRow, Job, JobTask, LeasedTask, Source, SourceRow, TaskOutcome,
    Timestamp, TransformSettings, TransformSummary, TransformVersion,
};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

const BACKEND: &str = "sqlite";

const READER_CONNECTIONS: u32 = 4;

/// Bytes of the database file each reader maps (address space, not
/// memory); SQLite caps it at its compile-time maximum (2 GiB by default),
/// and reads past the mapped part as usual.
const READER_MMAP_BYTES: u64 = 1 << 31;

/// Registry, module store, job history and offline store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Exactly one connection: all writes queue here.
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| unavailable(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        MIGRATOR.run(&writer).await.map_err(|e| unavailable(format!("migrating {} failed: {e}", path.display())))?;
        // Readers map the file instead of copying every page they touch
        // through read(2): point-in-time lookups seek all over a large
        // history.
        let reader_options = options.pragma("mmap_size", READER_MMAP_BYTES.to_string());
        let readers = SqlitePoolOptions::new()
            .max_connections(READER_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(reader_options)
            .await
            .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        Ok(SqliteStore { writer, readers })
    }

    /// Waits for in-flight work and closes every connection, checkpointing
    /// the WAL into the main file.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }

    async fn put_spec<T: Serialize>(&self, table: &str, name: &str, value: &T) -> StoreResult<()> {
        let spec = spec_json(value)?;
        let sql = format!(
            "INSERT INTO {table} (name, spec, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at"
        );
        let mut tx = self.begin().await?;
        sqlx::query(&sql).bind(name).bind(spec).bind(now_micros()).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_spec<T: DeserializeOwned + Named>(&self, table: &str, name: &str) -> StoreResult<Option<T>> {
        let sql = format!("SELECT spec FROM {table} WHERE name = ?1");
        let spec: Option<String> =
            sqlx::query_scalar(&sql).bind(name).fetch_optional(&self.readers).await.map_err(db_err)?;
        spec.map(|s| from_spec(table, name, &s)).transpose()
    }

    async fn list_specs<T: DeserializeOwned + Named>(&self, table: &str) -> StoreResult<Vec<T>> {
        let sql = format!("SELECT name, spec FROM {table} ORDER BY name");
        let rows: Vec<(String, String)> = sqlx::query_as(&sql).fetch_all(&self.readers).await.map_err(db_err)?;
        rows.iter().map(|(name, spec)| from_spec(table, name, spec)).collect()
    }

    async fn delete_spec(&self, table: &str, name: &str) -> StoreResult<bool> {
        let sql = format!("DELETE FROM {table} WHERE name = ?1");
        let mut tx = self.begin().await?;
        let done = sqlx::query(&sql).bind(name).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn versions_of(&self, name: Option<&str>) -> StoreResult<Vec<TransformVersion>> {
        // Few rows per transform, so one statement serves both cases.
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT name, version, sha256, size_bytes, descriptor, created_at FROM transform_versions \
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name, created_at, version",
        )
        .bind(name)
        .fetch_all(&self.readers)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(VersionRow::into_version).collect()
    }
}

// ---------------------------------------------------------------------------
// Registry

#[async_trait]
impl Registry for SqliteStore {
    async fn put_entity(&self, entity: &Entity) -> StoreResult<()> {
        self.put_spec("entities", &entity.name, entity).await
    }
    async fn get_entity(&self, name: &str) -> StoreResult<Option<Entity>> {
        self.get_spec("entities", name).await
    }
    async fn list_entities(&self) -> StoreResult<Vec<Entity>> {
        self.list_specs("entities").await
    }
    async fn delete_entity(&self, name: &str) -> StoreResult<bool> {
        self.delete_spec("entities", name).await
    }

    async fn put_source(&self, source: &Source) -> StoreResult<()> {
        self.put_spec("sources", &source.name, source).await
    }
    async fn get_source(&self, name: &str) -> StoreResult<Option<Source>> {
        self.get_spec("sources", name).await
    }
    async fn list_sources(&self) -> StoreResult<Vec<Source>> {
        self.list_specs("sources").await
    }
    async fn delete_source(&self, name: &str) -> StoreResult<bool> {
        self.delete_spec("sources", name).await
    }

    async fn put_feature_group(&self, group: &FeatureGroup) -> StoreResult<()> {
        self.put_spec("feature_groups", &group.name, group).await
    }
    async fn get_feature_group(&self, name: &str) -> StoreResult<Option<FeatureGroup>> {
        self.get_spec("feature_groups", name).await
    }
    async fn list_feature_groups(&self) -> StoreResult<Vec<FeatureGroup>> {
        self.list_specs("feature_groups").await
    }
    async fn delete_feature_group(&self, name: &str) -> StoreResult<bool> {
        self.delete_spec("feature_groups", name).await
    }

    async fn insert_transform_version(&self, v: &TransformVersion, module: &[u8]) -> StoreResult<VersionInsert> {
        debug_assert_eq!(v.sha256, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(module)));
        let descriptor = serde_json::to_string(&v.descriptor)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode descriptor: {e}")))?;
        let size = i64::try_from(v.size_bytes).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM transform_versions WHERE name = ?1 AND version = ?2")
                .bind(&v.name)
                .bind(&v.version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        match existing {
            Some(sha) if sha == v.sha256 => return Ok(VersionInsert::AlreadyExists),
            Some(sha) => {
                return Err(StoreError::Conflict(format!(
                    "version {} of {} already exists with different bytes (sha256 {sha})",
                    v.version, v.name
                )));
            }
            None => {}
        }
        let now = now_micros();
        sqlx::query("INSERT OR IGNORE INTO transforms (name, status, updated_at) VALUES (?1, 'inactive', ?2)")
            .bind(&v.name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT OR IGNORE INTO modules (sha256, bytes, size_bytes, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(&v.sha256)
            .bind(module)
            .bind(module.len() as i64)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO transform_versions (name, version, sha256, size_bytes, descriptor, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&v.name)
        .bind(&v.version)
        .bind(&v.sha256)
        .bind(size)
        .bind(descriptor)
        .bind(v.created_at.0)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(VersionInsert::Created)
    }

    async fn get_transform_version(&self, name: &str, version: &str) -> StoreResult<Option<TransformVersion>> {
        let row: Option<VersionRow> = sqlx::query_as(
            "SELECT name, version, sha256, size_bytes, descriptor, created_at FROM transform_versions \
             WHERE name = ?1 AND version = ?2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(&self.readers)
        .await
        .map_err(db_err)?;
        row.map(VersionRow::into_version).transpose()
    }

    async fn get_module(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT bytes FROM modules WHERE sha256 = ?1")
            .bind(sha256)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)
    }

    async fn get_transform(&self, name: &str) -> StoreResult<Option<TransformSummary>> {
        let row: Option<TransformRow> =
            sqlx::query_as(&format!("SELECT {TRANSFORM_COLUMNS} FROM transforms WHERE name = ?1"))
                .bind(name)
                .fetch_optional(&self.readers)
                .await
                .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let versions = self.versions_of(Some(name)).await?;
        Ok(Some(row.into_summary(versions)?))
    }

    async fn list_transforms(&self) -> StoreResult<Vec<TransformSummary>> {
        let rows: Vec<TransformRow> =
            sqlx::query_as(&format!("SELECT {TRANSFORM_COLUMNS} FROM transforms ORDER BY name"))
                .fetch_all(&self.readers)
                .await
                .map_err(db_err)?;
        let mut by_name: HashMap<String, Vec<TransformVersion>> = HashMap::new();
        for v in self.versions_of(None).await? {
            by_name.entry(v.name.clone()).or_default().push(v);
        }
        rows.into_iter()
            .map(|row| {
                let versions = by_name.remove(&row.name).unwrap_or_default();
                row.into_summary(versions)
            })
            .collect()
    }

    /// Activating `v` makes the version it replaces the rollback target.
    /// Disabling keeps the disabled version as the rollback target, so a
    /// rollback re-enables it. Unknown transforms or versions are a
    /// `Conflict` (callers check existence first to answer 404).
    async fn delete_transform_version(&self, name: &str, version: &str) -> StoreResult<VersionDelete> {
        let mut tx = self.begin().await?;
        let lifecycle: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT active_version, previous_version FROM transforms WHERE name = ?1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some((active, previous)) = lifecycle else {
            return Ok(VersionDelete::NotFound);
        };
        if let Some(what) = version_in_use(active.as_deref(), previous.as_deref(), version) {
            return Ok(VersionDelete::InUse(what));
        }
        let sha256: Option<String> = sqlx::query_scalar(&sqlite_placeholders(DELETE_VERSION_SQL))
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(sha256) = sha256 else {
            return Ok(VersionDelete::NotFound);
        };
        sqlx::query(&sqlite_placeholders(DELETE_UNUSED_MODULE_SQL))
            .bind(&sha256)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(VersionDelete::Deleted)
    }

    async fn set_active_version(&self, name: &str, version: Option<&str>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let current: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT active_version, previous_version FROM transforms WHERE name = ?1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some((active, previous)) = current else {
            return Err(StoreError::Conflict(format!("transform '{name}' does not exist")));
        };
        let (new_active, new_previous, status) = match version {
            Some(v) => {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM transform_versions WHERE name = ?1 AND version = ?2")
                        .bind(name)
                        .bind(v)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                if exists.is_none() {
                    return Err(StoreError::Conflict(format!("transform '{name}' has no version {v}")));
                }
                let new_previous = match active {
                    Some(a) if a != v => Some(a),
                    Some(_) => previous,
                    // Re-enabling the disabled version: nothing older is known.
                    None => previous.filter(|p| p != v),
                };
                (Some(v.to_string()), new_previous, "active")
            }
            None => match active {
                Some(a) => (None, Some(a), "disabled"),
                // Never active or already disabled: nothing to switch off.
                None => return Ok(()),
            },
        };
        sqlx::query(
            "UPDATE transforms SET active_version = ?2, previous_version = ?3, status = ?4, updated_at = ?5 \
             WHERE name = ?1",
        )
        .bind(name)
        .bind(new_active)
        .bind(new_previous)
        .bind(status)
        .bind(now_micros())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_transform_settings(
        &self,
        name: &str,
        change: &SettingsChange,
    ) -> StoreResult<Option<TransformSettings>> {
        let mut tx = self.begin().await?;
        let current: Option<String> = sqlx::query_scalar("SELECT settings FROM transforms WHERE name = ?1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(current) = current else { return Ok(None) };
        let mut settings = settings_from_json(name, &current)?;
        change(&mut settings);
        sqlx::query("UPDATE transforms SET settings = ?2, updated_at = ?3 WHERE name = ?1")
            .bind(name)
            .bind(settings_to_json(&settings)?)
            .bind(now_micros())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(settings))
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        let spec: Option<String> = sqlx::query_scalar("SELECT spec FROM jobs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        spec.as_deref().map(job_from_spec).transpose()
    }

    async fn list_jobs(&self, feature_group: Option<&str>, limit: u32) -> StoreResult<Vec<Job>> {
        let specs: Vec<String> = match feature_group {
            Some(group) => {
                sqlx::query_scalar(
                    "SELECT spec FROM jobs WHERE feature_group = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
                )
                .bind(group)
                .bind(i64::from(limit))
                .fetch_all(&self.readers)
                .await
            }
            None => {
                sqlx::query_scalar("SELECT spec FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.readers)
                    .await
            }
        }
        .map_err(db_err)?;
        specs.iter().map(|s| job_from_spec(s)).collect()
    }

    async fn create_job(&self, job: &Job, tasks: &[JobTask]) -> StoreResult<()> {
        let spec = job_spec(job)?;
        let columns = tasks.iter().map(task_columns).collect::<StoreResult<Vec<_>>>()?;
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO jobs (id, feature_group, state, spec, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(&job.id)
            .bind(&job.feature_group)
            .bind(job_state_name(job.state))
            .bind(spec)
            .bind(job.created_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for (task, (entities, after)) in tasks.iter().zip(columns) {
            sqlx::query(
                "INSERT INTO job_tasks (job_id, task_no, created_at, entities, after_json) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&job.id)
            .bind(i64::from(task.task_no))
            .bind(job.created_at.0)
            .bind(entities)
            .bind(after)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn lease_task(&self, owner: &str, lease: Duration) -> StoreResult<Option<LeasedTask>> {
        let now = now_micros();
        // One writer: the subquery and the update cannot interleave with
        // another lease.
        let row: Option<LeasedRow> = sqlx::query_as(
            "UPDATE job_tasks SET state = 'leased', owner = ?1, lease_expires_at = ?2, attempts = attempts + 1 \
             WHERE (job_id, task_no) IN ( \
                 SELECT job_id, task_no FROM job_tasks \
                 WHERE state = 'pending' OR (state = 'leased' AND lease_expires_at < ?3) \
                 ORDER BY created_at, job_id, task_no LIMIT 1) \
             RETURNING job_id, task_no, entities, after_json, attempts",
        )
        .bind(owner)
        .bind(now + micros(lease))
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        row.map(LeasedRow::into_leased).transpose()
    }

    async fn renew_lease(&self, job_id: &str, task_no: u32, owner: &str, lease: Duration) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE job_tasks SET lease_expires_at = ?4 \
             WHERE job_id = ?1 AND task_no = ?2 AND owner = ?3 AND state = 'leased'",
        )
        .bind(job_id)
        .bind(i64::from(task_no))
        .bind(owner)
        .bind(now_micros() + micros(lease))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_task(&self, job_id: &str, task_no: u32, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE job_tasks SET state = 'pending', owner = NULL, lease_expires_at = NULL \
             WHERE job_id = ?1 AND task_no = ?2 AND owner = ?3 AND state = 'leased'",
        )
        .bind(job_id)
        .bind(i64::from(task_no))
        .bind(owner)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn claim_schedule(&self, group: &str, now: Timestamp, next: Timestamp) -> StoreResult<bool> {
        sqlx::query(&sqlite_placeholders(REGISTER_SCHEDULE_SQL))
            .bind(group)
            .bind(next.0)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        let claimed: Option<String> = sqlx::query_scalar(&sqlite_placeholders(CLAIM_SCHEDULE_SQL))
            .bind(group)
            .bind(now.0)
            .bind(next.0)
            .fetch_optional(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(claimed.is_some())
    }

    async fn complete_task(
        &self,
        job_id: &str,
        task_no: u32,
        outcome: &TaskOutcome,
        now: Timestamp,
    ) -> StoreResult<Option<Job>> {
        let mut tx = self.begin().await?;
        let held = sqlx::query(
            "UPDATE job_tasks SET state = 'done', finished_at = ?4 \
             WHERE job_id = ?1 AND task_no = ?2 AND owner = ?3 AND state = 'leased'",
        )
        .bind(job_id)
        .bind(i64::from(task_no))
        .bind(&outcome.host)
        .bind(now_micros())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if held.rows_affected() == 0 {
            return Ok(None);
        }
        let spec: String = sqlx::query_scalar("SELECT spec FROM jobs WHERE id = ?1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_tasks WHERE job_id = ?1 AND state <> 'done'")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut job = job_from_spec(&spec)?;
        job.record_task(outcome, open == 0, now);
        sqlx::query("UPDATE jobs SET state = ?2, spec = ?3 WHERE id = ?1")
            .bind(job_id)
            .bind(job_state_name(job.state))
            .bind(job_spec(&job)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(job))
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        sqlx::query(&sqlite_placeholders(AUDIT_INSERT_SQL))
            .bind(entry.at.0)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(entry.details.to_string())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_audit(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(&sqlite_placeholders(AUDIT_LIST_SQL))
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(AuditRow::into_entry).collect()
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map_err(db_err)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Offline rows of earlier versions

/// Offline history that versions before the lakehouse tables kept in this
/// file (`source_rows`, `feature_rows`); read once to import it into the
/// tables (`store::delta::import`), then dropped.
impl SqliteStore {
    /// The sources and groups with rows still in this file.
    pub async fn legacy_offline_names(&self) -> StoreResult<(Vec<String>, Vec<String>)> {
        let sources: Vec<String> = sqlx::query_scalar("SELECT DISTINCT source FROM source_rows ORDER BY source")
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        let groups: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT group_name FROM feature_rows ORDER BY group_name")
                .fetch_all(&self.readers)
                .await
                .map_err(db_err)?;
        Ok((sources, groups))
    }

    /// A source's rows with when each was ingested.
    pub async fn legacy_source_rows(&self, source: &str) -> StoreResult<Vec<(SourceRow, Timestamp)>> {
        let rows: Vec<(String, i64, String, i64)> = sqlx::query_as(
            "SELECT entity_key, ts, values_json, ingested_at FROM source_rows WHERE source = ?1 \
             ORDER BY entity_key, ts",
        )
        .bind(source)
        .fetch_all(&self.readers)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(key, ts, values, ingested)| {
                let row = SourceRow { entity: EntityKey(key), ts: Timestamp(ts), values: values_from_json(&values)? };
                Ok((row, Timestamp(ingested)))
            })
            .collect()
    }

    pub async fn legacy_feature_rows(&self, group: &str) -> StoreResult<Vec<FeatureRow>> {
        let rows: Vec<(String, i64, i64, bool, String, Option<String>)> = sqlx::query_as(
            "SELECT entity_key, event_ts, created_ts, created_given, values_json, provenance FROM feature_rows \
             WHERE group_name = ?1 ORDER BY entity_key, event_ts, created_ts",
        )
        .bind(group)
        .fetch_all(&self.readers)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(key, event_ts, created, created_given, values, provenance)| {
                Ok(FeatureRow {
                    entity: EntityKey(key),
                    event_ts: Timestamp(event_ts),
                    created: Timestamp(created),
                    created_given,
                    values: values_from_json(&values)?,
                    provenance: super::sql::provenance_from_text(provenance.as_deref())?,
                })
            })
            .collect()
    }

    /// Drops a source's (`source = true`) or group's rows once imported.
    pub async fn drop_legacy_rows(&self, source: bool, name: &str) -> StoreResult<()> {
        let sql = if source {
            "DELETE FROM source_rows WHERE source = ?1"
        } else {
            "DELETE FROM feature_rows WHERE group_name = ?1"
        };
        let mut tx = self.begin().await?;
        sqlx::query(sql).bind(name).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    /// Writes rows the way versions before the tables did, for tests of the
    /// import.
    #[cfg(test)]
    pub(crate) async fn write_legacy_rows(
        &self,
        source: &str,
        sources: &[(SourceRow, i64)],
        group: &str,
        features: &[FeatureRow],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for (row, ingested) in sources {
            sqlx::query(
                "INSERT INTO source_rows (source, entity_key, ts, values_json, ingested_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(source)
            .bind(row.entity.as_str())
            .bind(row.ts.0)
            .bind(super::sql::values_json(&row.values)?)
            .bind(ingested)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        for row in features {
            sqlx::query(
                "INSERT INTO feature_rows (group_name, entity_key, event_ts, created_ts, created_given, values_json, \
                 provenance) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(group)
            .bind(row.entity.as_str())
            .bind(row.event_ts.0)
            .bind(row.created.0)
            .bind(row.created_given)
            .bind(super::sql::values_json(&row.values)?)
            .bind(row.provenance.as_ref().map(|p| p.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}

// ---------------------------------------------------------------------------
// Write log

#[async_trait]
impl WriteLog for SqliteStore {
    async fn append(&self, table: &str, payload: &[u8], rows: u64) -> StoreResult<(i64, Timestamp)> {
        let mut tx = self.begin().await?;
        let seq = take_seq(&mut tx).await?;
        // Stamped while holding the writer, so stamps follow commit order
        // (what `newest_written` relies on).
        let written_at = now_micros();
        sqlx::query(
            "INSERT INTO offline_log (seq, table_name, row_count, written_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(seq)
        .bind(table)
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .bind(written_at)
        .bind(payload)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok((seq, Timestamp(written_at)))
    }

    async fn next_seq(&self) -> StoreResult<i64> {
        let mut tx = self.begin().await?;
        let seq = take_seq(&mut tx).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(seq)
    }

    async fn entries(&self, table: &str, max_rows: u64) -> StoreResult<Vec<LogEntry>> {
        let rows: Vec<LogRow> = sqlx::query_as(&sqlite_placeholders(LOG_ENTRIES_SQL))
            .bind(table)
            .bind(i64::try_from(max_rows).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(LogRow::into_entry).collect())
    }

    async fn remove(&self, table: &str, seqs: &[i64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        // The seqs travel as one JSON array: one bound parameter however many.
        let seqs = serde_json::to_string(seqs).map_err(|e| StoreError::Corrupt(format!("encoding seqs: {e}")))?;
        sqlx::query("DELETE FROM offline_log WHERE table_name = ?1 AND seq IN (SELECT value FROM json_each(?2))")
            .bind(table)
            .bind(seqs)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn clear(&self, table: &str) -> StoreResult<()> {
        sqlx::query(&sqlite_placeholders(LOG_CLEAR_SQL)).bind(table).execute(&self.writer).await.map_err(db_err)?;
        Ok(())
    }

    async fn pending(&self) -> StoreResult<Vec<PendingTable>> {
        let rows: Vec<(String, i64, i64, i64, i64)> =
            sqlx::query_as(LOG_PENDING_SQL).fetch_all(&self.readers).await.map_err(db_err)?;
        Ok(rows.into_iter().map(pending_table).collect())
    }

    async fn seqs(&self, table: &str) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(&sqlite_placeholders(super::sql::LOG_SEQS_SQL))
            .bind(table)
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)
    }

    async fn entries_in(&self, table: &str, seqs: &[i64]) -> StoreResult<Vec<LogEntry>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let seqs = serde_json::to_string(seqs).map_err(|e| StoreError::Corrupt(format!("encoding seqs: {e}")))?;
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT seq, payload, row_count, written_at FROM offline_log \
             WHERE table_name = ?1 AND seq IN (SELECT value FROM json_each(?2)) ORDER BY seq",
        )
        .bind(table)
        .bind(seqs)
        .fetch_all(&self.readers)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(LogRow::into_entry).collect())
    }

    async fn newest_written(&self, table: &str) -> StoreResult<Option<Timestamp>> {
        // On the writer connection: it waits for any append in flight.
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(written_at) FROM offline_log WHERE table_name = ?1")
            .bind(table)
            .fetch_one(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(newest.map(Timestamp))
    }

    async fn lease(&self, name: &str, owner: &str, lease: Duration) -> StoreResult<bool> {
        let taken: Option<String> = sqlx::query_scalar(&sqlite_placeholders(&take_log_lease_sql("$4")))
            .bind(name)
            .bind(owner)
            .bind(micros(lease))
            .bind(now_micros())
            .fetch_optional(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(taken.is_some())
    }

    async fn release(&self, name: &str, owner: &str) -> StoreResult<()> {
        sqlx::query(&sqlite_placeholders(RELEASE_LOG_LEASE_SQL))
            .bind(name)
            .bind(owner)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// Advances the write log's one sequence inside the caller's transaction.
async fn take_seq(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>) -> StoreResult<i64> {
    sqlx::query_scalar("UPDATE offline_seq SET last = last + 1 RETURNING last")
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)
}

// ---------------------------------------------------------------------------
// Errors and time

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable { backend: BACKEND, message }
}

/// Decoding failures and SQLite's own corruption codes mean the stored data
/// is bad; constraint violations that a call site did not anticipate are
/// conflicts; everything else (I/O, pool, locks) may pass on retry.
fn db_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Decode(_) | E::ColumnDecode { .. } | E::ColumnNotFound(_) | E::ColumnIndexOutOfBounds { .. } => {
            StoreError::Corrupt(e.to_string())
        }
        E::Database(db) => {
            // Primary result codes: SQLITE_CORRUPT (11), SQLITE_NOTADB (26).
            let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            if matches!(primary, Some(11 | 26)) {
                StoreError::Corrupt(e.to_string())
            } else if matches!(
                db.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
            ) {
                StoreError::Conflict(db.message().to_string())
            } else {
                unavailable(e.to_string())
            }
        }
        _ => unavailable(e.to_string()),
    }
}

fn now_micros() -> i64 {
    SystemClock.now().0
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FeatureSpec, Freshness, Producer, SourceField, ValueType};

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("data/wafer.db")).await.unwrap();
        (dir, store)
    }

    use crate::store::conformance::version;

    async fn count(store: &SqliteStore, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&store.readers).await.unwrap()
    }

    #[tokio::test]
    async fn registry_objects_round_trip_and_deleting_removes_only_the_definition() {
        let (_dir, store) = store().await;
        let entity = Entity { name: "ticker".into(), join_keys: vec!["ticker".into()], description: "a stock".into() };
        let source = Source {
            name: "prices".into(),
            entity: "ticker".into(),
            timestamp_field: "ts".into(),
            fields: vec![SourceField {
                name: "close".into(),
                value_type: ValueType::Float64,
                description: String::new(),
            }],
            description: String::new(),
        };
        let mut params = serde_json::Map::new();
        params.insert("benchmark".into(), serde_json::json!("SPY"));
        let group = FeatureGroup {
            name: "technical".into(),
            entity: "ticker".into(),
            features: vec![FeatureSpec {
                name: "sma_20".into(),
                value_type: ValueType::Float64,
                description: "d".into(),
            }],
            freshness: Freshness {
                expected_interval_seconds: Some(3600),
                max_age_seconds: Some(7200),
                online_ttl_seconds: None,
            },
            producer: Producer::Batch {
                transform: "indicators".into(),
                version: Some("1.0.0".into()),
                source: Some("prices".into()),
                sources: vec![],
                lookback: 252,
                schedule_seconds: Some(3600),
                params,
            },
            description: String::new(),
        };
        store.put_entity(&entity).await.unwrap();
        store.put_source(&source).await.unwrap();
        store.put_feature_group(&group).await.unwrap();

        assert_eq!(store.get_entity("ticker").await.unwrap(), Some(entity.clone()));
        assert_eq!(store.get_source("prices").await.unwrap(), Some(source.clone()));
        assert_eq!(store.get_feature_group("technical").await.unwrap(), Some(group.clone()));
        assert_eq!(store.list_entities().await.unwrap(), vec![entity.clone()]);
        assert_eq!(store.list_sources().await.unwrap(), vec![source]);
        assert_eq!(store.list_feature_groups().await.unwrap(), vec![group.clone()]);

        // Putting again replaces the definition.
        let updated = Entity { description: "an equity".into(), ..entity };
        store.put_entity(&updated).await.unwrap();
        assert_eq!(store.list_entities().await.unwrap(), vec![updated]);

        assert!(store.delete_feature_group("technical").await.unwrap());
        assert!(!store.delete_feature_group("technical").await.unwrap());
        assert!(store.delete_source("prices").await.unwrap());
        assert!(store.delete_entity("ticker").await.unwrap());
        assert_eq!(store.get_feature_group("technical").await.unwrap(), None);
        assert!(store.list_sources().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn publishing_the_same_bytes_again_is_a_no_op_and_different_bytes_conflict() {
        let (_dir, store) = store().await;
        let v1 = version("indicators", "1.0.0", b"module one", 10);
        assert_eq!(store.insert_transform_version(&v1, b"module one").await.unwrap(), VersionInsert::Created);
        assert_eq!(store.insert_transform_version(&v1, b"module one").await.unwrap(), VersionInsert::AlreadyExists);

        let other = version("indicators", "1.0.0", b"module two", 11);
        let err = store.insert_transform_version(&other, b"module two").await.unwrap_err();
        let StoreError::Conflict(message) = err else { panic!("expected a conflict, got {err:?}") };
        assert!(message.contains("1.0.0") && message.contains("indicators") && message.contains(&v1.sha256));

        // Same bytes under another version share one module row.
        let v2 = version("indicators", "1.1.0", b"module one", 12);
        assert_eq!(store.insert_transform_version(&v2, b"module one").await.unwrap(), VersionInsert::Created);
        assert_eq!(count(&store, "modules").await, 1);

        assert_eq!(store.get_transform_version("indicators", "1.0.0").await.unwrap(), Some(v1.clone()));
        assert_eq!(store.get_transform_version("indicators", "9.9.9").await.unwrap(), None);
        assert_eq!(store.get_module(&v1.sha256).await.unwrap().as_deref(), Some(&b"module one"[..]));
        assert_eq!(store.get_module("00").await.unwrap(), None);

        let summary = store.get_transform("indicators").await.unwrap().unwrap();
        assert_eq!(summary.status, "inactive");
        assert_eq!(summary.active_version, None);
        assert_eq!(summary.versions, vec![v1, v2]);
        assert_eq!(store.get_transform("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn activation_remembers_the_previous_version_for_rollback_and_disable() {
        let (_dir, store) = store().await;
        for (i, v) in ["1.0.0", "1.1.0", "2.0.0"].iter().enumerate() {
            let bytes = format!("bytes {v}");
            store
                .insert_transform_version(&version("risk", v, bytes.as_bytes(), i as i64), bytes.as_bytes())
                .await
                .unwrap();
        }
        let state = async |store: &SqliteStore| {
            let t = store.get_transform("risk").await.unwrap().unwrap();
            (t.status, t.active_version, t.previous_version)
        };
        let s = |status: &str, active: Option<&str>, previous: Option<&str>| {
            (status.to_string(), active.map(String::from), previous.map(String::from))
        };

        store.set_active_version("risk", Some("1.0.0")).await.unwrap();
        assert_eq!(state(&store).await, s("active", Some("1.0.0"), None));
        store.set_active_version("risk", Some("1.1.0")).await.unwrap();
        assert_eq!(state(&store).await, s("active", Some("1.1.0"), Some("1.0.0")));
        // Activating the active version again changes nothing.
        store.set_active_version("risk", Some("1.1.0")).await.unwrap();
        assert_eq!(state(&store).await, s("active", Some("1.1.0"), Some("1.0.0")));
        // Rollback is activating the previous version: the two swap.
        store.set_active_version("risk", Some("1.0.0")).await.unwrap();
        assert_eq!(state(&store).await, s("active", Some("1.0.0"), Some("1.1.0")));

        store.set_active_version("risk", None).await.unwrap();
        assert_eq!(state(&store).await, s("disabled", None, Some("1.0.0")));
        store.set_active_version("risk", None).await.unwrap();
        assert_eq!(state(&store).await, s("disabled", None, Some("1.0.0")));
        store.set_active_version("risk", Some("2.0.0")).await.unwrap();
        assert_eq!(state(&store).await, s("active", Some("2.0.0"), Some("1.0.0")));

        assert!(matches!(store.set_active_version("risk", Some("3.0.0")).await, Err(StoreError::Conflict(_))));
        assert!(matches!(store.set_active_version("nope", Some("1.0.0")).await, Err(StoreError::Conflict(_))));
        let listed = store.list_transforms().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].versions.len(), 3);
    }

    #[tokio::test]
    async fn job_task_leases_are_exclusive_and_the_last_completion_finishes_the_job() {
        let (_dir, store) = store().await;
        crate::store::conformance::leases_are_exclusive_and_the_last_completion_finishes_the_job(&store).await;
    }

    #[tokio::test]
    async fn expired_job_task_leases_are_taken_over_and_released_tasks_return() {
        let (_dir, store) = store().await;
        crate::store::conformance::expired_leases_are_taken_over_and_released_tasks_return(&store).await;
    }

    #[tokio::test]
    async fn concurrent_leasers_never_share_a_job_task() {
        let (_dir, store) = store().await;
        crate::store::conformance::concurrent_leasers_never_share_a_task(std::sync::Arc::new(store)).await;
    }

    #[tokio::test]
    async fn write_log_entries_come_back_oldest_first_in_batches_of_rows() {
        let (_dir, store) = store().await;
        crate::store::conformance::write_log_entries_come_back_oldest_first_in_batches_of_rows(&store).await;
    }

    #[tokio::test]
    async fn write_log_removes_exactly_the_given_entries_and_clears_a_table() {
        let (_dir, store) = store().await;
        crate::store::conformance::write_log_removes_exactly_the_given_entries_and_clears_a_table(&store).await;
    }

    #[tokio::test]
    async fn write_log_pending_totals_each_table_with_waiting_entries() {
        let (_dir, store) = store().await;
        crate::store::conformance::write_log_pending_totals_each_table_with_waiting_entries(&store).await;
    }

    #[tokio::test]
    async fn write_log_appends_and_next_seq_share_one_increasing_sequence() {
        let (_dir, store) = store().await;
        crate::store::conformance::write_log_appends_and_next_seq_share_one_increasing_sequence(&store).await;
    }

    #[tokio::test]
    async fn write_log_lists_seqs_and_reads_the_named_entries() {
        let (_dir, store) = store().await;
        crate::store::conformance::write_log_lists_seqs_and_reads_the_named_entries(&store).await;
    }

    #[tokio::test]
    async fn write_log_newest_written_is_the_last_append_of_the_table() {
        let (_dir, store) = store().await;
        crate::store::conformance::write_log_newest_written_is_the_last_append_of_the_table(&store).await;
    }

    #[tokio::test]
    async fn write_log_leases_are_exclusive_until_released_or_expired() {
        let (_dir, store) = store().await;
        crate::store::conformance::write_log_leases_are_exclusive_until_released_or_expired(&store).await;
    }

    #[tokio::test]
    async fn scheduled_runs_are_claimed_once_when_due() {
        let (_dir, store) = store().await;
        crate::store::conformance::scheduled_runs_are_claimed_once_when_due(&store).await;
    }

    #[tokio::test]
    async fn audit_entries_are_listed_newest_first() {
        let (_dir, store) = store().await;
        crate::store::conformance::audit_entries_are_listed_newest_first(&store).await;
    }

    #[tokio::test]
    async fn versions_are_deleted_unless_in_use() {
        let (_dir, store) = store().await;
        crate::store::conformance::versions_are_deleted_unless_in_use(&store).await;
    }

    #[tokio::test]
    async fn jobs_are_listed_newest_first() {
        let (_dir, store) = store().await;
        crate::store::conformance::jobs_are_listed_newest_first(&store).await;
    }

    #[tokio::test]
    async fn acknowledged_writes_are_read_back_after_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wafer.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store
                .put_entity(&Entity {
                    name: "ticker".into(),
                    join_keys: vec!["ticker".into()],
                    description: String::new(),
                })
                .await
                .unwrap();
            let v = version("indicators", "1.0.0", b"wasm", 1);
            store.insert_transform_version(&v, b"wasm").await.unwrap();
            store.set_active_version("indicators", Some("1.0.0")).await.unwrap();
            // Dropped without close(), as after a crash.
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.list_entities().await.unwrap().len(), 1);
        let t = store.get_transform("indicators").await.unwrap().unwrap();
        assert_eq!(t.active_version.as_deref(), Some("1.0.0"));
        assert!(store.get_module(&t.versions[0].sha256).await.unwrap().is_some());
        Registry::ping(&store).await.unwrap();
        store.close().await;
    }
}
