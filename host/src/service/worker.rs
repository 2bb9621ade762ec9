//! This host's job worker: leases job tasks from the registry store, runs
//! them and commits their outcome. Every host runs one; hosts sharing a
//! store share every job (see `materialize.rs` for what a task does).
//!
//! A lease is renewed every third of its length while the task runs. If a
//! renewal finds the lease lost (the host stalled past it and another host
//! took the task over), the task is dropped here: the other host's result
//! is the one counted. A task whose rows could not be written (a store is
//! down) is handed back after a pause and retried, by any host.

use super::Wafer;
use crate::model::LeasedTask;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How long running tasks may take to finish when the host shuts down
/// before they are abandoned (and handed back).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause before a task that hit a store outage is handed back.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

type Held = Arc<Mutex<HashSet<(String, u32)>>>;

impl Wafer {
    /// Leases and runs tasks, `job_slots` at a time, until `shutdown`.
    pub(super) async fn run_worker(self, mut shutdown: watch::Receiver<bool>) {
        let settings = self.cluster().clone();
        let slots = Arc::new(Semaphore::new(settings.job_slots.max(1)));
        let held: Held = Arc::default();
        let mut running = JoinSet::new();
        let mut last_error: Option<String> = None;
        loop {
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = shutdown.changed() => break,
            };
            match self.registry().lease_task(&settings.host_id, settings.job_lease).await {
                Ok(Some(leased)) => {
                    last_error = None;
                    held.lock().expect("held lock").insert((leased.task.job_id.clone(), leased.task.task_no));
                    let (this, held) = (self.clone(), held.clone());
                    running.spawn(async move {
                        this.run_task(&leased).await;
                        held.lock().expect("held lock").remove(&(leased.task.job_id.clone(), leased.task.task_no));
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => last_error = None,
                Err(e) => {
                    // Said once per outage, not once per poll.
                    let message = e.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(error = %message, "cannot lease job tasks");
                        last_error = Some(message);
                    }
                }
            }
            drop(permit);
            tokio::select! {
                _ = self.inner.wake_worker.notified() => {}
                _ = tokio::time::sleep(settings.job_poll) => {}
                _ = shutdown.changed() => break,
            }
        }
        // Let running tasks finish; hand back what does not, so another
        // host (or the next start of this one) takes it at once.
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while running.join_next().await.is_some() {} });
        if drained.await.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        let unfinished: Vec<(String, u32)> = held.lock().expect("held lock").drain().collect();
        for (job_id, task_no) in unfinished {
            if let Err(e) = self.registry().release_task(&job_id, task_no, &settings.host_id).await {
                tracing::warn!(job = %job_id, task = task_no, error = %e, "could not hand back a task at shutdown");
            }
        }
    }

    /// Runs one leased task while renewing its lease, then commits it.
    async fn run_task(&self, leased: &LeasedTask) {
        let settings = self.cluster();
        let task = &leased.task;
        let job = match self.jobs().get(&task.job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tracing::warn!(job = %task.job_id, "leased a task of a job that does not exist");
                return;
            }
            Err(e) => {
                tracing::warn!(job = %task.job_id, error = %e, "cannot read the job of a leased task");
                return self.hand_back(task).await;
            }
        };
        let work = self.materialize_task(&job, task);
        tokio::pin!(work);
        let mut renew = tokio::time::interval(settings.job_lease / 3);
        renew.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = renew.tick() => {
                    match self.registry().renew_lease(&task.job_id, task.task_no, &settings.host_id, settings.job_lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = %task.job_id, task = task.task_no, "lost the lease of a running task; another host has it");
                            return;
                        }
                        Err(e) => tracing::warn!(job = %task.job_id, error = %e, "could not renew a task lease"),
                    }
                }
            }
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(job = %task.job_id, task = task.task_no, attempt = leased.attempt, error = %e, "task failed; handing it back");
                return self.hand_back(task).await;
            }
        };
        match self.registry().complete_task(&task.job_id, task.task_no, &outcome, self.clock().now()).await {
            Ok(Some(job)) if job.state.is_finished() => {
                tracing::info!(job = %job.id, state = ?job.state, rows = job.rows_written, "job finished");
                self.jobs().announce_finished();
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(job = %task.job_id, task = task.task_no, "task was taken over before it committed")
            }
            Err(e) => {
                tracing::warn!(job = %task.job_id, task = task.task_no, error = %e, "could not commit a task; handing it back");
                self.hand_back(task).await;
            }
        }
    }

    /// Gives a task back after a pause, for any host to retry.
    async fn hand_back(&self, task: &crate::model::JobTask) {
        tokio::time::sleep(RETRY_PAUSE).await;
        if let Err(e) = self.registry().release_task(&task.job_id, task.task_no, &self.cluster().host_id).await {
            // The lease then simply expires.
            tracing::warn!(job = %task.job_id, error = %e, "could not hand back a task");
        }
    }
}
