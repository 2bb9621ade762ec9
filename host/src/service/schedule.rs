//! Scheduled materialization: a batch group with `producer.schedule_seconds`
//! materializes by itself, incrementally (only entities with new source
//! rows), every that many seconds, the first time one interval after a host
//! first sees the schedule.
//!
//! Every host checks the schedules; a due run is claimed in the registry
//! store (`claim_schedule`), so exactly one host starts it, and the job's
//! tasks are then shared like any other job. Time is the service clock's,
//! so tests move a manual clock instead of waiting.

use super::Wafer;
use super::materialize::MaterializeRequest;
use crate::model::Producer;
use tokio::sync::watch;

impl Wafer {
    /// Checks the schedules every `job_poll` until `shutdown`.
    pub(super) async fn run_schedules(self, mut shutdown: watch::Receiver<bool>) {
        let poll = self.cluster().job_poll;
        loop {
            for group in self.list_feature_groups() {
                let Producer::Batch { schedule_seconds: Some(every), .. } = &group.producer else { continue };
                if let Err(e) = self.run_if_due(&group.name, *every).await {
                    tracing::warn!(group = %group.name, error = %e, "scheduled materialization could not start");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn run_if_due(&self, group: &str, every: u64) -> super::ServiceResult<()> {
        // The claim is the one query a quiet tick makes; only a claimed run
        // looks at the group's jobs.
        let now = self.clock().now();
        let next = now.plus_secs(every.min(i64::MAX as u64) as i64);
        if !self.registry().claim_schedule(group, now, next).await? {
            return Ok(());
        }
        // A run still going (slow, or started by hand) is not doubled: this
        // turn is skipped and the next one comes an interval later.
        let latest = self.jobs().list(Some(group), 1).await?;
        if latest.first().is_some_and(|j| !j.state.is_finished()) {
            tracing::info!(group, "scheduled materialization skipped: the previous run is still going");
            return Ok(());
        }
        let request = MaterializeRequest { feature_group: group.to_string(), entities: None, incremental: true };
        let job = self.start_materialize(request).await?;
        tracing::info!(group, job = %job.id, "scheduled materialization started");
        Ok(())
    }
}
