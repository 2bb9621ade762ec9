//! Materialization jobs, their progress, and the tasks they are split into
//! so that several hosts can share one job.

use super::{EntityKey, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// Errors kept in a job's error list; later ones are only counted.
pub const MAX_JOB_ERRORS: usize = 50;

/// A materialization run: progress counters and per-entity errors. A job
/// that computed some entities and failed others ends `failed` with the
/// errors listed; the rows it wrote stay written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub feature_group: String,
    pub state: JobState,
    pub incremental: bool,
    pub entities_done: u64,
    pub entities_total: u64,
    pub rows_written: u64,
    pub errors: Vec<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// `name@version` of the transform that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// Every row of the group's sources ingested up to this time (the
    /// store's clock) was visible when the job was planned: the next
    /// incremental run looks for rows ingested after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_ingested_until: Option<Timestamp>,
    /// Entities computed per host: which hosts shared the job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, u64>,
}

impl Job {
    /// Adds a finished task's counts and errors. `last` = no other task of
    /// the job is still open, so the job ends with it.
    pub fn record_task(&mut self, outcome: &TaskOutcome, last: bool, now: Timestamp) {
        self.entities_done += outcome.entities_done;
        self.rows_written += outcome.rows_written;
        *self.hosts.entry(outcome.host.clone()).or_default() += outcome.entities_done;
        for e in &outcome.errors {
            self.push_error(e.clone());
        }
        if last {
            self.finish(now);
        }
    }

    /// Ends the job: `failed` when any entity failed, else `succeeded`.
    pub fn finish(&mut self, now: Timestamp) {
        self.state = if self.errors.is_empty() { JobState::Succeeded } else { JobState::Failed };
        self.finished_at = Some(now);
    }

    pub fn push_error(&mut self, message: String) {
        if self.errors.len() < MAX_JOB_ERRORS {
            self.errors.push(message);
        } else if self.errors.len() == MAX_JOB_ERRORS {
            self.errors.push("further errors omitted".into());
        }
    }

    /// The transform's name and version from `transform` (`name@version`).
    pub fn transform_version(&self) -> Option<(&str, &str)> {
        self.transform.as_deref()?.split_once('@')
    }
}

/// A slice of a job's entities: the unit a host leases, computes and
/// commits. Tasks are what makes a job shareable and resumable: a host that
/// dies loses only the task it held.
#[derive(Clone, Debug, PartialEq)]
pub struct JobTask {
    pub job_id: String,
    pub task_no: u32,
    pub entities: Vec<EntityKey>,
    /// Incremental runs: per entity (aligned with `entities`), only rows
    /// after this event time are written.
    pub after: Vec<Option<Timestamp>>,
}

/// A task this host holds until its lease expires.
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedTask {
    pub task: JobTask,
    /// 1 on the first lease; more when an earlier holder lost it.
    pub attempt: u32,
}

/// What a host reports when it commits a task.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskOutcome {
    pub host: String,
    pub entities_done: u64,
    pub rows_written: u64,
    pub errors: Vec<String>,
}
