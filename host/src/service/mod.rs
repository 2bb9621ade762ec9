//! The data paths, composed from the stores and the transform runtime.
//!
//! [`Wafer`] is the shared handle every path hangs off; each file adds the
//! methods of one path:
//! - `registry.rs`: entities, sources and feature groups, validated against
//!   each other and against transform descriptors.
//! - `transforms.rs`: publishing, activating, disabling and resolving
//!   transform versions; invoking one on inline input.
//! - `ingest.rs`: source rows (JSON, CSV) and pushed feature rows.
//! - `columnar.rs`: the same from Arrow record batches (Parquet and Arrow
//!   IPC bodies).
//! - `materialize.rs`: materialization jobs (batch transforms over sources).
//! - `output.rs`: a batch transform's output as feature columns, for
//!   materialization and computing on a miss.
//! - `history.rs`: each entity's source history kept in memory, exact
//!   across hosts, for computing on a miss.
//! - `serving.rs`: online reads with freshness status.
//! - `historical.rs`: point-in-time training data.
//! - `monitoring.rs`: freshness and feature statistics per group.
//! - `jobs.rs`: creating, reading and waiting for jobs.
//! - `worker.rs`: this host's share of the jobs: leasing, running and
//!   committing job tasks.
//! - `schedule.rs`: groups that materialize by themselves on a schedule.
//! - `shadow.rs`: candidate versions run beside the active one, compared.
//! - `breaker.rs`: per-version breakers that switch off failing versions.
//! - `enrich/`: LLM prompt enrichment per task type, and its monitor.
//! - `feast.rs`: Feast feature-server requests in wafer's terms.
//! - `audit.rs`: the trail of registry and plugin changes.
//! - `cluster.rs`: settings for several hosts on one store, and keeping
//!   this host's registry caches in step with the others.

pub mod audit;
pub mod breaker;
pub mod cluster;
pub mod columnar;
pub mod enrich;
pub mod error;
pub mod feast;
pub mod historical;
pub mod history;
pub mod ingest;
pub mod jobs;
pub mod maintenance;
pub mod materialize;
pub mod monitoring;
mod output;
pub mod registry;
mod schedule;
pub mod serving;
pub mod shadow;
pub mod transforms;
mod worker;

pub use cluster::ClusterSettings;
pub use error::{ServiceError, ServiceResult};

use crate::clock::SharedClock;
use crate::config::ServingConfig;
use crate::model::{Entity, FeatureGroup, Source, TransformSummary, TransformVersion};
use crate::runtime::TransformRuntime;
use crate::store::{OfflineStore, OnlineStore, Registry, TableDef};
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// What a [`Wafer`] is told at start besides its stores: how it shares
/// work with other hosts, the agent-facing serving file, and which times
/// it accepts.
#[derive(Clone, Debug)]
pub struct WaferSettings {
    pub cluster: ClusterSettings,
    pub serving: ServingConfig,
    /// How far past the clock an event or created time may be (see
    /// [`Wafer::time_window`]).
    pub max_future_skew: std::time::Duration,
    /// Bytes the source-history cache may hold (`history.rs`).
    pub source_cache_bytes: usize,
}

impl Default for WaferSettings {
    fn default() -> Self {
        WaferSettings {
            cluster: ClusterSettings::default(),
            serving: ServingConfig::default(),
            max_future_skew: crate::model::TimeWindow::DEFAULT_SKEW,
            source_cache_bytes: history::DEFAULT_BYTES,
        }
    }
}

/// The assembled feature store: stores, runtime, clock and caches. Cheap to
/// clone; every clone shares the same state.
#[derive(Clone)]
pub struct Wafer {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<dyn Registry>,
    offline: Arc<dyn OfflineStore>,
    online: Arc<dyn OnlineStore>,
    runtime: Arc<dyn TransformRuntime>,
    clock: SharedClock,
    cluster: ClusterSettings,
    max_future_skew: std::time::Duration,
    jobs: jobs::JobTracker,
    /// Definitions read on every request are served from memory. This
    /// host's registry writes update them after the store write succeeds;
    /// other hosts' writes reach them through `cluster.rs`.
    entities: DashMap<String, Arc<Entity>>,
    sources: DashMap<String, Arc<Source>>,
    groups: DashMap<String, Arc<FeatureGroup>>,
    /// Transform lifecycles (which version is active), read when a version
    /// is resolved; dropped whenever the transform changes.
    transforms: DashMap<String, Arc<TransformSummary>>,
    /// Each entity's source history, for computing on a miss.
    history: history::SourceHistory,
    /// Published versions are immutable, so they stay cached.
    versions: DashMap<(String, String), Arc<TransformVersion>>,
    /// Bumped by every transform invalidation: a lookup that raced with one
    /// does not cache what it read (it may predate the change).
    transform_epoch: AtomicU64,
    /// This host's breakers, per transform version.
    breakers: breaker::Breakers,
    /// This host's shadow comparisons, per transform.
    shadows: shadow::Shadows,
    /// Prompt enrichment: the task mapping and this host's monitor.
    enrichment: enrich::Enrichment,
    /// Feast feature services named in the serving config.
    feature_services: std::collections::BTreeMap<String, Vec<String>>,
    /// Wakes this host's job worker when a job is created.
    wake_worker: Notify,
    /// Tells the background tasks (worker, registry sync) to stop.
    shutdown: watch::Sender<bool>,
    background: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Wafer {
    /// Assembles the store, loads the registry caches and starts this
    /// host's background work: the job worker and, on a store shared by
    /// several hosts, the registry sync. [`Wafer::shutdown`] stops both.
    pub async fn new(
        registry: Arc<dyn Registry>,
        offline: Arc<dyn OfflineStore>,
        online: Arc<dyn OnlineStore>,
        runtime: Arc<dyn TransformRuntime>,
        clock: SharedClock,
        settings: WaferSettings,
    ) -> ServiceResult<Wafer> {
        let WaferSettings { cluster, serving, max_future_skew, source_cache_bytes } = settings;
        let wafer = Wafer {
            inner: Arc::new(Inner {
                jobs: jobs::JobTracker::new(registry.clone()),
                registry,
                offline,
                online,
                runtime,
                clock,
                cluster,
                max_future_skew,
                entities: DashMap::new(),
                sources: DashMap::new(),
                groups: DashMap::new(),
                transforms: DashMap::new(),
                versions: DashMap::new(),
                history: history::SourceHistory::new(source_cache_bytes),
                transform_epoch: AtomicU64::new(0),
                breakers: breaker::Breakers::default(),
                shadows: shadow::Shadows::new(),
                enrichment: enrich::Enrichment::new(serving.enrichment),
                feature_services: serving.feature_services,
                wake_worker: Notify::new(),
                shutdown: watch::channel(false).0,
                background: std::sync::Mutex::new(Vec::new()),
            }),
        };
        // Listen before loading, so no change falls between the two.
        let changes = wafer.registry().changes().await?;
        wafer.reload_registry().await?;
        let mut background = vec![
            tokio::spawn(wafer.clone().run_worker(wafer.inner.shutdown.subscribe())),
            tokio::spawn(wafer.clone().run_schedules(wafer.inner.shutdown.subscribe())),
        ];
        if let Some(changes) = changes {
            background.push(tokio::spawn(wafer.clone().sync_registry(changes, wafer.inner.shutdown.subscribe())));
        }
        *wafer.inner.background.lock().expect("background lock") = background;
        Ok(wafer)
    }

    /// Stops the job worker (its unfinished tasks are handed back for
    /// other hosts or the next start) and the registry sync.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let handles = std::mem::take(&mut *self.inner.background.lock().expect("background lock"));
        for handle in handles {
            let _ = handle.await;
        }
        // After the jobs: what they wrote last is put away too.
        if let Err(e) = self.inner.offline.close().await {
            tracing::warn!(error = %e, "the offline store did not close cleanly; its write log is replayed on start");
        }
    }

    /// Re-reads every definition from the registry store into the caches.
    /// Entries are replaced and stale ones removed, never cleared first, so
    /// requests served meanwhile always find what exists.
    pub async fn reload_registry(&self) -> ServiceResult<()> {
        let i = &self.inner;
        let entities = i.registry.list_entities().await?;
        let sources = i.registry.list_sources().await?;
        let groups = i.registry.list_feature_groups().await?;
        replace_all(&i.entities, entities.into_iter().map(|e| (e.name.clone(), e)));
        // A definition that changed unannounced: its kept history has the
        // old columns.
        for s in &sources {
            if i.sources.get(&s.name).is_some_and(|old| **old != *s) {
                i.history.forget_source(&s.name);
            }
        }
        replace_all(&i.sources, sources.into_iter().map(|s| (s.name.clone(), s)));
        replace_all(&i.groups, groups.into_iter().map(|g| (g.name.clone(), g)));
        Ok(())
    }

    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.inner.registry
    }

    pub fn offline(&self) -> &Arc<dyn OfflineStore> {
        &self.inner.offline
    }

    pub fn online(&self) -> &Arc<dyn OnlineStore> {
        &self.inner.online
    }

    pub fn runtime(&self) -> &Arc<dyn TransformRuntime> {
        &self.inner.runtime
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The event and created times accepted now: from year 1000 to the
    /// clock plus `--max-future-skew`. Every way rows come in checks against
    /// it, and so do batch transform outputs.
    pub fn time_window(&self) -> crate::model::TimeWindow {
        crate::model::TimeWindow::until(self.clock().now(), self.inner.max_future_skew)
    }

    pub fn jobs(&self) -> &jobs::JobTracker {
        &self.inner.jobs
    }

    pub fn cluster(&self) -> &ClusterSettings {
        &self.inner.cluster
    }

    /// Feast feature services from the serving config (name -> refs).
    pub fn feature_services(&self) -> &std::collections::BTreeMap<String, Vec<String>> {
        &self.inner.feature_services
    }

    pub(crate) fn history(&self) -> &history::SourceHistory {
        &self.inner.history
    }

    pub(crate) fn enrichment(&self) -> &enrich::Enrichment {
        &self.inner.enrichment
    }

    pub(crate) fn wake_worker(&self) {
        self.inner.wake_worker.notify_one();
    }

    pub fn entity(&self, name: &str) -> ServiceResult<Arc<Entity>> {
        self.inner.entities.get(name).map(|e| e.clone()).ok_or_else(|| ServiceError::not_found("entity", name))
    }

    pub fn source(&self, name: &str) -> ServiceResult<Arc<Source>> {
        self.inner.sources.get(name).map(|e| e.clone()).ok_or_else(|| ServiceError::not_found("source", name))
    }

    /// The offline table a source's rows are written to.
    pub(crate) fn source_def(&self, source: &Source) -> ServiceResult<TableDef> {
        Ok(TableDef::of_source(source, &*self.entity(&source.entity)?))
    }

    /// The offline table of the named group, for tools that write to it
    /// directly (benchmarks).
    pub fn offline_table(&self, group: &str) -> ServiceResult<TableDef> {
        self.group_def(&*self.feature_group(group)?)
    }

    /// The offline table a group's rows are written to.
    pub(crate) fn group_def(&self, group: &FeatureGroup) -> ServiceResult<TableDef> {
        Ok(TableDef::of_group(group, &*self.entity(&group.entity)?))
    }

    pub fn feature_group(&self, name: &str) -> ServiceResult<Arc<FeatureGroup>> {
        self.inner.groups.get(name).map(|e| e.clone()).ok_or_else(|| ServiceError::not_found("feature group", name))
    }

    /// The group from the cache, else from the registry: a job task may
    /// name a group another host created a moment ago.
    pub async fn feature_group_fresh(&self, name: &str) -> ServiceResult<Arc<FeatureGroup>> {
        if let Ok(group) = self.feature_group(name) {
            return Ok(group);
        }
        let group = self.registry().get_feature_group(name).await?;
        self.cache_feature_group(name, group);
        self.feature_group(name)
    }

    fn cache_entity(&self, name: &str, entity: Option<Entity>) {
        match entity {
            Some(e) => self.inner.entities.insert(name.to_string(), Arc::new(e)),
            None => self.inner.entities.remove(name).map(|(_, e)| e),
        };
    }

    fn cache_source(&self, name: &str, source: Option<Source>) {
        // Its columns or its rows may have changed with it.
        self.inner.history.forget_source(name);
        match source {
            Some(s) => self.inner.sources.insert(name.to_string(), Arc::new(s)),
            None => self.inner.sources.remove(name).map(|(_, s)| s),
        };
    }

    fn cache_feature_group(&self, name: &str, group: Option<FeatureGroup>) {
        match group {
            Some(g) => self.inner.groups.insert(name.to_string(), Arc::new(g)),
            None => self.inner.groups.remove(name).map(|(_, g)| g),
        };
    }

    /// Drops what is cached of transform `name`; the next resolve re-reads it.
    pub(crate) fn forget_transform(&self, name: &str) {
        self.inner.transform_epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.transforms.remove(name);
        self.inner.versions.retain(|(n, _), _| n != name);
    }

    fn forget_all_transforms(&self) {
        self.inner.transform_epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.transforms.clear();
        self.inner.versions.clear();
    }

    pub fn feature_group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.groups.iter().map(|g| g.key().clone()).collect();
        names.sort();
        names
    }
}

/// Makes `cache` hold exactly `items`.
fn replace_all<T>(cache: &DashMap<String, Arc<T>>, items: impl Iterator<Item = (String, T)>) {
    let mut names = std::collections::HashSet::new();
    for (name, item) in items {
        cache.insert(name.clone(), Arc::new(item));
        names.insert(name);
    }
    cache.retain(|name, _| names.contains(name));
}
