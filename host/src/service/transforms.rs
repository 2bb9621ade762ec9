//! Transform lifecycle: publish immutable versions (validated by the
//! runtime), activate, disable, roll back; resolve which version a feature
//! group runs; run a version on inline input (dry run for authors).

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::registry::validate_name;
use crate::model::transform::validate_version;
use crate::model::{BatchInput, OnDemandInput, Table, TransformSummary, TransformVersion};
use crate::runtime::{CallStats, ModuleId};
use crate::store::{VersionDelete, VersionInsert};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Result of publishing: the version and whether it was new.
pub struct Published {
    pub version: TransformVersion,
    pub created: bool,
}

impl Wafer {
    /// Validates and stores a new version. Publishing the same bytes again
    /// is a no-op; different bytes under an existing version is a conflict,
    /// because versions are immutable.
    pub async fn publish_transform(&self, name: &str, version: &str, bytes: &[u8]) -> ServiceResult<Published> {
        validate_name("transform", name).map_err(ServiceError::Invalid)?;
        validate_version(version).map_err(ServiceError::Invalid)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(existing) = self.registry().get_transform_version(name, version).await? {
            if existing.sha256 == sha256 {
                return Ok(Published { version: existing, created: false });
            }
            return Err(ServiceError::Conflict(format!(
                "{name}@{version} already exists with different bytes (sha256 {}); versions are immutable, publish a new version",
                existing.sha256
            )));
        }
        let id = ModuleId { name: name.to_string(), version: version.to_string(), sha256: sha256.clone() };
        let descriptor = self.runtime().load(&id, bytes).await?;
        let record = TransformVersion {
            name: name.to_string(),
            version: version.to_string(),
            sha256,
            size_bytes: bytes.len() as u64,
            descriptor,
            created_at: self.clock().now(),
        };
        let created = self.registry().insert_transform_version(&record, bytes).await? == VersionInsert::Created;
        self.forget_transform(name);
        tracing::info!(transform = %id, sha256 = %record.sha256, "published transform version");
        Ok(Published { version: record, created })
    }

    pub async fn activate_transform(&self, name: &str, version: &str) -> ServiceResult<TransformSummary> {
        if self.registry().get_transform_version(name, version).await?.is_none() {
            self.transform(name).await?;
            return Err(ServiceError::not_found("transform version", format!("{name}@{version}")));
        }
        self.registry().set_active_version(name, Some(version)).await?;
        self.forget_transform(name);
        tracing::info!(transform = name, version, "activated transform version");
        self.transform(name).await
    }

    pub async fn disable_transform(&self, name: &str) -> ServiceResult<TransformSummary> {
        self.transform(name).await?;
        self.registry().set_active_version(name, None).await?;
        self.forget_transform(name);
        tracing::info!(transform = name, "disabled transform");
        self.transform(name).await
    }

    /// Re-activates the version that was active before the current one.
    pub async fn rollback_transform(&self, name: &str) -> ServiceResult<TransformSummary> {
        let t = self.transform(name).await?;
        let previous = t.previous_version.ok_or_else(|| {
            ServiceError::Conflict(format!("transform '{name}' has no previously active version to roll back to"))
        })?;
        self.activate_transform(name, &previous).await
    }

    /// Deletes a published version: refused (409) while a feature group pins
    /// it or while it is the active version or the rollback target. Its
    /// module bytes go too unless another version publishes the same ones.
    pub async fn delete_transform_version(&self, name: &str, version: &str) -> ServiceResult<()> {
        let pinned_by: Vec<String> = self
            .list_feature_groups()
            .iter()
            .filter(|g| g.producer.transform() == Some((name, Some(version))))
            .map(|g| g.name.clone())
            .collect();
        if !pinned_by.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "{name}@{version} is pinned by feature group(s) {}; pin another version there first",
                pinned_by.join(", ")
            )));
        }
        let outcome = self.registry().delete_transform_version(name, version).await?;
        self.forget_transform(name);
        match outcome {
            VersionDelete::Deleted => {
                tracing::info!(transform = name, version, "deleted transform version");
                Ok(())
            }
            VersionDelete::NotFound => Err(ServiceError::not_found("transform version", format!("{name}@{version}"))),
            VersionDelete::InUse(what) => Err(ServiceError::Conflict(format!(
                "{name}@{version} is {what}; activate another version (or disable the transform) first"
            ))),
        }
    }

    pub async fn transform(&self, name: &str) -> ServiceResult<TransformSummary> {
        self.registry().get_transform(name).await?.ok_or_else(|| ServiceError::not_found("transform", name))
    }

    pub async fn list_transforms(&self) -> ServiceResult<Vec<TransformSummary>> {
        Ok(self.registry().list_transforms().await?)
    }

    pub fn transform_stats(&self, version: &TransformVersion) -> CallStats {
        self.runtime().stats(&module_id(version))
    }

    /// The version a producer runs: the pinned one, else the active one.
    /// Served from this host's caches: versions are immutable, and which one
    /// is active is re-read after every change announced by any host.
    pub async fn resolve_version(&self, name: &str, pinned: Option<&str>) -> ServiceResult<TransformVersion> {
        let version = match pinned {
            Some(v) => v.to_string(),
            None => {
                let t = self.transform_cached(name).await?;
                t.active_version.clone().ok_or_else(|| {
                    ServiceError::Conflict(format!(
                        "transform '{name}' has no active version ({}); activate one or pin a version",
                        t.status
                    ))
                })?
            }
        };
        self.version_cached(name, &version).await
    }

    async fn transform_cached(&self, name: &str) -> ServiceResult<Arc<TransformSummary>> {
        if let Some(t) = self.inner.transforms.get(name) {
            return Ok(t.clone());
        }
        let epoch = self.inner.transform_epoch.load(Ordering::SeqCst);
        let t = Arc::new(self.transform(name).await?);
        if self.inner.transform_epoch.load(Ordering::SeqCst) == epoch {
            self.inner.transforms.insert(name.to_string(), t.clone());
        }
        Ok(t)
    }

    async fn version_cached(&self, name: &str, version: &str) -> ServiceResult<TransformVersion> {
        let key = (name.to_string(), version.to_string());
        if let Some(v) = self.inner.versions.get(&key) {
            return Ok(TransformVersion::clone(&v));
        }
        let epoch = self.inner.transform_epoch.load(Ordering::SeqCst);
        let v = self
            .registry()
            .get_transform_version(name, version)
            .await?
            .ok_or_else(|| ServiceError::not_found("transform version", format!("{name}@{version}")))?;
        if self.inner.transform_epoch.load(Ordering::SeqCst) == epoch {
            self.inner.versions.insert(key, Arc::new(v.clone()));
        }
        Ok(v)
    }

    /// Makes sure the version's module is compiled in this process (after a
    /// restart, modules are loaded lazily from the registry and the on-disk
    /// compilation cache).
    pub async fn ensure_loaded(&self, version: &TransformVersion) -> ServiceResult<ModuleId> {
        let id = module_id(version);
        if !self.runtime().is_loaded(&version.sha256) {
            let bytes = self.registry().get_module(&version.sha256).await?.ok_or_else(|| {
                ServiceError::not_found("transform module", format!("{id} (sha256 {})", version.sha256))
            })?;
            self.runtime().load(&id, &bytes).await?;
        }
        Ok(id)
    }

    pub async fn invoke_batch(&self, version: &TransformVersion, input: BatchInput) -> ServiceResult<Table> {
        let id = self.ensure_loaded(version).await?;
        Ok(self.runtime().batch(&id, input).await?)
    }

    pub async fn invoke_on_demand(&self, version: &TransformVersion, input: OnDemandInput) -> ServiceResult<Table> {
        let id = self.ensure_loaded(version).await?;
        Ok(self.runtime().on_demand(&id, input).await?)
    }
}

pub fn module_id(version: &TransformVersion) -> ModuleId {
    ModuleId { name: version.name.clone(), version: version.version.clone(), sha256: version.sha256.clone() }
}
