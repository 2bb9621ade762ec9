//! The data paths, composed from the stores and the transform runtime.
//!
//! [`Wafer`] is the shared handle every path hangs off; each file adds the
//! methods of one path:
//! - `registry.rs`: entities, sources and feature groups, validated against
//!   each other and against transform descriptors.
//! - `transforms.rs`: publishing, activating, disabling and resolving
//!   transform versions; invoking one on inline input.
//! - `ingest.rs`: source rows (JSON, CSV) and pushed feature rows.
//! - `materialize.rs`: materialization jobs (batch transforms over sources).
//! - `serving.rs`: online reads with freshness status.
//! - `jobs.rs`: job progress tracking.

pub mod error;
pub mod ingest;
pub mod jobs;
pub mod materialize;
pub mod registry;
pub mod serving;
pub mod transforms;

pub use error::{ServiceError, ServiceResult};

use crate::clock::SharedClock;
use crate::model::{Entity, FeatureGroup, Source};
use crate::runtime::TransformRuntime;
use crate::store::{OfflineStore, OnlineStore, Registry};
use dashmap::DashMap;
use std::sync::Arc;

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
    jobs: jobs::JobTracker,
    /// Definitions read on every request are served from memory; every
    /// registry write goes through `service::registry`, which updates these
    /// after the store write succeeds.
    entities: DashMap<String, Arc<Entity>>,
    sources: DashMap<String, Arc<Source>>,
    groups: DashMap<String, Arc<FeatureGroup>>,
}

impl Wafer {
    /// Assembles the store and loads the registry caches.
    pub async fn new(
        registry: Arc<dyn Registry>,
        offline: Arc<dyn OfflineStore>,
        online: Arc<dyn OnlineStore>,
        runtime: Arc<dyn TransformRuntime>,
        clock: SharedClock,
    ) -> ServiceResult<Wafer> {
        let wafer = Wafer {
            inner: Arc::new(Inner {
                jobs: jobs::JobTracker::new(registry.clone()),
                registry,
                offline,
                online,
                runtime,
                clock,
                entities: DashMap::new(),
                sources: DashMap::new(),
                groups: DashMap::new(),
            }),
        };
        wafer.reload_registry().await?;
        Ok(wafer)
    }

    /// Re-reads every definition from the registry store into the caches.
    pub async fn reload_registry(&self) -> ServiceResult<()> {
        let i = &self.inner;
        let entities = i.registry.list_entities().await?;
        let sources = i.registry.list_sources().await?;
        let groups = i.registry.list_feature_groups().await?;
        i.entities.clear();
        i.sources.clear();
        i.groups.clear();
        for e in entities {
            i.entities.insert(e.name.clone(), Arc::new(e));
        }
        for s in sources {
            i.sources.insert(s.name.clone(), Arc::new(s));
        }
        for g in groups {
            i.groups.insert(g.name.clone(), Arc::new(g));
        }
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

    pub fn jobs(&self) -> &jobs::JobTracker {
        &self.inner.jobs
    }

    pub fn entity(&self, name: &str) -> ServiceResult<Arc<Entity>> {
        self.inner.entities.get(name).map(|e| e.clone()).ok_or_else(|| ServiceError::not_found("entity", name))
    }

    pub fn source(&self, name: &str) -> ServiceResult<Arc<Source>> {
        self.inner.sources.get(name).map(|e| e.clone()).ok_or_else(|| ServiceError::not_found("source", name))
    }

    pub fn feature_group(&self, name: &str) -> ServiceResult<Arc<FeatureGroup>> {
        self.inner.groups.get(name).map(|e| e.clone()).ok_or_else(|| ServiceError::not_found("feature group", name))
    }

    pub fn feature_group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.groups.iter().map(|g| g.key().clone()).collect();
        names.sort();
        names
    }
}
