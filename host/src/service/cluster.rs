//! Several hosts, one service: what this host caches of the registry is kept
//! in step with writes made by the others.
//!
//! Every host serves definitions from memory (see `Wafer`). A store shared
//! by several hosts (PostgreSQL) announces each registry write; this host
//! re-reads just the named object, so a group defined or a transform
//! activated on one host is used by every host within milliseconds. A full
//! reload every `registry_resync` covers announcements that were lost.

use super::Wafer;
use crate::store::RegistryChange;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How this host shares jobs and registry state with other hosts on the
/// same stores. Defaults suit production; tests shorten the times.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// This host's name in job leases and job progress. Default
    /// `<hostname>:<pid>`, unique among live hosts.
    pub host_id: String,
    /// Entities per job task: the unit one host leases, computes and
    /// commits. Default 128: a task reads each source once for all its
    /// entities and writes their rows in one commit, and each commit of a
    /// Delta table costs about as much as computing a few dozen entities
    /// (1,000 tickers x 24 features: 2.45 s at 32, 1.04 s at 128); small
    /// enough to spread a job of thousands of entities over many hosts.
    pub job_chunk_entities: usize,
    /// How long a task lease lasts without renewal; a host that dies holding
    /// a task delays it by at most this. Renewed every third of it. Default 30 s.
    pub job_lease: Duration,
    /// Tasks this host works on at once. Default 2: one computes while the
    /// other writes.
    pub job_slots: usize,
    /// How often an idle host looks for tasks (new jobs also wake it
    /// directly, and by announcement from other hosts). Default 1 s.
    pub job_poll: Duration,
    /// Full registry reload interval when the store is shared. Default 10 s.
    pub registry_resync: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            host_id: default_host_id(),
            job_chunk_entities: 128,
            job_lease: Duration::from_secs(30),
            job_slots: 2,
            job_poll: Duration::from_secs(1),
            registry_resync: Duration::from_secs(10),
        }
    }
}

fn default_host_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

impl Wafer {
    /// Applies announced registry changes, and reloads everything every
    /// `registry_resync`, until `shutdown`.
    pub(super) async fn sync_registry(
        self,
        mut changes: mpsc::Receiver<RegistryChange>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut resync = tokio::time::interval(self.cluster().registry_resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await; // the first tick is immediate; the caches are fresh
        loop {
            let change = tokio::select! {
                c = changes.recv() => match c {
                    Some(c) => Some(c),
                    None => return,
                },
                _ = resync.tick() => None,
                _ = shutdown.changed() => return,
            };
            let applied = match &change {
                Some(change) => self.apply_change(change).await,
                // The periodic reload is of definitions only: what was
                // announced is kept, and a lost announcement means a
                // reconnected listener, which sends `Resync`.
                None => self.reload_definitions().await,
            };
            if let Err(e) = applied {
                // The next announcement or resync tries again.
                tracing::warn!(?change, error = %e, "could not refresh the registry cache");
            }
        }
    }

    async fn apply_change(&self, change: &RegistryChange) -> super::ServiceResult<()> {
        match change {
            RegistryChange::Entity(name) => {
                // Its join keys shape every kept history of its sources.
                self.history().clear();
                let entity = self.registry().get_entity(name).await?;
                self.cache_entity(name, entity);
            }
            RegistryChange::Source(name) => {
                let source = self.registry().get_source(name).await?;
                self.cache_source(name, source);
            }
            RegistryChange::FeatureGroup(name) => {
                let group = self.registry().get_feature_group(name).await?;
                self.cache_feature_group(name, group);
            }
            RegistryChange::Transform(name) => self.forget_transform(name),
            RegistryChange::JobCreated(_) => self.wake_worker(),
            // This host's own writes were applied as they were made.
            RegistryChange::SourceRows { origin, .. } if *origin == self.cluster().host_id => {}
            RegistryChange::SourceRows { source, entities, .. } => {
                self.source_rows_announced(source, entities.as_deref())
            }
            RegistryChange::Resync => {
                // Source writes may have been missed too.
                self.history().clear();
                self.reload_definitions().await?;
            }
        }
        Ok(())
    }

    async fn reload_definitions(&self) -> super::ServiceResult<()> {
        self.forget_all_transforms();
        self.reload_registry().await?;
        self.wake_worker();
        Ok(())
    }
}
