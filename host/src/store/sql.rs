//! What the SQL backends (SQLite and PostgreSQL) share: how registry
//! objects, transform versions, jobs and feature values are encoded in and
//! decoded from their rows, and the statements both dialects run alike
//! (with PostgreSQL's `$N` placeholders). Other SQL stays in its backend
//! file.

use super::stored;
use super::{LogEntry, PendingTable, StoreError, StoreResult};
use crate::model::{
    AuditEntry, Descriptor, Entity, EntityKey, FeatureGroup, FreshnessCounts, Job, JobState, JobTask, LeasedTask,
    Source, Timestamp, TransformSettings, TransformSummary, TransformVersion, Value,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Registry objects carry their name outside their stored spec.
pub(super) trait Named {
    fn set_name(&mut self, name: String);
}

macro_rules! named {
    ($($t:ty),*) => {$(
        impl Named for $t {
            fn set_name(&mut self, name: String) {
                self.name = name;
            }
        }
    )*};
}
named!(Entity, Source, FeatureGroup);

/// The object as a client would PUT it: its JSON without `name`, which is the
/// row's key (and which the model types refuse to deserialize).
pub(super) fn spec_json<T: Serialize>(value: &T) -> StoreResult<String> {
    let mut json = serde_json::to_value(value).map_err(|e| StoreError::Corrupt(format!("cannot encode spec: {e}")))?;
    if let Some(object) = json.as_object_mut() {
        object.remove("name");
    }
    Ok(json.to_string())
}

pub(super) fn from_spec<T: DeserializeOwned + Named>(table: &str, name: &str, spec: &str) -> StoreResult<T> {
    let mut value: T = serde_json::from_str(spec)
        .map_err(|e| StoreError::Corrupt(format!("{table} row '{name}' has an unreadable spec: {e}")))?;
    value.set_name(name.to_string());
    Ok(value)
}

#[derive(sqlx::FromRow)]
pub(super) struct VersionRow {
    pub(super) name: String,
    pub(super) version: String,
    sha256: String,
    pub(super) size_bytes: i64,
    pub(super) descriptor: String,
    pub(super) created_at: i64,
}

impl VersionRow {
    pub(super) fn into_version(self) -> StoreResult<TransformVersion> {
        let descriptor: Descriptor = serde_json::from_str(&self.descriptor).map_err(|e| {
            StoreError::Corrupt(format!("descriptor of {}@{} is unreadable: {e}", self.name, self.version))
        })?;
        Ok(TransformVersion {
            name: self.name,
            version: self.version,
            sha256: self.sha256,
            size_bytes: u64::try_from(self.size_bytes).unwrap_or_default(),
            descriptor,
            created_at: Timestamp(self.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TransformRow {
    pub(super) name: String,
    pub(super) active_version: Option<String>,
    pub(super) previous_version: Option<String>,
    pub(super) status: String,
    pub(super) settings: String,
}

/// The columns a [`TransformRow`] reads.
pub(super) const TRANSFORM_COLUMNS: &str = "name, active_version, previous_version, status, settings";

impl TransformRow {
    pub(super) fn into_summary(self, versions: Vec<TransformVersion>) -> StoreResult<TransformSummary> {
        let settings = settings_from_json(&self.name, &self.settings)?;
        Ok(TransformSummary {
            name: self.name,
            active_version: self.active_version,
            previous_version: self.previous_version,
            status: self.status,
            versions,
            settings,
        })
    }
}

pub(super) fn settings_from_json(name: &str, json: &str) -> StoreResult<TransformSettings> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("settings of transform '{name}' are unreadable: {e}")))
}

pub(super) fn settings_to_json(settings: &TransformSettings) -> StoreResult<String> {
    serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(format!("encoding transform settings: {e}")))
}

pub(super) fn job_state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
    }
}

pub(super) fn job_from_spec(spec: &str) -> StoreResult<Job> {
    serde_json::from_str(spec).map_err(|e| StoreError::Corrupt(format!("job record is unreadable: {e}")))
}

pub(super) fn values_json(values: &BTreeMap<String, Value>) -> StoreResult<String> {
    serde_json::to_string(values).map_err(|e| StoreError::Corrupt(format!("cannot encode values: {e}")))
}

pub(super) fn values_from_json(text: &str) -> StoreResult<BTreeMap<String, Value>> {
    serde_json::from_str::<stored::Values>(text)
        .map(|v| v.0)
        .map_err(|e| StoreError::Corrupt(format!("stored values are unreadable: {e}")))
}

/// A row's `provenance` column: the text form `name@version#sha256` (see
/// migrations/sqlite/0005_provenance.sql for why), NULL for none. Rows of
/// one write usually share one provenance, so each distinct one is
/// formatted once.
pub(super) fn provenance_texts<'a>(
    provenances: impl Iterator<Item = Option<&'a crate::model::Provenance>>,
) -> Vec<Option<std::sync::Arc<str>>> {
    let mut last: Option<(&crate::model::Provenance, std::sync::Arc<str>)> = None;
    provenances
        .map(|p| {
            let p = p?;
            match &last {
                Some((seen, text)) if *seen == p => Some(text.clone()),
                _ => {
                    let text: std::sync::Arc<str> = p.to_string().into();
                    last = Some((p, text.clone()));
                    Some(text)
                }
            }
        })
        .collect()
}

pub(super) fn provenance_from_text(text: Option<&str>) -> StoreResult<Option<crate::model::Provenance>> {
    text.map(|t| crate::model::Provenance::parse(t).map_err(|e| StoreError::Corrupt(format!("stored provenance: {e}"))))
        .transpose()
}

pub(super) fn job_spec(job: &Job) -> StoreResult<String> {
    serde_json::to_string(job).map_err(|e| StoreError::Corrupt(format!("cannot encode job: {e}")))
}

/// A task's `entities` and `after_json` columns.
pub(super) fn task_columns(task: &JobTask) -> StoreResult<(String, String)> {
    let entities: Vec<&str> = task.entities.iter().map(|e| e.0.as_str()).collect();
    let after: Vec<Option<i64>> = task.after.iter().map(|a| a.map(|t| t.0)).collect();
    let encode = |e: serde_json::Error| StoreError::Corrupt(format!("cannot encode job task: {e}"));
    Ok((serde_json::to_string(&entities).map_err(encode)?, serde_json::to_string(&after).map_err(encode)?))
}

/// A task row as `lease_task` returns it.
#[derive(sqlx::FromRow)]
pub(super) struct LeasedRow {
    job_id: String,
    task_no: i64,
    entities: String,
    after_json: String,
    attempts: i64,
}

impl LeasedRow {
    pub(super) fn into_leased(self) -> StoreResult<LeasedTask> {
        let corrupt = |e: serde_json::Error| {
            StoreError::Corrupt(format!("task {} of job {} is unreadable: {e}", self.task_no, self.job_id))
        };
        let entities: Vec<String> = serde_json::from_str(&self.entities).map_err(corrupt)?;
        let after: Vec<Option<i64>> = serde_json::from_str(&self.after_json).map_err(corrupt)?;
        let task = JobTask {
            task_no: u32::try_from(self.task_no).unwrap_or_default(),
            entities: entities.into_iter().map(EntityKey).collect(),
            after: after.into_iter().map(|a| a.map(Timestamp)).collect(),
            job_id: self.job_id,
        };
        Ok(LeasedTask { task, attempt: u32::try_from(self.attempts).unwrap_or_default() })
    }
}

/// Each entity's newest row counted by age; `$2` is the expired bound and
/// `$3` the stale bound (event times before them). PostgreSQL placeholders;
/// SQLite's are the same with `?` (see [`sqlite_placeholders`]).
pub(super) const FRESHNESS_SQL: &str = "SELECT COUNT(*), \
     SUM(CASE WHEN latest < $2 THEN 1 ELSE 0 END), \
     SUM(CASE WHEN latest >= $2 AND latest < $3 THEN 1 ELSE 0 END), \
     MIN(latest), MAX(latest) \
     FROM (SELECT MAX(event_ts) AS latest FROM feature_rows WHERE group_name = $1 GROUP BY entity_key) AS t";

pub(super) fn freshness_counts(
    (entities, expired, stale, oldest, newest): (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>),
) -> FreshnessCounts {
    let (expired, stale) = (expired.unwrap_or(0) as u64, stale.unwrap_or(0) as u64);
    FreshnessCounts {
        entities: entities as u64,
        fresh: (entities as u64).saturating_sub(expired + stale),
        stale,
        expired,
        newest_event_timestamp: newest.map(Timestamp),
        oldest_event_timestamp: oldest.map(Timestamp),
    }
}

/// For each quantile `q` of `n` sorted values: the rank below `q * (n - 1)`
/// and the fraction of the way to the next one (numpy's linear method).
pub(super) fn percentile_ranks(n: u64, quantiles: &[f64]) -> Vec<(usize, f64)> {
    quantiles
        .iter()
        .map(|q| {
            let rank = q * (n.saturating_sub(1)) as f64;
            (rank.floor() as usize, rank - rank.floor())
        })
        .collect()
}

/// `lo + frac * (hi - lo)`; `hi` may be absent at the top rank.
pub(super) fn interpolate(lo: Option<f64>, hi: Option<f64>, frac: f64) -> Option<f64> {
    let lo = lo?;
    Some(match hi {
        Some(hi) if frac > 0.0 => lo + frac * (hi - lo),
        _ => lo,
    })
}

/// `$N` placeholders as SQLite's numbered `?N` (in SQLite, `$2` would be a
/// named parameter, bound by order of appearance).
pub(super) fn sqlite_placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Registers a group's schedule, its first run one interval away (`$2`);
/// a schedule already registered is left as it is.
pub(super) const REGISTER_SCHEDULE_SQL: &str =
    "INSERT INTO schedules (feature_group, next_run_at) VALUES ($1, $2) ON CONFLICT (feature_group) DO NOTHING";

/// Claims a due scheduled run: moves a due one (`next_run_at <= $2`) to
/// `$3`. A row comes back only when this call made the change. PostgreSQL
/// placeholders (see [`sqlite_placeholders`]).
pub(super) const CLAIM_SCHEDULE_SQL: &str = "UPDATE schedules SET next_run_at = $3 \
     WHERE feature_group = $1 AND next_run_at <= $2 RETURNING feature_group";

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    at: i64,
    actor: String,
    action: String,
    target: String,
    details: String,
}

impl AuditRow {
    pub(super) fn into_entry(self) -> StoreResult<AuditEntry> {
        let details = serde_json::from_str(&self.details)
            .map_err(|e| StoreError::Corrupt(format!("audit entry details are not JSON: {e}")))?;
        Ok(AuditEntry { at: Timestamp(self.at), actor: self.actor, action: self.action, target: self.target, details })
    }
}

/// Appends an audit entry. PostgreSQL placeholders (see
/// [`sqlite_placeholders`]).
pub(super) const AUDIT_INSERT_SQL: &str =
    "INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)";

/// The newest `$1` audit entries; `id` orders them as committed.
pub(super) const AUDIT_LIST_SQL: &str =
    "SELECT at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT $1";

/// Deletes a version, returning its module's sha256.
pub(super) const DELETE_VERSION_SQL: &str =
    "DELETE FROM transform_versions WHERE name = $1 AND version = $2 RETURNING sha256";

/// Deletes a module no version publishes any more.
pub(super) const DELETE_UNUSED_MODULE_SQL: &str =
    "DELETE FROM modules WHERE sha256 = $1 AND NOT EXISTS (SELECT 1 FROM transform_versions WHERE sha256 = $1)";

/// Why `version` may not be deleted, given its transform's active and
/// previous (rollback) versions.
pub(super) fn version_in_use(active: Option<&str>, previous: Option<&str>, version: &str) -> Option<&'static str> {
    if active == Some(version) {
        Some("the active version")
    } else if previous == Some(version) {
        Some("the rollback target (previously active version)")
    } else {
        None
    }
}

/// A write-log entry as [`LOG_ENTRIES_SQL`] returns it.
#[derive(sqlx::FromRow)]
pub(super) struct LogRow {
    seq: i64,
    payload: Vec<u8>,
    row_count: i64,
    written_at: i64,
}

impl LogRow {
    pub(super) fn into_entry(self) -> LogEntry {
        LogEntry {
            seq: self.seq,
            payload: self.payload,
            rows: u64::try_from(self.row_count).unwrap_or_default(),
            written_at: Timestamp(self.written_at),
        }
    }
}

/// A table's write-log entries, oldest first, while their running row count
/// stays within `$2`, and always the first. The running sums read only
/// `seq` and `row_count`; payloads are fetched for the entries returned.
/// PostgreSQL placeholders (see [`sqlite_placeholders`]).
pub(super) const LOG_ENTRIES_SQL: &str = "SELECT l.seq, l.payload, l.row_count, l.written_at FROM ( \
         SELECT seq, ROW_NUMBER() OVER w AS n, SUM(row_count) OVER w AS upto FROM offline_log \
         WHERE table_name = $1 WINDOW w AS (ORDER BY seq)) AS t \
     JOIN offline_log AS l ON l.seq = t.seq \
     WHERE t.n = 1 OR t.upto <= $2 \
     ORDER BY l.seq";

pub(super) const LOG_SEQS_SQL: &str = "SELECT seq FROM offline_log WHERE table_name = $1 ORDER BY seq";

pub(super) const LOG_CLEAR_SQL: &str = "DELETE FROM offline_log WHERE table_name = $1";

/// Per table with waiting entries: entries, rows, payload bytes and the
/// oldest stamp. (SUM of a BIGINT is NUMERIC in PostgreSQL, hence the casts.)
pub(super) const LOG_PENDING_SQL: &str = "SELECT table_name, COUNT(*), CAST(SUM(row_count) AS BIGINT), \
     CAST(SUM(length(payload)) AS BIGINT), MIN(written_at) \
     FROM offline_log GROUP BY table_name ORDER BY table_name";

pub(super) fn pending_table((table, entries, rows, bytes, oldest): (String, i64, i64, i64, i64)) -> PendingTable {
    PendingTable {
        table,
        entries: u64::try_from(entries).unwrap_or_default(),
        rows: u64::try_from(rows).unwrap_or_default(),
        bytes: u64::try_from(bytes).unwrap_or_default(),
        oldest: Timestamp(oldest),
    }
}

/// Takes or renews lease `$1` for owner `$2` for `$3` microseconds: one
/// upsert that changes (and returns) the row only when it is missing, the
/// owner's own, or expired. `now` is the store clock's expression, as
/// `lease_task` reads it.
pub(super) fn take_log_lease_sql(now: &str) -> String {
    format!(
        "INSERT INTO offline_leases (name, owner, expires_at) VALUES ($1, $2, {now} + $3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
         WHERE offline_leases.owner = excluded.owner OR offline_leases.expires_at < {now} \
         RETURNING name"
    )
}

pub(super) const RELEASE_LOG_LEASE_SQL: &str = "DELETE FROM offline_leases WHERE name = $1 AND owner = $2";
