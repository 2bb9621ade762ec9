//! Transform lifecycle: publish immutable versions (validated by the
//! runtime), activate, disable, roll back; resolve which version a feature
//! group runs; run a version on inline input (dry run for authors).

use super::breaker::{self, BreakerStatus};
use super::shadow::CallInput;
use super::{ServiceError, ServiceResult, Wafer};
use crate::model::registry::validate_name;
use crate::model::transform::validate_version;
use crate::model::{Actor, BatchInput, LimitOverrides, OnDemandInput, Table, TransformSummary, TransformVersion};
use crate::runtime::{CallStats, Limits, ModuleId, RuntimeError};
use crate::store::{VersionDelete, VersionInsert};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest per-transform deadline an admin may set: a call holding an
/// instance slot for a minute is already an outage for everyone waiting.
pub const MAX_CALL_TIMEOUT_MS: u64 = 60_000;
/// Largest per-transform output cap: far beyond any feature table, and
/// still bounded.
pub const MAX_OUTPUT_BYTES: u64 = 256 << 20;
/// Most consecutive failures a breaker may be set to tolerate.
pub const MAX_BREAKER_FAILURES: u32 = 1_000;

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
        let module_limit = self.registry().get_transform(name).await?.and_then(|t| t.settings.limits.module_bytes);
        if let Some(limit) = module_limit.filter(|&limit| bytes.len() as u64 > limit) {
            return Err(RuntimeError::ModuleTooLarge { size: bytes.len(), limit: limit as usize }.into());
        }
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
        // An admin activating a version vouches for it: its breaker closes.
        self.inner.breakers.reset(name, version);
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
        let t = self.transform(name).await?;
        if t.settings.shadow.as_ref().is_some_and(|s| s.version == version) {
            return Err(ServiceError::Conflict(format!(
                "{name}@{version} is the shadow candidate; stop the shadow (DELETE /v1/transforms/{name}/shadow) first"
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

    /// The version's breaker on this host.
    pub fn breaker_status(&self, t: &TransformSummary, version: &TransformVersion) -> BreakerStatus {
        self.inner.breakers.status(version, breaker_threshold(&t.settings.limits))
    }

    /// The limits a transform's calls run with: the server's defaults with
    /// the transform's overrides applied.
    pub fn effective_limits(&self, overrides: &LimitOverrides) -> Limits {
        let mut limits = self.runtime().limits().clone();
        if let Some(ms) = overrides.call_timeout_ms {
            limits.call_timeout = Duration::from_millis(ms);
        }
        if let Some(bytes) = overrides.memory_bytes {
            limits.memory_bytes = bytes as usize;
        }
        if let Some(bytes) = overrides.module_bytes {
            limits.module_bytes = bytes as usize;
        }
        if let Some(bytes) = overrides.output_bytes {
            limits.output_bytes = bytes as usize;
        }
        limits.output_times = self.time_window();
        limits
    }

    /// Sets (replaces) a transform's limit overrides; `{}` restores every
    /// default. Memory and module size may only be lowered: the server's
    /// values size the instance pool and the upload limit.
    pub async fn set_transform_limits(&self, name: &str, overrides: LimitOverrides) -> ServiceResult<TransformSummary> {
        let base = self.runtime().limits().clone();
        let check = |what: &str, value: Option<u64>, min: u64, max: u64, why: &str| match value {
            Some(v) if v < min || v > max => {
                Err(ServiceError::Invalid(format!("{what} must be between {min} and {max} ({why}); got {v}")))
            }
            _ => Ok(()),
        };
        check("call_timeout_ms", overrides.call_timeout_ms, 1, MAX_CALL_TIMEOUT_MS, "at most a minute")?;
        check(
            "memory_bytes",
            overrides.memory_bytes,
            1 << 20,
            base.memory_bytes as u64,
            "the server's cap sizes the pool",
        )?;
        check("module_bytes", overrides.module_bytes, 1, base.module_bytes as u64, "the server's cap")?;
        check("output_bytes", overrides.output_bytes, 1, MAX_OUTPUT_BYTES, "256 MiB at most")?;
        check(
            "breaker_failures",
            overrides.breaker_failures.map(u64::from),
            1,
            u64::from(MAX_BREAKER_FAILURES),
            "consecutive failed calls",
        )?;
        let stored = overrides.clone();
        self.registry()
            .update_transform_settings(name, &move |s| s.limits = stored.clone())
            .await?
            .ok_or_else(|| ServiceError::not_found("transform", name))?;
        self.forget_transform(name);
        tracing::info!(transform = name, ?overrides, "transform limits set");
        self.transform(name).await
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

    pub(crate) async fn transform_cached(&self, name: &str) -> ServiceResult<Arc<TransformSummary>> {
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

    pub(crate) async fn version_cached(&self, name: &str, version: &str) -> ServiceResult<TransformVersion> {
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

    /// Runs a batch call for materialization or serving: within the
    /// transform's limits, through the version's breaker, and shadowed by
    /// the candidate if one is set.
    pub async fn invoke_batch(&self, version: &TransformVersion, input: BatchInput) -> ServiceResult<Table> {
        self.invoke(version, CallInput::Batch(input)).await
    }

    /// As [`Wafer::invoke_batch`], for on-demand calls.
    pub async fn invoke_on_demand(&self, version: &TransformVersion, input: OnDemandInput) -> ServiceResult<Table> {
        self.invoke(version, CallInput::OnDemand(input)).await
    }

    async fn invoke(&self, version: &TransformVersion, input: CallInput) -> ServiceResult<Table> {
        let t = self.transform_cached(&version.name).await?;
        let limits = self.effective_limits(&t.settings.limits);
        let shadow = self.shadow_for(&t, version);
        let kept = shadow.as_ref().map(|_| input.clone());
        let call_limits = &limits;
        let (output, micros) = self
            .guarded(&t, version, |runtime, id| async move { input.run(runtime.as_ref(), &id, call_limits).await })
            .await?;
        if let (Some(run), Some(input)) = (shadow, kept) {
            self.spawn_shadow(run, &t.name, input, output.clone(), micros, limits);
        }
        Ok(output)
    }

    /// Runs a version on inline input for its author: within its limits,
    /// but outside breaker and shadow, which judge production calls.
    /// Inline input is held to what stored history always is: each
    /// table's timestamps strictly ascending, within the time window.
    pub async fn dry_run_batch(&self, version: &TransformVersion, input: BatchInput) -> ServiceResult<Table> {
        let window = self.time_window();
        let tables = input.sources.iter().map(|t| ("sources", t)).chain(input.related.iter().map(|t| ("related", t)));
        for (kind, named) in tables {
            window.check_series(&named.table.timestamps).map_err(|(row, message)| {
                let column = format!("{kind}.{}.timestamps", named.name);
                ServiceError::InvalidTimestamp { row, message: format!("{column}: {message}"), column }
            })?;
        }
        let t = self.transform_cached(&version.name).await?;
        let id = self.ensure_loaded(version).await?;
        Ok(self.runtime().batch(&id, input, &self.effective_limits(&t.settings.limits)).await?)
    }

    pub async fn dry_run_on_demand(&self, version: &TransformVersion, input: OnDemandInput) -> ServiceResult<Table> {
        let t = self.transform_cached(&version.name).await?;
        let id = self.ensure_loaded(version).await?;
        Ok(self.runtime().on_demand(&id, input, &self.effective_limits(&t.settings.limits)).await?)
    }

    /// One call through the version's breaker: refused while it is open,
    /// its outcome counted, and its opening logged and audited. Returns the
    /// output and the call's time in microseconds.
    async fn guarded<F, Fut>(
        &self,
        t: &TransformSummary,
        version: &TransformVersion,
        call: F,
    ) -> ServiceResult<(Table, f64)>
    where
        F: FnOnce(Arc<dyn crate::runtime::TransformRuntime>, ModuleId) -> Fut,
        Fut: Future<Output = Result<Table, RuntimeError>>,
    {
        let id = self.ensure_loaded(version).await?;
        self.inner.breakers.admit(version, self.clock().now()).map_err(ServiceError::BreakerOpen)?;
        let started = Instant::now();
        let result = call(self.runtime().clone(), id).await;
        let micros = started.elapsed().as_secs_f64() * 1e6;
        let threshold = breaker_threshold(&t.settings.limits);
        let now = self.clock().now();
        if let Some(opened) = self.inner.breakers.record(version, threshold, now, result.as_ref().map(|_| ())) {
            let target = format!("{}@{}", version.name, version.version);
            tracing::error!(
                transform = %target,
                failures = opened.consecutive_failures,
                last_error = opened.last_error.as_deref().unwrap_or(""),
                "breaker opened: the version is switched off for {} s",
                breaker::COOL_DOWN_SECS
            );
            let details = json!({
                "consecutive_failures": opened.consecutive_failures,
                "last_error": opened.last_error,
                "retry_at": opened.retry_at,
            });
            self.record_change(&Actor::system("breaker"), "transform.breaker_open", &target, details).await;
        }
        Ok((result?, micros))
    }
}

/// Consecutive failures that open the transform's breakers.
fn breaker_threshold(limits: &LimitOverrides) -> u32 {
    limits.breaker_failures.unwrap_or(breaker::DEFAULT_FAILURES)
}

pub fn module_id(version: &TransformVersion) -> ModuleId {
    ModuleId { name: version.name.clone(), version: version.version.clone(), sha256: version.sha256.clone() }
}
