//! Jobs as the registry stores them. A job's progress lives in the store,
//! not in any one host's memory: whichever host completes a task adds its
//! counts, so every host reports the same progress and a job outlives the
//! host that started it.

use super::ServiceResult;
use crate::model::{Job, JobTask};
use crate::store::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often a waiter re-reads a job that another host may be finishing.
const WAIT_POLL: Duration = Duration::from_millis(200);

pub struct JobTracker {
    registry: Arc<dyn Registry>,
    /// Signalled when this host finishes a job, so local waiters need not
    /// wait for their next poll.
    finished: Notify,
}

impl JobTracker {
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        JobTracker { registry, finished: Notify::new() }
    }

    /// Stores the job with its tasks; from then on any host may work on it.
    pub async fn create(&self, job: &Job, tasks: &[JobTask]) -> ServiceResult<()> {
        self.registry.create_job(job, tasks).await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> ServiceResult<Option<Job>> {
        Ok(self.registry.get_job(id).await?)
    }

    /// Waits until the job finishes (on any host) and returns it.
    pub async fn wait(&self, id: &str) -> ServiceResult<Option<Job>> {
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.get(id).await? {
                Some(job) if !job.state.is_finished() => {}
                other => return Ok(other),
            }
            let _ = tokio::time::timeout(WAIT_POLL, notified).await;
        }
    }

    pub(super) fn announce_finished(&self) {
        self.finished.notify_waiters();
    }

    pub async fn list(&self, feature_group: Option<&str>, limit: u32) -> ServiceResult<Vec<Job>> {
        Ok(self.registry.list_jobs(feature_group, limit).await?)
    }
}
