//! The production backend: PostgreSQL holds the registry, the module bytes,
//! the job history and the offline store, with the same semantics as
//! `sqlite.rs` (whose tests these mirror).
//!
//! Durability: PostgreSQL's default `synchronous_commit = on`, so a write is
//! in the WAL on disk when its commit returns. Concurrency: a pool of
//! connections; every write is one transaction, and read-modify-write
//! updates lock the row they read (`FOR UPDATE`), so concurrent hosts on one
//! database serialize per transform rather than losing an update.
//!
//! Bulk writes bind one array per column and insert `FROM UNNEST(...)`: the
//! statement text and its five parameters are the same for any row count, so
//! it is prepared once per connection, and a 1,000-row write is one round
//! trip. Unlike SQLite, PostgreSQL refuses an upsert that touches the same
//! row twice in one statement, so duplicate keys in one call are collapsed
//! first (the last one wins, as it does in SQLite).
//!
//! Isolation: `connect` can put all tables in one schema (via `search_path`),
//! so tests, or several deployments, share one database without meeting.

use super::sql::{
    AUDIT_INSERT_SQL, AUDIT_LIST_SQL, AuditRow, CLAIM_SCHEDULE_SQL, DELETE_UNUSED_MODULE_SQL, DELETE_VERSION_SQL,
    FRESHNESS_SQL, LOG_CLEAR_SQL, LOG_ENTRIES_SQL, LOG_PENDING_SQL, LOG_SEQS_SQL, LeasedRow, LogRow, Named,
    REGISTER_SCHEDULE_SQL, RELEASE_LOG_LEASE_SQL, TRANSFORM_COLUMNS, TransformRow, VersionRow, freshness_counts,
    from_spec, job_from_spec, job_spec, job_state_name, pending_table, settings_from_json, settings_to_json, spec_json,
    take_log_lease_sql, task_columns, values_from_json, values_json, version_in_use,
};
use super::{
    AsOfRules, LogEntry, OfflineStore, PendingTable, Registry, RegistryChange, SettingsChange, SourceRange, StoreError,
    StoreResult, TableDef, VersionDelete, VersionInsert, WriteLog,
};
use crate::clock::{Clock, SystemClock};
use crate::model::{
    AuditEntry, Entity, EntityKey, FeatureGroup, FeatureRow, FeatureStatistics, FreshnessCounts, Job, JobTask,
    LeasedTask, Source, SourceRow, TaskOutcome, Timestamp, TransformSettings, TransformSummary, TransformVersion,
};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

const BACKEND: &str = "postgres";

/// Rows per UNNEST insert. Arrays have no parameter limit; chunking only
/// bounds the size of one message and of the de-duplication map.
const ROWS_PER_INSERT: usize = 10_000;

/// Entities per `latest_feature_rows` query.
const ENTITIES_PER_LOOKUP: usize = 1_000;

/// Points per `feature_rows_as_of` query.
const POINTS_PER_LOOKUP: usize = 2_000;

const MAX_CONNECTIONS: u32 = 16;

/// How long a call waits for a connection, including (re)connecting. While
/// the database is down, sqlx keeps retrying the connect until this passes;
/// a request should fail in a few seconds with 503, not hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Registry, module store, job history and offline store in one PostgreSQL
/// database (optionally one schema of it).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The schema wafer's tables live in; change announcements from other
    /// schemas (other deployments on the same database) are ignored.
    schema: String,
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date. With `schema`,
    /// every table lives in that schema, created if missing: each pooled
    /// connection sets its `search_path` to it as it connects.
    pub async fn connect(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| unavailable(format!("bad database URL: {e}")))?;
        let mut pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).acquire_timeout(ACQUIRE_TIMEOUT);
        if let Some(schema) = schema {
            let schema = quote_ident(schema);
            let mut conn = sqlx::PgConnection::connect_with(&options).await.map_err(|e| unavailable(e.to_string()))?;
            // Concurrent creators of the same schema can still collide on
            // the catalog's unique index; a retry then finds it.
            let created = conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str()).await;
            if let Err(e) = created {
                let duplicate = e.as_database_error().is_some_and(|d| d.is_unique_violation());
                if !duplicate {
                    return Err(db_err(e));
                }
            }
            conn.close().await.map_err(db_err)?;
            let set_path = format!("SET search_path TO {schema}");
            pool = pool.after_connect(move |conn, _meta| {
                let set_path = set_path.clone();
                Box::pin(async move {
                    conn.execute(set_path.as_str()).await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await.map_err(|e| unavailable(e.to_string()))?;
        MIGRATOR.run(&pool).await.map_err(|e| unavailable(format!("migrating failed: {e}")))?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(db_err)?;
        Ok(PostgresStore { pool, schema })
    }

    /// Waits for in-flight work and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }

    async fn put_spec<T: Serialize>(&self, table: &str, name: &str, value: &T) -> StoreResult<()> {
        let spec = spec_json(value)?;
        let sql = format!(
            "INSERT INTO {table} (name, spec, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at"
        );
        // One statement is its own transaction.
        sqlx::query(&sql).bind(name).bind(spec).bind(now_micros()).execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn get_spec<T: DeserializeOwned + Named>(&self, table: &str, name: &str) -> StoreResult<Option<T>> {
        let sql = format!("SELECT spec FROM {table} WHERE name = $1");
        let spec: Option<String> =
            sqlx::query_scalar(&sql).bind(name).fetch_optional(&self.pool).await.map_err(db_err)?;
        spec.map(|s| from_spec(table, name, &s)).transpose()
    }

    async fn list_specs<T: DeserializeOwned + Named>(&self, table: &str) -> StoreResult<Vec<T>> {
        let sql = format!("SELECT name, spec FROM {table} ORDER BY name");
        let rows: Vec<(String, String)> = sqlx::query_as(&sql).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(|(name, spec)| from_spec(table, name, spec)).collect()
    }

    async fn delete_spec(&self, table: &str, name: &str) -> StoreResult<bool> {
        let sql = format!("DELETE FROM {table} WHERE name = $1");
        let done = sqlx::query(&sql).bind(name).execute(&self.pool).await.map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn versions_of(&self, name: Option<&str>) -> StoreResult<Vec<TransformVersion>> {
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT name, version, sha256, size_bytes, descriptor, created_at FROM transform_versions \
             WHERE $1::text IS NULL OR name = $1 ORDER BY name, created_at, version",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(VersionRow::into_version).collect()
    }
}

/// `"name"`, with embedded quotes doubled, for use as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ---------------------------------------------------------------------------
// Registry

#[async_trait]
impl Registry for PostgresStore {
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

    /// Two publishers of one version may race: the loser's insert does
    /// nothing (after waiting for the winner's commit), and the stored sha256
    /// then decides between `AlreadyExists` and `Conflict`, as it does when
    /// the version was there before.
    async fn insert_transform_version(&self, v: &TransformVersion, module: &[u8]) -> StoreResult<VersionInsert> {
        debug_assert_eq!(v.sha256, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(module)));
        let descriptor = serde_json::to_string(&v.descriptor)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode descriptor: {e}")))?;
        let size = i64::try_from(v.size_bytes).unwrap_or(i64::MAX);
        let stored_sha = async |conn: &mut sqlx::PgConnection| -> StoreResult<Option<String>> {
            sqlx::query_scalar("SELECT sha256 FROM transform_versions WHERE name = $1 AND version = $2")
                .bind(&v.name)
                .bind(&v.version)
                .fetch_optional(conn)
                .await
                .map_err(db_err)
        };
        let outcome = |sha: String| {
            if sha == v.sha256 {
                Ok(VersionInsert::AlreadyExists)
            } else {
                Err(StoreError::Conflict(format!(
                    "version {} of {} already exists with different bytes (sha256 {sha})",
                    v.version, v.name
                )))
            }
        };
        let mut tx = self.begin().await?;
        // Checked first so re-publishing does not ship the module bytes again.
        if let Some(sha) = stored_sha(&mut tx).await? {
            return outcome(sha);
        }
        let now = now_micros();
        sqlx::query(
            "INSERT INTO transforms (name, status, updated_at) VALUES ($1, 'inactive', $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&v.name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO modules (sha256, bytes, size_bytes, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&v.sha256)
        .bind(module)
        .bind(module.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let inserted = sqlx::query(
            "INSERT INTO transform_versions (name, version, sha256, size_bytes, descriptor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version) DO NOTHING",
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
        if inserted.rows_affected() == 0 {
            // Lost a race; under READ COMMITTED this statement sees the
            // winner's committed row.
            let sha = stored_sha(&mut tx).await?;
            tx.rollback().await.map_err(db_err)?;
            return sha.map_or_else(|| Err(StoreError::Conflict(format!("{}@{} changed", v.name, v.version))), outcome);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(VersionInsert::Created)
    }

    async fn get_transform_version(&self, name: &str, version: &str) -> StoreResult<Option<TransformVersion>> {
        let row: Option<VersionRow> = sqlx::query_as(
            "SELECT name, version, sha256, size_bytes, descriptor, created_at FROM transform_versions \
             WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(VersionRow::into_version).transpose()
    }

    async fn get_module(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT bytes FROM modules WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn get_transform(&self, name: &str) -> StoreResult<Option<TransformSummary>> {
        let row: Option<TransformRow> =
            sqlx::query_as(&format!("SELECT {TRANSFORM_COLUMNS} FROM transforms WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let versions = self.versions_of(Some(name)).await?;
        Ok(Some(row.into_summary(versions)?))
    }

    async fn list_transforms(&self) -> StoreResult<Vec<TransformSummary>> {
        let rows: Vec<TransformRow> =
            sqlx::query_as(&format!("SELECT {TRANSFORM_COLUMNS} FROM transforms ORDER BY name"))
                .fetch_all(&self.pool)
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

    /// Same rules as the SQLite store: activating `v` makes the version it
    /// replaces the rollback target; disabling keeps the disabled version as
    /// the rollback target; unknown transforms or versions are a `Conflict`.
    /// The row is locked while it is read, so concurrent switches serialize.
    async fn delete_transform_version(&self, name: &str, version: &str) -> StoreResult<VersionDelete> {
        let mut tx = self.begin().await?;
        let lifecycle: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT active_version, previous_version FROM transforms WHERE name = $1 FOR UPDATE")
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
        let sha256: Option<String> = sqlx::query_scalar(DELETE_VERSION_SQL)
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(sha256) = sha256 else {
            return Ok(VersionDelete::NotFound);
        };
        sqlx::query(DELETE_UNUSED_MODULE_SQL).bind(&sha256).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(VersionDelete::Deleted)
    }

    async fn set_active_version(&self, name: &str, version: Option<&str>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let current: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT active_version, previous_version FROM transforms WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some((active, previous)) = current else {
            return Err(StoreError::Conflict(format!("transform '{name}' does not exist")));
        };
        let (new_active, new_previous, status) = match version {
            Some(v) => {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM transform_versions WHERE name = $1 AND version = $2")
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
            "UPDATE transforms SET active_version = $2, previous_version = $3, status = $4, updated_at = $5 \
             WHERE name = $1",
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
        let current: Option<String> = sqlx::query_scalar("SELECT settings FROM transforms WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(current) = current else { return Ok(None) };
        let mut settings = settings_from_json(name, &current)?;
        change(&mut settings);
        sqlx::query("UPDATE transforms SET settings = $2, updated_at = $3 WHERE name = $1")
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
        let spec: Option<String> = sqlx::query_scalar("SELECT spec FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        spec.as_deref().map(job_from_spec).transpose()
    }

    async fn list_jobs(&self, feature_group: Option<&str>, limit: u32) -> StoreResult<Vec<Job>> {
        // Two statements, not `$1 IS NULL OR ...`: a generic plan for that
        // could not use either index.
        let specs: Vec<String> = match feature_group {
            Some(group) => {
                sqlx::query_scalar(
                    "SELECT spec FROM jobs WHERE feature_group = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                )
                .bind(group)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query_scalar("SELECT spec FROM jobs ORDER BY created_at DESC, id DESC LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db_err)?;
        specs.iter().map(|s| job_from_spec(s)).collect()
    }

    async fn create_job(&self, job: &Job, tasks: &[JobTask]) -> StoreResult<()> {
        let spec = job_spec(job)?;
        let mut task_nos = Vec::with_capacity(tasks.len());
        let mut entities = Vec::with_capacity(tasks.len());
        let mut after = Vec::with_capacity(tasks.len());
        for task in tasks {
            let (e, a) = task_columns(task)?;
            task_nos.push(i64::from(task.task_no));
            entities.push(e);
            after.push(a);
        }
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO jobs (id, feature_group, state, spec, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&job.id)
            .bind(&job.feature_group)
            .bind(job_state_name(job.state))
            .bind(spec)
            .bind(job.created_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO job_tasks (job_id, task_no, created_at, entities, after_json) \
             SELECT $1, n, $2, e, a FROM UNNEST($3::bigint[], $4::text[], $5::text[]) AS u (n, e, a)",
        )
        .bind(&job.id)
        .bind(job.created_at.0)
        .bind(task_nos)
        .bind(entities)
        .bind(after)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn lease_task(&self, owner: &str, lease: Duration) -> StoreResult<Option<LeasedTask>> {
        // SKIP LOCKED: hosts leasing at the same moment each take a
        // different task instead of queueing on the same row.
        let row: Option<LeasedRow> = sqlx::query_as(&format!(
            "UPDATE job_tasks SET state = 'leased', owner = $1, lease_expires_at = {DB_NOW} + $2, \
             attempts = attempts + 1 \
             WHERE (job_id, task_no) IN ( \
                 SELECT job_id, task_no FROM job_tasks \
                 WHERE state = 'pending' OR (state = 'leased' AND lease_expires_at < {DB_NOW}) \
                 ORDER BY created_at, job_id, task_no LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING job_id, task_no, entities, after_json, attempts"
        ))
        .bind(owner)
        .bind(micros(lease))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(LeasedRow::into_leased).transpose()
    }

    async fn renew_lease(&self, job_id: &str, task_no: u32, owner: &str, lease: Duration) -> StoreResult<bool> {
        let done = sqlx::query(&format!(
            "UPDATE job_tasks SET lease_expires_at = {DB_NOW} + $4 \
             WHERE job_id = $1 AND task_no = $2 AND owner = $3 AND state = 'leased'"
        ))
        .bind(job_id)
        .bind(i64::from(task_no))
        .bind(owner)
        .bind(micros(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_task(&self, job_id: &str, task_no: u32, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE job_tasks SET state = 'pending', owner = NULL, lease_expires_at = NULL \
             WHERE job_id = $1 AND task_no = $2 AND owner = $3 AND state = 'leased'",
        )
        .bind(job_id)
        .bind(i64::from(task_no))
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn claim_schedule(&self, group: &str, now: Timestamp, next: Timestamp) -> StoreResult<bool> {
        sqlx::query(REGISTER_SCHEDULE_SQL).bind(group).bind(next.0).execute(&self.pool).await.map_err(db_err)?;
        let claimed: Option<String> = sqlx::query_scalar(CLAIM_SCHEDULE_SQL)
            .bind(group)
            .bind(now.0)
            .bind(next.0)
            .fetch_optional(&self.pool)
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
        let held = sqlx::query(&format!(
            "UPDATE job_tasks SET state = 'done', finished_at = {DB_NOW} \
             WHERE job_id = $1 AND task_no = $2 AND owner = $3 AND state = 'leased'"
        ))
        .bind(job_id)
        .bind(i64::from(task_no))
        .bind(&outcome.host)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if held.rows_affected() == 0 {
            return Ok(None);
        }
        // The job row lock orders the completions of one job. The count runs
        // after it, so it sees every completion committed before ours: the
        // last completion always sees no open task and finishes the job.
        let spec: String = sqlx::query_scalar("SELECT spec FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_tasks WHERE job_id = $1 AND state <> 'done'")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut job = job_from_spec(&spec)?;
        job.record_task(outcome, open == 0, now);
        sqlx::query("UPDATE jobs SET state = $2, spec = $3 WHERE id = $1")
            .bind(job_id)
            .bind(job_state_name(job.state))
            .bind(job_spec(&job)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(job))
    }

    async fn changes(&self) -> StoreResult<Option<mpsc::Receiver<RegistryChange>>> {
        Ok(Some(super::pg_listen::spawn(self.pool.clone(), self.schema.clone()).await?))
    }

    async fn announce(&self, change: &RegistryChange) -> StoreResult<()> {
        let Some(payload) = super::pg_listen::announcement(change, &self.schema) else {
            return Ok(());
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::pg_listen::CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        sqlx::query(AUDIT_INSERT_SQL)
            .bind(entry.at.0)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(entry.details.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_audit(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> =
            sqlx::query_as(AUDIT_LIST_SQL).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.into_iter().map(AuditRow::into_entry).collect()
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Offline store

/// Indices of `keys`, keeping only the last occurrence of each key, in input
/// order: what SQLite's row-by-row upsert of the same rows would leave.
fn last_of_each<K: Eq + std::hash::Hash>(keys: impl DoubleEndedIterator<Item = K> + ExactSizeIterator) -> Vec<usize> {
    let n = keys.len();
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut keep: Vec<usize> =
        keys.rev().enumerate().filter_map(|(i, k)| seen.insert(k).then_some(n - 1 - i)).collect();
    keep.reverse();
    keep
}

/// `ingested_at` is the database's clock when the statement runs, inside
/// the writing transaction, so `source_ingest_watermark` can trust it.
const SOURCE_UPSERT: &str = "INSERT INTO source_rows (source, entity_key, ts, values_json, ingested_at) \
     SELECT $1, k, t, v, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint \
     FROM UNNEST($2::text[], $3::bigint[], $4::text[]) AS u (k, t, v) \
     ON CONFLICT (source, entity_key, ts) DO UPDATE \
     SET values_json = excluded.values_json, ingested_at = excluded.ingested_at \
     WHERE source_rows.values_json <> excluded.values_json";

const FEATURE_UPSERT: &str = "INSERT INTO feature_rows \
         (group_name, entity_key, event_ts, created_ts, created_given, values_json, provenance) \
     SELECT $1, k, e, c, g, v, p \
     FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bool[], $6::text[], $7::text[]) AS u (k, e, c, g, v, p) \
     ON CONFLICT (group_name, entity_key, event_ts, created_ts) DO UPDATE \
     SET values_json = excluded.values_json, provenance = excluded.provenance, \
         created_given = excluded.created_given \
     WHERE feature_rows.values_json <> excluded.values_json \
        OR feature_rows.provenance IS DISTINCT FROM excluded.provenance \
        OR feature_rows.created_given <> excluded.created_given";

/// For each key, the newest (event_ts, created_ts) is one backwards seek on
/// the primary key; `DISTINCT ON` would read an entity's whole history.
const LATEST_FEATURES: &str = "SELECT f.entity_key, f.event_ts, f.created_ts, f.created_given, f.values_json, \
         f.provenance \
     FROM UNNEST($2::text[]) AS k (key) CROSS JOIN LATERAL ( \
         SELECT entity_key, event_ts, created_ts, created_given, values_json, provenance FROM feature_rows \
         WHERE group_name = $1 AND entity_key = k.key \
         ORDER BY event_ts DESC, created_ts DESC LIMIT 1) AS f";

/// Per point, one backwards seek on the primary key within its bounds.
const AS_OF: &str = "SELECT p.i, f.event_ts, f.created_ts, f.created_given, f.values_json, f.provenance \
     FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) WITH ORDINALITY AS p (k, t, earliest, created_max, i) \
     CROSS JOIN LATERAL ( \
         SELECT event_ts, created_ts, created_given, values_json, provenance FROM feature_rows \
         WHERE group_name = $1 AND entity_key = p.k AND event_ts <= p.t AND event_ts >= p.earliest \
           AND (created_ts <= p.created_max OR NOT created_given) \
         ORDER BY event_ts DESC, created_ts DESC LIMIT 1) AS f";

#[async_trait]
impl OfflineStore for PostgresStore {
    async fn write_source_rows(&self, table: &TableDef, rows: &[SourceRow]) -> StoreResult<u64> {
        let source = table.name.as_str();
        if rows.is_empty() {
            return Ok(0);
        }
        // Encode before taking a connection, so it is held for SQL only.
        let encoded = rows.iter().map(|r| values_json(&r.values)).collect::<StoreResult<Vec<_>>>()?;
        let mut tx = self.begin().await?;
        for (rows, values) in rows.chunks(ROWS_PER_INSERT).zip(encoded.chunks(ROWS_PER_INSERT)) {
            let keep = last_of_each(rows.iter().map(|r| (r.entity.as_str(), r.ts)));
            let keys: Vec<&str> = keep.iter().map(|&i| rows[i].entity.as_str()).collect();
            let ts: Vec<i64> = keep.iter().map(|&i| rows[i].ts.0).collect();
            let values: Vec<&str> = keep.iter().map(|&i| values[i].as_str()).collect();
            sqlx::query(SOURCE_UPSERT)
                .bind(source)
                .bind(keys)
                .bind(ts)
                .bind(values)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rows.len() as u64)
    }

    async fn read_source(&self, source: &str, entity: &EntityKey, range: SourceRange) -> StoreResult<Vec<SourceRow>> {
        let until = range.until.map_or(i64::MAX, |t| t.0);
        let mut rows: Vec<(i64, String)> = match range.last {
            Some(n) => sqlx::query_as(
                "SELECT ts, values_json FROM source_rows WHERE source = $1 AND entity_key = $2 AND ts <= $3 \
                 ORDER BY ts DESC LIMIT $4",
            )
            .bind(source)
            .bind(entity.as_str())
            .bind(until)
            .bind(i64::from(n))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?,
            None => sqlx::query_as(
                "SELECT ts, values_json FROM source_rows WHERE source = $1 AND entity_key = $2 AND ts <= $3 \
                 ORDER BY ts",
            )
            .bind(source)
            .bind(entity.as_str())
            .bind(until)
            .fetch_all(&self.pool)
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
            "SELECT entity_key, MAX(ts) FROM source_rows WHERE source = $1 GROUP BY entity_key ORDER BY entity_key",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(|(k, ts)| (EntityKey(k), Timestamp(ts))).collect())
    }

    async fn source_ingest_watermark(&self, source: &str) -> StoreResult<Option<Timestamp>> {
        // SHARE mode waits for every write transaction on the table to end
        // and holds new ones back for this one index lookup, so no row
        // stamped earlier can commit after the watermark is read.
        let mut tx = self.begin().await?;
        sqlx::query("LOCK TABLE source_rows IN SHARE MODE").execute(&mut *tx).await.map_err(db_err)?;
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(ingested_at) FROM source_rows WHERE source = $1")
            .bind(source)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(newest.map(Timestamp))
    }

    async fn source_changes(&self, source: &str, after: Timestamp) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT entity_key, MIN(ts) FROM source_rows WHERE source = $1 AND ingested_at > $2 \
             GROUP BY entity_key ORDER BY entity_key",
        )
        .bind(source)
        .bind(after.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(|(k, ts)| (EntityKey(k), Timestamp(ts))).collect())
    }

    async fn delete_source_rows(&self, source: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM source_rows WHERE source = $1")
            .bind(source)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn write_feature_rows(&self, table: &TableDef, rows: &[FeatureRow]) -> StoreResult<u64> {
        let group = table.name.as_str();
        if rows.is_empty() {
            return Ok(0);
        }
        let encoded = rows.iter().map(|r| values_json(&r.values)).collect::<StoreResult<Vec<_>>>()?;
        let provenances = super::sql::provenance_texts(rows.iter().map(|r| r.provenance.as_ref()));
        let mut tx = self.begin().await?;
        let chunks =
            rows.chunks(ROWS_PER_INSERT).zip(encoded.chunks(ROWS_PER_INSERT)).zip(provenances.chunks(ROWS_PER_INSERT));
        for ((rows, values), provenances) in chunks {
            let keep = last_of_each(rows.iter().map(|r| (r.entity.as_str(), r.event_ts, r.created)));
            let keys: Vec<&str> = keep.iter().map(|&i| rows[i].entity.as_str()).collect();
            let events: Vec<i64> = keep.iter().map(|&i| rows[i].event_ts.0).collect();
            let created: Vec<i64> = keep.iter().map(|&i| rows[i].created.0).collect();
            let given: Vec<bool> = keep.iter().map(|&i| rows[i].created_given).collect();
            let values: Vec<&str> = keep.iter().map(|&i| values[i].as_str()).collect();
            let provenances: Vec<Option<&str>> = keep.iter().map(|&i| provenances[i].as_deref()).collect();
            sqlx::query(FEATURE_UPSERT)
                .bind(group)
                .bind(keys)
                .bind(events)
                .bind(created)
                .bind(given)
                .bind(values)
                .bind(provenances)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
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
            let rows: Vec<(String, i64, i64, bool, String, Option<String>)> =
                sqlx::query_as(LATEST_FEATURES).bind(group).bind(keys).fetch_all(&self.pool).await.map_err(db_err)?;
            for (key, event_ts, created, created_given, values, provenance) in rows {
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
            let keys: Vec<&str> = chunk.iter().map(|(e, _)| e.as_str()).collect();
            let at: Vec<i64> = chunk.iter().map(|(_, t)| t.0).collect();
            let (earliest, created_max): (Vec<i64>, Vec<i64>) = chunk.iter().map(|(_, t)| rules.bounds(*t)).unzip();
            let found: Vec<(i64, i64, i64, bool, String, Option<String>)> = sqlx::query_as(AS_OF)
                .bind(group)
                .bind(keys)
                .bind(at)
                .bind(earliest)
                .bind(created_max)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
            let base = chunk_no * POINTS_PER_LOOKUP;
            for (ordinal, event_ts, created, created_given, values, provenance) in found {
                // WITH ORDINALITY counts from 1.
                let i = usize::try_from(ordinal - 1).map_err(|_| StoreError::Corrupt(format!("ordinal {ordinal}")))?;
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
        sqlx::query("DELETE FROM feature_rows WHERE group_name = $1")
            .bind(group)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn freshness(
        &self,
        group: &str,
        stale_before: Option<Timestamp>,
        expired_before: Option<Timestamp>,
    ) -> StoreResult<FreshnessCounts> {
        let row: (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(FRESHNESS_SQL)
            .bind(group)
            .bind(expired_before.map_or(i64::MIN, |t| t.0))
            .bind(stale_before.map_or(i64::MIN, |t| t.0))
            .fetch_one(&self.pool)
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
        // One statement: each row's JSON is parsed once (jsonb), and
        // PostgreSQL's ordered-set aggregate gives both percentiles with
        // linear interpolation, as numpy does.
        let mut columns = vec!["COUNT(*)::bigint".to_string()];
        for (i, (_, numeric)) in features.iter().enumerate() {
            let key = format!("${}", i + 2);
            if *numeric {
                let v = format!("(j ->> {key})::float8");
                columns.push(format!(
                    "COUNT({v})::bigint, AVG({v}), STDDEV_SAMP({v}), MIN({v}), MAX({v}), \
                     PERCENTILE_CONT(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY {v})"
                ));
            } else {
                columns.push(format!(
                    "COUNT(NULLIF(j -> {key}, 'null'::jsonb))::bigint, NULL::float8, NULL::float8, NULL::float8, \
                     NULL::float8, NULL::float8[]"
                ));
            }
        }
        let sql = format!(
            "SELECT {} FROM (SELECT values_json::jsonb AS j FROM feature_rows WHERE group_name = $1) AS t",
            columns.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(group);
        for (name, _) in features {
            query = query.bind(name);
        }
        let row = query.fetch_one(&self.pool).await.map_err(db_err)?;
        let total: i64 = row.try_get(0).map_err(db_err)?;
        let mut stats = Vec::with_capacity(features.len());
        for i in 0..features.len() {
            let at = 1 + 6 * i;
            let count: i64 = row.try_get(at).map_err(db_err)?;
            let percentiles: Option<Vec<Option<f64>>> = row.try_get(at + 5).map_err(db_err)?;
            let percentile = |k: usize| percentiles.as_ref().and_then(|p| p.get(k).copied().flatten());
            stats.push(FeatureStatistics {
                count: count as u64,
                nulls: (total - count) as u64,
                mean: row.try_get(at + 1).map_err(db_err)?,
                std: row.try_get(at + 2).map_err(db_err)?,
                min: row.try_get(at + 3).map_err(db_err)?,
                max: row.try_get(at + 4).map_err(db_err)?,
                p50: percentile(0),
                p95: percentile(1),
            });
        }
        Ok(stats)
    }

    async fn ping(&self) -> StoreResult<()> {
        Registry::ping(self).await
    }
}

// ---------------------------------------------------------------------------
// Write log

#[async_trait]
impl WriteLog for PostgresStore {
    async fn append(&self, table: &str, payload: &[u8], rows: u64) -> StoreResult<(i64, Timestamp)> {
        // One statement is its own transaction. `written_at` is the
        // database's clock inside it; `newest_written` waits for every
        // insert in flight, so it cannot miss an earlier stamp.
        let (seq, written_at): (i64, i64) = sqlx::query_as(&format!(
            "INSERT INTO offline_log (table_name, row_count, written_at, payload) VALUES ($1, $2, {DB_NOW}, $3) \
             RETURNING seq, written_at"
        ))
        .bind(table)
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .bind(payload)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((seq, Timestamp(written_at)))
    }

    async fn next_seq(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT nextval('offline_log_seq')").fetch_one(&self.pool).await.map_err(db_err)
    }

    async fn entries(&self, table: &str, max_rows: u64) -> StoreResult<Vec<LogEntry>> {
        let rows: Vec<LogRow> = sqlx::query_as(LOG_ENTRIES_SQL)
            .bind(table)
            .bind(i64::try_from(max_rows).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(LogRow::into_entry).collect())
    }

    async fn remove(&self, table: &str, seqs: &[i64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM offline_log WHERE table_name = $1 AND seq = ANY($2)")
            .bind(table)
            .bind(seqs)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn clear(&self, table: &str) -> StoreResult<()> {
        sqlx::query(LOG_CLEAR_SQL).bind(table).execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn pending(&self) -> StoreResult<Vec<PendingTable>> {
        let rows: Vec<(String, i64, i64, i64, i64)> =
            sqlx::query_as(LOG_PENDING_SQL).fetch_all(&self.pool).await.map_err(db_err)?;
        Ok(rows.into_iter().map(pending_table).collect())
    }

    async fn seqs(&self, table: &str) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(LOG_SEQS_SQL).bind(table).fetch_all(&self.pool).await.map_err(db_err)
    }

    async fn entries_in(&self, table: &str, seqs: &[i64]) -> StoreResult<Vec<LogEntry>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT seq, payload, row_count, written_at FROM offline_log \
             WHERE table_name = $1 AND seq = ANY($2) ORDER BY seq",
        )
        .bind(table)
        .bind(seqs)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(LogRow::into_entry).collect())
    }

    async fn newest_written(&self, table: &str) -> StoreResult<Option<Timestamp>> {
        // As in `source_ingest_watermark`: SHARE mode waits for every append
        // in flight and holds new ones back for this one index lookup.
        let mut tx = self.begin().await?;
        sqlx::query("LOCK TABLE offline_log IN SHARE MODE").execute(&mut *tx).await.map_err(db_err)?;
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(written_at) FROM offline_log WHERE table_name = $1")
            .bind(table)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(newest.map(Timestamp))
    }

    async fn lease(&self, name: &str, owner: &str, lease: Duration) -> StoreResult<bool> {
        // A conflicting upsert locks the row and rechecks the condition on
        // its newest version, so two hosts cannot both take it.
        let taken: Option<String> = sqlx::query_scalar(&take_log_lease_sql(DB_NOW))
            .bind(name)
            .bind(owner)
            .bind(micros(lease))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(taken.is_some())
    }

    async fn release(&self, name: &str, owner: &str) -> StoreResult<()> {
        sqlx::query(RELEASE_LOG_LEASE_SQL).bind(name).bind(owner).execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Errors and time

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable { backend: BACKEND, message }
}

/// Decoding failures and PostgreSQL's data-corruption codes mean the stored
/// data is bad; constraint violations that a call site did not anticipate are
/// conflicts; everything else (connection, pool, I/O, timeouts) may pass on
/// retry.
fn db_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Decode(_) | E::ColumnDecode { .. } | E::ColumnNotFound(_) | E::ColumnIndexOutOfBounds { .. } => {
            StoreError::Corrupt(e.to_string())
        }
        E::Database(db) => {
            // data_corrupted, index_corrupted.
            if matches!(db.code().as_deref(), Some("XX001" | "XX002")) {
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

/// The database's clock in microseconds: leases are compared on one clock
/// whichever host wrote them.
const DB_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FeatureSpec, Freshness, JobState, Producer, SourceField, Value, ValueType};
    use crate::store::conformance::table;
    use sqlx::{Connection, Executor};
    use std::collections::BTreeMap;

    const URL_VAR: &str = "WAFER_TEST_DATABASE_URL";

    /// A store in a fresh schema of the test server, dropped (with all its
    /// tables) when this goes out of scope, even if the test panicked.
    struct TestDb {
        store: PostgresStore,
        url: String,
        schema: String,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let (url, name, schema) = (self.url.clone(), self.schema.clone(), quote_ident(&self.schema));
            // Drop runs inside the test's runtime, which cannot be blocked
            // on; a thread with its own runtime can. That runtime is stuck
            // in this drop, so the store's pooled connections never finish
            // what they were doing (a transaction dropped on an error path
            // rolls back only when its connection is next polled); they
            // would hold locks DROP SCHEMA waits for. End them first: they
            // carry the schema as their application name.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&url).await?;
                    sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await?;
                    conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str()).await?;
                    conn.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}: {dropped:?}", self.schema);
            }
        }
    }

    fn test_url() -> Option<String> {
        let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty());
        if url.is_none() {
            eprintln!("skipped the PostgreSQL backend: {URL_VAR} is not set");
        }
        url
    }

    /// Connects with the schema as the connections' application name, so
    /// `TestDb`'s drop can find and end them.
    async fn connect(url: &str, schema: &str) -> PostgresStore {
        let sep = if url.contains('?') { '&' } else { '?' };
        PostgresStore::connect(&format!("{url}{sep}application_name={schema}"), Some(schema)).await.unwrap()
    }

    /// `None` (after saying so) when no test server is configured.
    async fn store() -> Option<TestDb> {
        let url = test_url()?;
        let schema = format!("wafer_test_{:016x}", rand::random::<u64>());
        let store = connect(&url, &schema).await;
        Some(TestDb { store, url, schema })
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

    async fn count(store: &PostgresStore, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&store.pool).await.unwrap()
    }

    #[tokio::test]
    async fn registry_objects_round_trip_and_deleting_removes_only_the_definition() {
        let Some(db) = store().await else { return };
        let store = &db.store;
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
        store.write_source_rows(&table("prices"), &[source_row("AAPL", 1, 1.0)]).await.unwrap();

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
        assert_eq!(count(store, "source_rows").await, 1, "data is deleted separately");
    }

    #[tokio::test]
    async fn publishing_the_same_bytes_again_is_a_no_op_and_different_bytes_conflict() {
        let Some(db) = store().await else { return };
        let store = &db.store;
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
        assert_eq!(count(store, "modules").await, 1);

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
        let Some(db) = store().await else { return };
        let store = &db.store;
        for (i, v) in ["1.0.0", "1.1.0", "2.0.0"].iter().enumerate() {
            let bytes = format!("bytes {v}");
            store
                .insert_transform_version(&version("risk", v, bytes.as_bytes(), i as i64), bytes.as_bytes())
                .await
                .unwrap();
        }
        let state = async |store: &PostgresStore| {
            let t = store.get_transform("risk").await.unwrap().unwrap();
            (t.status, t.active_version, t.previous_version)
        };
        let s = |status: &str, active: Option<&str>, previous: Option<&str>| {
            (status.to_string(), active.map(String::from), previous.map(String::from))
        };

        store.set_active_version("risk", Some("1.0.0")).await.unwrap();
        assert_eq!(state(store).await, s("active", Some("1.0.0"), None));
        store.set_active_version("risk", Some("1.1.0")).await.unwrap();
        assert_eq!(state(store).await, s("active", Some("1.1.0"), Some("1.0.0")));
        // Activating the active version again changes nothing.
        store.set_active_version("risk", Some("1.1.0")).await.unwrap();
        assert_eq!(state(store).await, s("active", Some("1.1.0"), Some("1.0.0")));
        // Rollback is activating the previous version: the two swap.
        store.set_active_version("risk", Some("1.0.0")).await.unwrap();
        assert_eq!(state(store).await, s("active", Some("1.0.0"), Some("1.1.0")));

        store.set_active_version("risk", None).await.unwrap();
        assert_eq!(state(store).await, s("disabled", None, Some("1.0.0")));
        store.set_active_version("risk", None).await.unwrap();
        assert_eq!(state(store).await, s("disabled", None, Some("1.0.0")));
        store.set_active_version("risk", Some("2.0.0")).await.unwrap();
        assert_eq!(state(store).await, s("active", Some("2.0.0"), Some("1.0.0")));

        assert!(matches!(store.set_active_version("risk", Some("3.0.0")).await, Err(StoreError::Conflict(_))));
        assert!(matches!(store.set_active_version("nope", Some("1.0.0")).await, Err(StoreError::Conflict(_))));
        let listed = store.list_transforms().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].versions.len(), 3);
    }

    #[tokio::test]
    async fn job_task_leases_are_exclusive_and_the_last_completion_finishes_the_job() {
        let Some(db) = store().await else { return };
        crate::store::conformance::leases_are_exclusive_and_the_last_completion_finishes_the_job(&db.store).await;
    }

    #[tokio::test]
    async fn expired_job_task_leases_are_taken_over_and_released_tasks_return() {
        let Some(db) = store().await else { return };
        crate::store::conformance::expired_leases_are_taken_over_and_released_tasks_return(&db.store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_leasers_never_share_a_job_task() {
        let Some(db) = store().await else { return };
        crate::store::conformance::concurrent_leasers_never_share_a_task(std::sync::Arc::new(db.store.clone())).await;
    }

    #[tokio::test]
    async fn write_log_entries_come_back_oldest_first_in_batches_of_rows() {
        let Some(db) = store().await else { return };
        crate::store::conformance::write_log_entries_come_back_oldest_first_in_batches_of_rows(&db.store).await;
    }

    #[tokio::test]
    async fn write_log_removes_exactly_the_given_entries_and_clears_a_table() {
        let Some(db) = store().await else { return };
        crate::store::conformance::write_log_removes_exactly_the_given_entries_and_clears_a_table(&db.store).await;
    }

    #[tokio::test]
    async fn write_log_pending_totals_each_table_with_waiting_entries() {
        let Some(db) = store().await else { return };
        crate::store::conformance::write_log_pending_totals_each_table_with_waiting_entries(&db.store).await;
    }

    #[tokio::test]
    async fn write_log_appends_and_next_seq_share_one_increasing_sequence() {
        let Some(db) = store().await else { return };
        crate::store::conformance::write_log_appends_and_next_seq_share_one_increasing_sequence(&db.store).await;
    }

    #[tokio::test]
    async fn write_log_lists_seqs_and_reads_the_named_entries() {
        let Some(db) = store().await else { return };
        crate::store::conformance::write_log_lists_seqs_and_reads_the_named_entries(&db.store).await;
    }

    #[tokio::test]
    async fn write_log_newest_written_is_the_last_append_of_the_table() {
        let Some(db) = store().await else { return };
        crate::store::conformance::write_log_newest_written_is_the_last_append_of_the_table(&db.store).await;
    }

    #[tokio::test]
    async fn write_log_leases_are_exclusive_until_released_or_expired() {
        let Some(db) = store().await else { return };
        crate::store::conformance::write_log_leases_are_exclusive_until_released_or_expired(&db.store).await;
    }

    /// Another host's registry write reaches this one as an announcement;
    /// announcements from another schema on the same database do not.
    #[tokio::test]
    async fn registry_writes_are_announced_to_every_host_of_the_schema() {
        let Some(db) = store().await else { return };
        let Some(other) = store().await else { return };
        let mut changes = db.store.changes().await.unwrap().expect("PostgreSQL announces changes");
        let peer = connect(&db.url, &db.schema).await;
        let entity = Entity { name: "ticker".into(), join_keys: vec!["ticker".into()], description: String::new() };
        other.store.put_entity(&entity).await.unwrap();
        peer.put_entity(&entity).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.expect("announced in time");
        assert_eq!(next, Some(RegistryChange::Entity("ticker".into())));
        peer.create_job(&sample_job("j1"), &[]).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.expect("announced in time");
        assert_eq!(next, Some(RegistryChange::JobCreated("j1".into())));
    }

    fn sample_job(id: &str) -> Job {
        Job {
            hosts: Default::default(),
            sources_ingested_until: None,
            id: id.into(),
            feature_group: "technical".into(),
            state: JobState::Running,
            incremental: false,
            entities_done: 0,
            entities_total: 0,
            rows_written: 0,
            errors: vec![],
            created_at: Timestamp::from_secs(1),
            started_at: None,
            finished_at: None,
            transform: None,
        }
    }

    #[tokio::test]
    async fn freshness_counts_each_entity_by_its_newest_row() {
        let Some(db) = store().await else { return };
        crate::store::conformance::freshness_counts_each_entity_by_its_newest_row(&db.store).await;
    }

    #[tokio::test]
    async fn statistics_match_hand_computed_values() {
        let Some(db) = store().await else { return };
        crate::store::conformance::statistics_match_hand_computed_values(&db.store).await;
    }

    #[tokio::test]
    async fn scheduled_runs_are_claimed_once_when_due() {
        let Some(db) = store().await else { return };
        crate::store::conformance::scheduled_runs_are_claimed_once_when_due(&db.store).await;
    }

    #[tokio::test]
    async fn source_changes_are_found_by_ingest_time_not_event_time() {
        let Some(db) = store().await else { return };
        crate::store::conformance::source_changes_are_found_by_ingest_time_not_event_time(&db.store).await;
    }

    #[tokio::test]
    async fn as_of_lookups_pick_the_row_known_at_each_point() {
        let Some(db) = store().await else { return };
        crate::store::conformance::as_of_lookups_pick_the_row_known_at_each_point(&db.store).await;
    }

    #[tokio::test]
    async fn as_of_lookups_match_a_brute_force_reference() {
        let Some(db) = store().await else { return };
        crate::store::conformance::as_of_lookups_match_a_brute_force_reference(&db.store).await;
    }

    #[tokio::test]
    async fn audit_entries_are_listed_newest_first() {
        let Some(db) = store().await else { return };
        crate::store::conformance::audit_entries_are_listed_newest_first(&db.store).await;
    }

    #[tokio::test]
    async fn versions_are_deleted_unless_in_use() {
        let Some(db) = store().await else { return };
        crate::store::conformance::versions_are_deleted_unless_in_use(&db.store).await;
    }

    #[tokio::test]
    async fn jobs_are_listed_newest_first() {
        let Some(db) = store().await else { return };
        crate::store::conformance::jobs_are_listed_newest_first(&db.store).await;
    }

    #[tokio::test]
    async fn writing_the_same_rows_twice_keeps_one_copy_of_each() {
        let Some(db) = store().await else { return };
        crate::store::conformance::writing_the_same_rows_twice_keeps_one_copy_of_each(&db.store).await;
    }

    #[tokio::test]
    async fn source_reads_honour_last_and_until_and_come_oldest_first() {
        let Some(db) = store().await else { return };
        crate::store::conformance::source_reads_honour_last_and_until_and_come_oldest_first(&db.store).await;
    }

    #[tokio::test]
    async fn latest_feature_row_is_the_newest_event_and_on_ties_the_newest_created() {
        let Some(db) = store().await else { return };
        crate::store::conformance::latest_feature_row_is_the_newest_event_and_on_ties_the_newest_created(&db.store)
            .await;
    }

    #[tokio::test]
    async fn provenance_round_trips_through_every_read() {
        let Some(db) = store().await else { return };
        crate::store::conformance::provenance_round_trips_through_every_read(&db.store).await;
    }

    #[tokio::test]
    async fn values_of_every_type_round_trip() {
        let Some(db) = store().await else { return };
        crate::store::conformance::values_of_every_type_round_trip(&db.store).await;
    }

    #[tokio::test]
    async fn unreadable_stored_data_is_reported_as_corrupt() {
        let Some(db) = store().await else { return };
        let store = &db.store;
        sqlx::query("INSERT INTO source_rows VALUES ('prices', 'AAPL', 1, 'not json', 0)")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.read_source("prices", &key("AAPL"), SourceRange::default()).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn acknowledged_writes_are_read_back_by_a_new_connection_and_schemas_do_not_meet() {
        let Some(db) = store().await else { return };
        {
            let store = connect(&db.url, &db.schema).await;
            store
                .put_entity(&Entity {
                    name: "ticker".into(),
                    join_keys: vec!["ticker".into()],
                    description: String::new(),
                })
                .await
                .unwrap();
            store.write_source_rows(&table("prices"), &[source_row("AAPL", 1, 1.0)]).await.unwrap();
            store.write_feature_rows(&table("technical"), &[feature_row("AAPL", 1, 2, 3.0)]).await.unwrap();
            let v = version("indicators", "1.0.0", b"wasm", 1);
            store.insert_transform_version(&v, b"wasm").await.unwrap();
            store.set_active_version("indicators", Some("1.0.0")).await.unwrap();
            // Dropped without close(), as after a crash.
        }
        // Connecting again runs the (already applied) migrations again.
        let store = connect(&db.url, &db.schema).await;
        assert_eq!(store.list_entities().await.unwrap().len(), 1);
        let rows = store.read_source("prices", &key("AAPL"), SourceRange::default()).await.unwrap();
        assert_eq!(rows, vec![source_row("AAPL", 1, 1.0)]);
        let latest = store.latest_feature_rows("technical", &[key("AAPL")]).await.unwrap();
        assert_eq!(latest, vec![Some(feature_row("AAPL", 1, 2, 3.0))]);
        let t = store.get_transform("indicators").await.unwrap().unwrap();
        assert_eq!(t.active_version.as_deref(), Some("1.0.0"));
        assert!(store.get_module(&t.versions[0].sha256).await.unwrap().is_some());
        Registry::ping(&store).await.unwrap();
        OfflineStore::ping(&store).await.unwrap();
        store.close().await;

        let Some(other) = self::store().await else { return };
        assert!(other.store.list_entities().await.unwrap().is_empty());
        assert!(other.store.source_entities("prices").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_same_key_twice_in_one_write_keeps_the_last_row() {
        let Some(db) = store().await else { return };
        let store = &db.store;
        let sources = [source_row("AAPL", 1, 1.0), source_row("AAPL", 2, 2.0), source_row("AAPL", 1, 3.0)];
        assert_eq!(store.write_source_rows(&table("prices"), &sources).await.unwrap(), 3);
        let rows = store.read_source("prices", &key("AAPL"), SourceRange::default()).await.unwrap();
        assert_eq!(rows, vec![source_row("AAPL", 1, 3.0), source_row("AAPL", 2, 2.0)]);

        let features = [feature_row("AAPL", 1, 1, 1.0), feature_row("AAPL", 1, 1, 2.0)];
        assert_eq!(store.write_feature_rows(&table("technical"), &features).await.unwrap(), 2);
        let latest = store.latest_feature_rows("technical", &[key("AAPL")]).await.unwrap();
        assert_eq!(latest, vec![Some(feature_row("AAPL", 1, 1, 2.0))]);
        assert_eq!(count(store, "feature_rows").await, 1);
    }

    #[tokio::test]
    async fn racing_publishers_of_one_version_get_one_created_and_one_verdict_by_bytes() {
        let Some(db) = store().await else { return };
        let store = &db.store;
        let same = version("risk", "1.0.0", b"bytes", 1);
        let (a, b) = tokio::join!(
            store.insert_transform_version(&same, b"bytes"),
            store.insert_transform_version(&same, b"bytes")
        );
        let mut outcomes = vec![a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| *o == VersionInsert::Created);
        assert_eq!(outcomes, vec![VersionInsert::AlreadyExists, VersionInsert::Created]);

        let one = version("risk", "2.0.0", b"one", 2);
        let two = version("risk", "2.0.0", b"two", 2);
        let (a, b) =
            tokio::join!(store.insert_transform_version(&one, b"one"), store.insert_transform_version(&two, b"two"));
        let created = [&a, &b].iter().filter(|r| matches!(r, Ok(VersionInsert::Created))).count();
        let conflicts = [&a, &b].iter().filter(|r| matches!(r, Err(StoreError::Conflict(_)))).count();
        assert_eq!((created, conflicts), (1, 1), "{a:?} {b:?}");
        assert_eq!(count(store, "transform_versions").await, 2);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_as_unavailable() {
        // Port 1 on loopback refuses connections; no test server needed.
        let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test", Some("x")).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { backend: "postgres", .. }), "{err:?}");
    }
}
