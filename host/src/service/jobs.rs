//! Job progress: live jobs are tracked in memory (progress is read far more
//! often than it changes) and persisted to the registry when they start,
//! every few seconds while they run, and when they finish, so history
//! survives restarts.

use super::ServiceResult;
use crate::model::{Job, JobState, Timestamp};
use crate::store::Registry;
use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::watch;

pub struct JobTracker {
    registry: Arc<dyn Registry>,
    live: DashMap<String, watch::Sender<Job>>,
}

impl JobTracker {
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        JobTracker { registry, live: DashMap::new() }
    }

    /// Registers a queued job and persists it.
    pub async fn create(&self, feature_group: &str, incremental: bool, now: Timestamp) -> ServiceResult<Job> {
        let id = format!("job-{}-{:08x}", now.to_datetime().format("%Y%m%dT%H%M%S"), rand::random::<u32>());
        let job = Job {
            id: id.clone(),
            feature_group: feature_group.to_string(),
            state: JobState::Queued,
            incremental,
            entities_done: 0,
            entities_total: 0,
            rows_written: 0,
            errors: Vec::new(),
            created_at: now,
            started_at: None,
            finished_at: None,
            transform: None,
        };
        self.registry.save_job(&job).await?;
        self.live.insert(id, watch::channel(job.clone()).0);
        Ok(job)
    }

    /// Applies `f` to the live job.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(tx) = self.live.get(id) {
            tx.send_modify(f);
        }
    }

    /// Persists the live job's current state.
    pub async fn persist(&self, id: &str) -> ServiceResult<()> {
        let job = self.live.get(id).map(|tx| tx.borrow().clone());
        if let Some(job) = job {
            self.registry.save_job(&job).await?;
        }
        Ok(())
    }

    /// Marks the job finished, persists it and wakes waiters.
    pub async fn finish(&self, id: &str, now: Timestamp) -> ServiceResult<Job> {
        self.update(id, |j| {
            j.state = if j.errors.is_empty() { JobState::Succeeded } else { JobState::Failed };
            j.finished_at = Some(now);
        });
        self.persist(id).await?;
        let job = self.live.remove(id).map(|(_, tx)| tx.borrow().clone());
        Ok(job.expect("job is live until finished"))
    }

    pub async fn get(&self, id: &str) -> ServiceResult<Option<Job>> {
        if let Some(tx) = self.live.get(id) {
            return Ok(Some(tx.borrow().clone()));
        }
        Ok(self.registry.get_job(id).await?)
    }

    /// Waits until the job finishes and returns it.
    pub async fn wait(&self, id: &str) -> ServiceResult<Option<Job>> {
        let rx = self.live.get(id).map(|tx| tx.subscribe());
        if let Some(mut rx) = rx {
            // The sender is dropped when the job leaves `live`; either way the
            // final state is then in the registry.
            let _ = rx.wait_for(|j| j.state.is_finished()).await;
        }
        self.get(id).await
    }

    pub async fn list(&self, feature_group: Option<&str>, limit: u32) -> ServiceResult<Vec<Job>> {
        let mut jobs = self.registry.list_jobs(feature_group, limit).await?;
        for job in jobs.iter_mut() {
            if let Some(tx) = self.live.get(&job.id) {
                *job = tx.borrow().clone();
            }
        }
        Ok(jobs)
    }
}
