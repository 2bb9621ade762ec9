//! What the SQL backends (SQLite and PostgreSQL) share: how registry
//! objects, transform versions, jobs and feature values are encoded in and
//! decoded from their rows. Each dialect's SQL stays in its backend file.

use super::stored;
use super::{StoreError, StoreResult};
use crate::model::{
    Descriptor, Entity, EntityKey, FeatureGroup, Job, JobState, JobTask, LeasedTask, Source, Timestamp,
    TransformSummary, TransformVersion, Value,
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
}

impl TransformRow {
    pub(super) fn into_summary(self, versions: Vec<TransformVersion>) -> TransformSummary {
        TransformSummary {
            name: self.name,
            active_version: self.active_version,
            previous_version: self.previous_version,
            status: self.status,
            versions,
        }
    }
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
