//! The embedded backend: one SQLite file holds the registry, the module
//! bytes, the job history and the offline store.
//!
//! Durability: WAL with `synchronous = FULL`, so a write is on disk when its
//! commit returns. Concurrency: one writer connection (SQLite serializes
//! writers anyway; queueing them in the pool is cheaper than busy-waiting on
//! the file lock) and a few reader connections, which WAL lets run alongside
//! the writer. Every write is one `BEGIN IMMEDIATE` transaction, so a write
//! that starts by reading never has to upgrade its lock.
//!
//! Bulk writes are multi-row upserts, chunked under SQLite's limit on bound
//! parameters, all in the caller's one transaction. They bind anonymous `?`
//! parameters only: sqlx asks SQLite for each parameter's name, and SQLite
//! finds a numbered (`?NNN`) one by a linear scan, so thousands of numbered
//! parameters make binding quadratic (measured: 75% of write time).

use super::sql::{
    AUDIT_INSERT_SQL, AUDIT_LIST_SQL, AuditRow, CLAIM_SCHEDULE_SQL, DELETE_UNUSED_MODULE_SQL, DELETE_VERSION_SQL,
    FRESHNESS_SQL, LeasedRow, Named, REGISTER_SCHEDULE_SQL, TRANSFORM_COLUMNS, TransformRow, VersionRow,
    freshness_counts, from_spec, interpolate, job_from_spec, job_spec, job_state_name, json_path, percentile_ranks,
    settings_from_json, settings_to_json, spec_json, sqlite_placeholders, task_columns, values_from_json, values_json,
    version_in_use,
};
use super::{
    AsOfRules, OfflineStore, Registry, SettingsChange, SourceRange, StoreError, StoreResult, VersionDelete,
    VersionInsert,
};
use crate::clock::{Clock, SystemClock};
use crate::model::{
    AuditEntry, Entity, EntityKey, FeatureGroup, FeatureRow, FeatureStatistics, FreshnessCounts, Job, JobTask,
    LeasedTask, Source, SourceRow, TaskOutcome, Timestamp, TransformSettings, TransformSummary, TransformVersion,
};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

const BACKEND: &str = "sqlite";

/// SQLite's limit on bound parameters per statement (since 3.32).
const MAX_PARAMS: usize = 32_766;

/// Rows per multi-row INSERT: a 1,000-row write is one statement. 500 to
/// 6,000 measured the same on a 252,000-row write; per-row work (JSON
/// encoding, B-tree inserts) dominates once statements are this large.
const ROWS_PER_INSERT: usize = 1_000;

/// Entities per `latest_feature_rows` query.
const ENTITIES_PER_LOOKUP: usize = 500;

/// Points per `feature_rows_as_of` query; 1,000 measured faster than 5,000
/// (the CTE of points is materialized per query).
const POINTS_PER_LOOKUP: usize = 1_000;

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
// Offline store

/// `INSERT INTO {table_and_columns} VALUES (?,..),(?,..) {tail}` for `rows`
/// rows of `columns` parameters each.
fn multi_row_sql(table_and_columns: &str, columns: usize, rows: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; columns].join(","));
    let mut sql = String::with_capacity(32 + table_and_columns.len() + tail.len() + rows * (row.len() + 1));
    sql.push_str("INSERT INTO ");
    sql.push_str(table_and_columns);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&row);
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

const SOURCE_INSERT: &str = "source_rows (source, entity_key, ts, values_json, ingested_at)";
const SOURCE_COLUMNS: usize = 5;
const SOURCE_UPSERT: &str = "ON CONFLICT (source, entity_key, ts) DO UPDATE \
     SET values_json = excluded.values_json, ingested_at = excluded.ingested_at \
     WHERE source_rows.values_json <> excluded.values_json";

/// Per point: the newest (event_ts, created_ts) within its bounds is one
/// backwards seek on the primary key, and the join fetches that row. The
/// points are materialized once so each one's fields are extracted once.
const AS_OF: &str = "WITH p AS MATERIALIZED ( \
         SELECT key AS i, json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS t, \
                json_extract(value, '$[2]') AS earliest, json_extract(value, '$[3]') AS created_max \
         FROM json_each(?1)) \
     SELECT p.i, f.event_ts, f.created_ts, f.created_given, f.values_json, f.provenance FROM p \
     JOIN feature_rows AS f ON f.group_name = ?2 AND f.entity_key = p.k AND (f.event_ts, f.created_ts) = ( \
         SELECT g.event_ts, g.created_ts FROM feature_rows AS g \
         WHERE g.group_name = ?2 AND g.entity_key = p.k AND g.event_ts <= p.t AND g.event_ts >= p.earliest \
           AND (g.created_ts <= p.created_max OR g.created_given = 0) \
         ORDER BY g.event_ts DESC, g.created_ts DESC LIMIT 1)";

const FEATURE_INSERT: &str =
    "feature_rows (group_name, entity_key, event_ts, created_ts, created_given, values_json, provenance)";
const FEATURE_COLUMNS: usize = 7;
const FEATURE_UPSERT: &str = "ON CONFLICT (group_name, entity_key, event_ts, created_ts) DO UPDATE \
     SET values_json = excluded.values_json, provenance = excluded.provenance, \
         created_given = excluded.created_given \
     WHERE feature_rows.values_json <> excluded.values_json OR feature_rows.provenance IS NOT excluded.provenance \
        OR feature_rows.created_given <> excluded.created_given";

/// Rows per statement with `columns` parameters per row.
const fn chunk_rows(columns: usize) -> usize {
    let max = MAX_PARAMS / columns;
    if ROWS_PER_INSERT < max { ROWS_PER_INSERT } else { max }
}

/// Whether to keep a chunk's prepared statement in the connection's cache:
/// full chunks and small writes (single-row pushes) recur; an odd-sized last
/// chunk of a bulk write would only evict something useful.
fn cache_statement(rows: usize, chunk: usize) -> bool {
    rows == chunk || rows <= 16
}

#[async_trait]
impl OfflineStore for SqliteStore {
    async fn write_source_rows(&self, source: &str, rows: &[SourceRow]) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        // Encode before taking the writer, so the lock is held for SQL only.
        let encoded = rows.iter().map(|r| values_json(&r.values)).collect::<StoreResult<Vec<_>>>()?;
        const CHUNK: usize = chunk_rows(SOURCE_COLUMNS);
        let mut tx = self.begin().await?;
        // Stamped while holding the writer, so stamps follow commit order
        // (what `source_ingest_watermark` relies on).
        let ingested_at = now_micros();
        let mut full_sql = String::new();
        for (rows, values) in rows.chunks(CHUNK).zip(encoded.chunks(CHUNK)) {
            let partial_sql;
            let sql = if rows.len() == CHUNK {
                if full_sql.is_empty() {
                    full_sql = multi_row_sql(SOURCE_INSERT, SOURCE_COLUMNS, CHUNK, SOURCE_UPSERT);
                }
                &full_sql
            } else {
                partial_sql = multi_row_sql(SOURCE_INSERT, SOURCE_COLUMNS, rows.len(), SOURCE_UPSERT);
                &partial_sql
            };
            let mut query = sqlx::query(sql).persistent(cache_statement(rows.len(), CHUNK));
            for (row, values) in rows.iter().zip(values) {
                query =
                    query.bind(source).bind(row.entity.as_str()).bind(row.ts.0).bind(values.as_str()).bind(ingested_at);
            }
            query.execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len() as u64)
    }

    async fn read_source(&self, source: &str, entity: &EntityKey, range: SourceRange) -> StoreResult<Vec<SourceRow>> {
        let until = range.until.map_or(i64::MAX, |t| t.0);
        let mut rows: Vec<(i64, String)> = match range.last {
            Some(n) => sqlx::query_as(
                "SELECT ts, values_json FROM source_rows WHERE source = ?1 AND entity_key = ?2 AND ts <= ?3 \
                 ORDER BY ts DESC LIMIT ?4",
            )
            .bind(source)
            .bind(entity.as_str())
            .bind(until)
            .bind(i64::from(n))
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?,
            None => sqlx::query_as(
                "SELECT ts, values_json FROM source_rows WHERE source = ?1 AND entity_key = ?2 AND ts <= ?3 \
                 ORDER BY ts",
            )
            .bind(source)
            .bind(entity.as_str())
            .bind(until)
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?,
        };
        if range.last.is_some() {
            rows.reverse();
        }
        rows.into_iter()
            .map(|(ts, values)| {
                Ok(SourceRow { entity: entity.clone(), ts: Timestamp(ts), values: values_from_json(&values)? })
            })
            .collect()
    }

    async fn source_entities(&self, source: &str) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT entity_key, MAX(ts) FROM source_rows WHERE source = ?1 GROUP BY entity_key ORDER BY entity_key",
        )
        .bind(source)
        .fetch_all(&self.readers)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(|(k, ts)| (EntityKey(k), Timestamp(ts))).collect())
    }

    async fn source_ingest_watermark(&self, source: &str) -> StoreResult<Option<Timestamp>> {
        let newest: Option<i64> =
            // On the writer connection: it waits for any write in flight.
            sqlx::query_scalar("SELECT MAX(ingested_at) FROM source_rows WHERE source = ?1")
                .bind(source)
                .fetch_one(&self.writer)
                .await
                .map_err(db_err)?;
        Ok(newest.map(Timestamp))
    }

    async fn source_changes(&self, source: &str, after: Timestamp) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT entity_key, MIN(ts) FROM source_rows WHERE source = ?1 AND ingested_at > ?2 \
             GROUP BY entity_key ORDER BY entity_key",
        )
        .bind(source)
        .bind(after.0)
        .fetch_all(&self.readers)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(|(k, ts)| (EntityKey(k), Timestamp(ts))).collect())
    }

    async fn delete_source_rows(&self, source: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM source_rows WHERE source = ?1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn write_feature_rows(&self, group: &str, rows: &[FeatureRow]) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let encoded = rows.iter().map(|r| values_json(&r.values)).collect::<StoreResult<Vec<_>>>()?;
        let provenances = super::sql::provenance_texts(rows.iter().map(|r| r.provenance.as_ref()));
        const CHUNK: usize = chunk_rows(FEATURE_COLUMNS);
        let mut tx = self.begin().await?;
        let mut full_sql = String::new();
        let chunks = rows.chunks(CHUNK).zip(encoded.chunks(CHUNK)).zip(provenances.chunks(CHUNK));
        for ((rows, values), provenances) in chunks {
            let partial_sql;
            let sql = if rows.len() == CHUNK {
                if full_sql.is_empty() {
                    full_sql = multi_row_sql(FEATURE_INSERT, FEATURE_COLUMNS, CHUNK, FEATURE_UPSERT);
                }
                &full_sql
            } else {
                partial_sql = multi_row_sql(FEATURE_INSERT, FEATURE_COLUMNS, rows.len(), FEATURE_UPSERT);
                &partial_sql
            };
            let mut query = sqlx::query(sql).persistent(cache_statement(rows.len(), CHUNK));
            for ((row, values), provenance) in rows.iter().zip(values).zip(provenances) {
                query = query
                    .bind(group)
                    .bind(row.entity.as_str())
                    .bind(row.event_ts.0)
                    .bind(row.created.0)
                    .bind(row.created_given)
                    .bind(values.as_str())
                    .bind(provenance.as_deref());
            }
            query.execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len() as u64)
    }

    async fn latest_feature_rows(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>> {
        let mut unique: Vec<&str> = entities.iter().map(EntityKey::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut found: HashMap<String, FeatureRow> = HashMap::with_capacity(unique.len());
        for keys in unique.chunks(ENTITIES_PER_LOOKUP) {
            // For each key: the newest (event_ts, created_ts) is one backwards
            // seek on the primary key; the outer join fetches that row.
            // Anonymous parameters only: SQLite looks numbered ones up by a
            // linear scan, which makes binding quadratic in their count.
            let mut sql = String::from(
                "SELECT f.entity_key, f.event_ts, f.created_ts, f.created_given, f.values_json, f.provenance \
                 FROM (VALUES ",
            );
            for i in 0..keys.len() {
                sql.push_str(if i == 0 { "(?)" } else { ",(?)" });
            }
            sql.push_str(
                ") AS k JOIN feature_rows AS f ON f.group_name = ? AND f.entity_key = k.column1 \
                 AND (f.event_ts, f.created_ts) = (SELECT g.event_ts, g.created_ts FROM feature_rows AS g \
                 WHERE g.group_name = f.group_name AND g.entity_key = k.column1 \
                 ORDER BY g.event_ts DESC, g.created_ts DESC LIMIT 1)",
            );
            let mut query = sqlx::query_as::<_, (String, i64, i64, bool, String, Option<String>)>(&sql)
                .persistent(keys.len() == ENTITIES_PER_LOOKUP || keys.len() <= 16);
            for key in keys {
                query = query.bind(*key);
            }
            query = query.bind(group);
            let found_rows = query.fetch_all(&self.readers).await.map_err(db_err)?;
            for (key, event_ts, created, created_given, values, provenance) in found_rows {
                let row = FeatureRow {
                    entity: EntityKey(key.clone()),
                    event_ts: Timestamp(event_ts),
                    created: Timestamp(created),
                    created_given,
                    values: values_from_json(&values)?,
                    provenance: super::sql::provenance_from_text(provenance.as_deref())?,
                };
                found.insert(key, row);
            }
        }
        Ok(entities.iter().map(|e| found.get(e.as_str()).cloned()).collect())
    }

    async fn feature_rows_as_of(
        &self,
        group: &str,
        points: &[(EntityKey, Timestamp)],
        rules: AsOfRules,
    ) -> StoreResult<Vec<Option<FeatureRow>>> {
        let mut out: Vec<Option<FeatureRow>> = vec![None; points.len()];
        for (chunk_no, chunk) in points.chunks(POINTS_PER_LOOKUP).enumerate() {
            // The points travel as one JSON array `[[key, at, earliest,
            // created_max], ...]`: one bound parameter however many points.
            let encoded: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(entity, at)| {
                    let (earliest, created_max) = rules.bounds(*at);
                    serde_json::json!([entity.as_str(), at.0, earliest, created_max])
                })
                .collect();
            let encoded = serde_json::Value::Array(encoded).to_string();
            let found: Vec<(i64, i64, i64, bool, String, Option<String>)> =
                sqlx::query_as(AS_OF).bind(encoded).bind(group).fetch_all(&self.readers).await.map_err(db_err)?;
            let base = chunk_no * POINTS_PER_LOOKUP;
            for (i, event_ts, created, created_given, values, provenance) in found {
                let i = usize::try_from(i).map_err(|_| StoreError::Corrupt(format!("point index {i}")))?;
                out[base + i] = Some(FeatureRow {
                    entity: chunk[i].0.clone(),
                    event_ts: Timestamp(event_ts),
                    created: Timestamp(created),
                    created_given,
                    values: values_from_json(&values)?,
                    provenance: super::sql::provenance_from_text(provenance.as_deref())?,
                });
            }
        }
        Ok(out)
    }

    async fn delete_feature_rows(&self, group: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM feature_rows WHERE group_name = ?1")
            .bind(group)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn freshness(
        &self,
        group: &str,
        stale_before: Option<Timestamp>,
        expired_before: Option<Timestamp>,
    ) -> StoreResult<FreshnessCounts> {
        let row: (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>) =
            sqlx::query_as(&sqlite_placeholders(FRESHNESS_SQL))
                .bind(group)
                .bind(expired_before.map_or(i64::MIN, |t| t.0))
                .bind(stale_before.map_or(i64::MIN, |t| t.0))
                .fetch_one(&self.readers)
                .await
                .map_err(db_err)?;
        Ok(freshness_counts(row))
    }

    async fn feature_statistics(
        &self,
        group: &str,
        features: &[(String, bool)],
    ) -> StoreResult<Vec<FeatureStatistics>> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let paths: Vec<String> = features.iter().map(|(name, _)| json_path(name)).collect();
        // One pass for counts, means and extremes of every feature; SQLite
        // parses each row's JSON once for all the expressions on it.
        let mut columns = vec!["COUNT(*)".to_string()];
        for i in 0..features.len() {
            let v = format!("json_extract(values_json, ?{})", i + 2);
            columns.push(format!("COUNT({v}), AVG({v}), MIN({v}), MAX({v})"));
        }
        let sql = format!("SELECT {} FROM feature_rows WHERE group_name = ?1", columns.join(", "));
        let mut query = sqlx::query(&sql).bind(group);
        for path in &paths {
            query = query.bind(path);
        }
        let row = query.fetch_one(&self.readers).await.map_err(db_err)?;
        let total: i64 = row.try_get(0).map_err(db_err)?;
        let mut stats = Vec::with_capacity(features.len());
        for (i, (_, numeric)) in features.iter().enumerate() {
            let count: i64 = row.try_get(1 + 4 * i).map_err(db_err)?;
            let mut s = FeatureStatistics {
                count: count as u64,
                nulls: (total - count) as u64,
                ..FeatureStatistics::default()
            };
            if *numeric && count > 0 {
                s.mean = row.try_get(2 + 4 * i).map_err(db_err)?;
                s.min = row.try_get::<Option<f64>, _>(3 + 4 * i).map_err(db_err)?;
                s.max = row.try_get::<Option<f64>, _>(4 + 4 * i).map_err(db_err)?;
            }
            stats.push(s);
        }
        for (i, (_, numeric)) in features.iter().enumerate() {
            let (count, Some(mean)) = (stats[i].count, stats[i].mean) else { continue };
            if !numeric {
                continue;
            }
            // Deviations from the mean (not sums of squares), so large
            // values such as market caps keep their precision.
            if count > 1 {
                let squares: Option<f64> = sqlx::query_scalar(
                    "SELECT SUM((v - ?3) * (v - ?3)) FROM \
                     (SELECT json_extract(values_json, ?2) AS v FROM feature_rows WHERE group_name = ?1) \
                     WHERE v IS NOT NULL",
                )
                .bind(group)
                .bind(&paths[i])
                .bind(mean)
                .fetch_one(&self.readers)
                .await
                .map_err(db_err)?;
                stats[i].std = squares.map(|ss| (ss / (count - 1) as f64).sqrt());
            }
            // One sort gives both percentiles: the values at the ranks
            // either side of each.
            let ranks = percentile_ranks(count, &[0.5, 0.95]);
            let wanted: Vec<i64> = ranks.iter().flat_map(|&(lo, _)| [lo as i64, (lo + 1) as i64]).collect();
            let ranked: Vec<(i64, f64)> = sqlx::query_as(&format!(
                "SELECT rn, v FROM (SELECT v, ROW_NUMBER() OVER (ORDER BY v) - 1 AS rn FROM \
                 (SELECT json_extract(values_json, ?2) AS v FROM feature_rows WHERE group_name = ?1) \
                 WHERE v IS NOT NULL) WHERE rn IN ({})",
                wanted.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ))
            .bind(group)
            .bind(&paths[i])
            .fetch_all(&self.readers)
            .await
            .map_err(db_err)?;
            let at = |rank: usize| ranked.iter().find(|(rn, _)| *rn == rank as i64).map(|(_, v)| *v);
            let p = |k: usize| interpolate(at(ranks[k].0), at(ranks[k].0 + 1), ranks[k].1);
            stats[i].p50 = p(0);
            stats[i].p95 = p(1);
        }
        Ok(stats)
    }

    async fn ping(&self) -> StoreResult<()> {
        Registry::ping(self).await
    }
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
    use crate::model::{FeatureSpec, Freshness, Producer, SourceField, Value, ValueType};
    use std::collections::BTreeMap;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("data/wafer.db")).await.unwrap();
        (dir, store)
    }

    fn key(k: &str) -> EntityKey {
        EntityKey(k.to_string())
    }

    fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::Float64(*v))).collect()
    }

    fn source_row(entity: &str, ts: i64, close: f64) -> SourceRow {
        SourceRow { entity: key(entity), ts: Timestamp::from_secs(ts), values: values(&[("close", close)]) }
    }

    fn feature_row(entity: &str, event: i64, created: i64, x: f64) -> FeatureRow {
        FeatureRow {
            entity: key(entity),
            event_ts: Timestamp::from_secs(event),
            created: Timestamp::from_secs(created),
            created_given: false,
            values: values(&[("x", x)]),
            provenance: None,
        }
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
        store.write_source_rows("prices", &[source_row("AAPL", 1, 1.0)]).await.unwrap();

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
        assert_eq!(count(&store, "source_rows").await, 1, "data is deleted separately");
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
    async fn freshness_counts_each_entity_by_its_newest_row() {
        let (_dir, store) = store().await;
        crate::store::conformance::freshness_counts_each_entity_by_its_newest_row(&store).await;
    }

    #[tokio::test]
    async fn statistics_match_hand_computed_values() {
        let (_dir, store) = store().await;
        crate::store::conformance::statistics_match_hand_computed_values(&store).await;
    }

    #[tokio::test]
    async fn scheduled_runs_are_claimed_once_when_due() {
        let (_dir, store) = store().await;
        crate::store::conformance::scheduled_runs_are_claimed_once_when_due(&store).await;
    }

    #[tokio::test]
    async fn source_changes_are_found_by_ingest_time_not_event_time() {
        let (_dir, store) = store().await;
        crate::store::conformance::source_changes_are_found_by_ingest_time_not_event_time(&store).await;
    }

    #[tokio::test]
    async fn as_of_lookups_pick_the_row_known_at_each_point() {
        let (_dir, store) = store().await;
        crate::store::conformance::as_of_lookups_pick_the_row_known_at_each_point(&store).await;
    }

    #[tokio::test]
    async fn as_of_lookups_match_a_brute_force_reference() {
        let (_dir, store) = store().await;
        crate::store::conformance::as_of_lookups_match_a_brute_force_reference(&store).await;
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
    async fn writing_the_same_rows_twice_keeps_one_copy_of_each() {
        let (_dir, store) = store().await;
        // More rows than one statement holds, so chunking is exercised.
        let sources: Vec<SourceRow> = (0..5_000).map(|i| source_row(&format!("T{}", i % 7), i, i as f64)).collect();
        let features: Vec<FeatureRow> =
            (0..9_000).map(|i| feature_row(&format!("T{}", i % 7), i, 100_000, i as f64)).collect();
        for _ in 0..2 {
            assert_eq!(store.write_source_rows("prices", &sources).await.unwrap(), 5_000);
            assert_eq!(store.write_feature_rows("technical", &features).await.unwrap(), 9_000);
        }
        assert_eq!(count(&store, "source_rows").await, 5_000);
        assert_eq!(count(&store, "feature_rows").await, 9_000);

        // A rewrite with new values replaces them in place.
        store.write_source_rows("prices", &[source_row("T0", 0, -1.0)]).await.unwrap();
        let rows = store.read_source("prices", &key("T0"), SourceRange { last: None, until: Some(Timestamp(0)) }).await;
        assert_eq!(rows.unwrap(), vec![source_row("T0", 0, -1.0)]);
        assert_eq!(count(&store, "source_rows").await, 5_000);
        assert_eq!(store.write_source_rows("prices", &[]).await.unwrap(), 0);

        store.delete_source_rows("prices").await.unwrap();
        store.delete_feature_rows("technical").await.unwrap();
        assert_eq!(count(&store, "source_rows").await, 0);
        assert_eq!(count(&store, "feature_rows").await, 0);
    }

    #[tokio::test]
    async fn source_reads_honour_last_and_until_and_come_oldest_first() {
        let (_dir, store) = store().await;
        let mut rows: Vec<SourceRow> = (1..=10).map(|t| source_row("AAPL", t, t as f64)).collect();
        rows.push(source_row("MSFT", 20, 1.0));
        rows.reverse(); // write order does not matter
        store.write_source_rows("prices", &rows).await.unwrap();
        store.write_source_rows("other", &[source_row("AAPL", 99, 1.0)]).await.unwrap();

        let ts = |range: SourceRange| {
            let store = store.clone();
            async move {
                let rows = store.read_source("prices", &key("AAPL"), range).await.unwrap();
                rows.iter().map(|r| r.ts.0 / Timestamp::MICROS_PER_SECOND).collect::<Vec<_>>()
            }
        };
        assert_eq!(ts(SourceRange::default()).await, (1..=10).collect::<Vec<_>>());
        assert_eq!(ts(SourceRange { last: Some(3), until: None }).await, vec![8, 9, 10]);
        assert_eq!(ts(SourceRange { last: None, until: Some(Timestamp::from_secs(4)) }).await, vec![1, 2, 3, 4]);
        assert_eq!(ts(SourceRange { last: Some(2), until: Some(Timestamp::from_secs(4)) }).await, vec![3, 4]);
        assert_eq!(ts(SourceRange { last: Some(50), until: None }).await.len(), 10);
        assert_eq!(ts(SourceRange { last: Some(0), until: None }).await, Vec::<i64>::new());
        let read = store.read_source("prices", &key("AAPL"), SourceRange { last: Some(1), until: None }).await.unwrap();
        assert_eq!(read, vec![source_row("AAPL", 10, 10.0)]);

        assert_eq!(
            store.source_entities("prices").await.unwrap(),
            vec![(key("AAPL"), Timestamp::from_secs(10)), (key("MSFT"), Timestamp::from_secs(20))]
        );
        assert!(store.source_entities("missing").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn latest_feature_row_is_the_newest_event_and_on_ties_the_newest_created() {
        let (_dir, store) = store().await;
        store
            .write_feature_rows(
                "valuation",
                &[
                    feature_row("AAPL", 10, 11, 1.0),
                    feature_row("AAPL", 20, 21, 2.0),
                    feature_row("AAPL", 20, 30, 3.0), // correction of event 20
                    feature_row("AAPL", 15, 99, 4.0), // late arrival of an older event
                    feature_row("MSFT", 5, 5, 5.0),
                ],
            )
            .await
            .unwrap();
        store.write_feature_rows("other", &[feature_row("AAPL", 50, 50, 9.0)]).await.unwrap();

        let latest =
            store.latest_feature_rows("valuation", &[key("MSFT"), key("NONE"), key("AAPL"), key("MSFT")]).await;
        assert_eq!(
            latest.unwrap(),
            vec![
                Some(feature_row("MSFT", 5, 5, 5.0)),
                None,
                Some(feature_row("AAPL", 20, 30, 3.0)),
                Some(feature_row("MSFT", 5, 5, 5.0)),
            ]
        );

        // More entities than one lookup statement takes.
        let many: Vec<FeatureRow> = (0..1_200).map(|i| feature_row(&format!("E{i}"), i, i, i as f64)).collect();
        store.write_feature_rows("many", &many).await.unwrap();
        let keys: Vec<EntityKey> = many.iter().rev().map(|r| r.entity.clone()).collect();
        let latest = store.latest_feature_rows("many", &keys).await.unwrap();
        assert_eq!(latest, many.into_iter().rev().map(Some).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn provenance_round_trips_through_every_read() {
        let (_dir, store) = store().await;
        crate::store::conformance::provenance_round_trips_through_every_read(&store).await;
    }

    /// A database migrated before provenance was recorded (through 0004)
    /// keeps its rows through the migration; they read back without one.
    #[tokio::test]
    async fn rows_written_before_provenance_was_recorded_read_back_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wafer.db");
        {
            let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
            let before = sqlx::migrate::Migrator {
                migrations: MIGRATOR.migrations.iter().filter(|m| m.version < 5).cloned().collect(),
                ..sqlx::migrate::Migrator::DEFAULT
            };
            before.run(&pool).await.unwrap();
            sqlx::query("INSERT INTO feature_rows VALUES ('technical', 'AAPL', 1, 2, '{\"x\":3.0}')")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let latest = store.latest_feature_rows("technical", &[key("AAPL")]).await.unwrap();
        let expected = FeatureRow { event_ts: Timestamp(1), created: Timestamp(2), ..feature_row("AAPL", 0, 0, 3.0) };
        assert_eq!(latest, vec![Some(expected)]);
        let as_of = store.feature_rows_as_of("technical", &[(key("AAPL"), Timestamp(5))], AsOfRules::default()).await;
        assert_eq!(as_of.unwrap(), latest);
        store.close().await;
    }

    #[tokio::test]
    async fn values_of_every_type_round_trip() {
        let (_dir, store) = store().await;
        let values: BTreeMap<String, Value> = [
            ("f", Value::Float64(190.0)),
            ("i", Value::Int64(-3)),
            ("b", Value::Bool(true)),
            ("s", Value::String("x\"y".into())),
            ("fl", Value::Float64List(vec![1.5, 2.0])),
            ("sl", Value::StringList(vec!["a".into()])),
            ("n", Value::Null),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let row = FeatureRow {
            entity: key("AAPL"),
            event_ts: Timestamp(1),
            created: Timestamp(2),
            created_given: false,
            values,
            provenance: None,
        };
        store.write_feature_rows("g", std::slice::from_ref(&row)).await.unwrap();
        assert_eq!(store.latest_feature_rows("g", &[key("AAPL")]).await.unwrap(), vec![Some(row)]);
    }

    #[tokio::test]
    async fn unreadable_stored_data_is_reported_as_corrupt() {
        let (_dir, store) = store().await;
        sqlx::query("INSERT INTO source_rows VALUES ('prices', 'AAPL', 1, 'not json', 0)")
            .execute(&store.writer)
            .await
            .unwrap();
        let err = store.read_source("prices", &key("AAPL"), SourceRange::default()).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
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
            store.write_source_rows("prices", &[source_row("AAPL", 1, 1.0)]).await.unwrap();
            store.write_feature_rows("technical", &[feature_row("AAPL", 1, 2, 3.0)]).await.unwrap();
            let v = version("indicators", "1.0.0", b"wasm", 1);
            store.insert_transform_version(&v, b"wasm").await.unwrap();
            store.set_active_version("indicators", Some("1.0.0")).await.unwrap();
            // Dropped without close(), as after a crash.
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.list_entities().await.unwrap().len(), 1);
        let rows = store.read_source("prices", &key("AAPL"), SourceRange::default()).await.unwrap();
        assert_eq!(rows, vec![source_row("AAPL", 1, 1.0)]);
        let latest = store.latest_feature_rows("technical", &[key("AAPL")]).await.unwrap();
        assert_eq!(latest, vec![Some(feature_row("AAPL", 1, 2, 3.0))]);
        let t = store.get_transform("indicators").await.unwrap().unwrap();
        assert_eq!(t.active_version.as_deref(), Some("1.0.0"));
        assert!(store.get_module(&t.versions[0].sha256).await.unwrap().is_some());
        Registry::ping(&store).await.unwrap();
        store.close().await;
    }
}
