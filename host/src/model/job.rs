//! Materialization jobs and their progress.

use super::Timestamp;
use serde::{Deserialize, Serialize};

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
}
