//! Compile once: compiled components on disk by sha256 (and engine
//! settings), `InstancePre`s in memory by sha256.

use super::bindings::ComponentPre;
use super::error::RuntimeError;
use super::wasm::State;
use crate::model::Descriptor;
use dashmap::DashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::Component;

/// A loaded module: ready to instantiate, with what it said about itself.
pub(crate) struct Loaded {
    pub pre: ComponentPre<State>,
    pub descriptor: Descriptor,
}

pub(crate) struct ModuleCache {
    /// `<cache dir>/<engine compatibility key>/`; `None` = memory only.
    dir: Option<PathBuf>,
    loaded: DashMap<String, Arc<Loaded>>,
}

impl ModuleCache {
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Result<Self, RuntimeError> {
        let dir = dir.map(|d| d.join(super::engine::compatibility_key(engine)));
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)
                .map_err(|e| RuntimeError::Internal(format!("creating module cache {}: {e}", d.display())))?;
        }
        Ok(ModuleCache { dir, loaded: DashMap::new() })
    }

    pub fn get(&self, sha256: &str) -> Option<Arc<Loaded>> {
        self.loaded.get(sha256).map(|l| l.clone())
    }

    pub fn insert(&self, sha256: &str, loaded: Loaded) -> Arc<Loaded> {
        let loaded = Arc::new(loaded);
        self.loaded.insert(sha256.to_string(), loaded.clone());
        loaded
    }

    /// Compiles `bytes`, or loads the compilation cached on disk. Blocking:
    /// call from a blocking thread.
    pub fn compile(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> Result<Component, RuntimeError> {
        let path = self.dir.as_ref().map(|d| d.join(format!("{sha256}.cwasm")));
        if let Some(path) = &path
            && path.exists()
        {
            match deserialize_cached(engine, path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached compilation")
                }
            }
        }
        let compiled =
            engine.precompile_component(bytes).map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        if let Some(path) = &path {
            // Write to a temporary name and rename, so a crash mid-write
            // never leaves a truncated file under the real name.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if let Err(e) = std::fs::write(&tmp, &compiled).and_then(|_| std::fs::rename(&tmp, path)) {
                tracing::warn!(path = %path.display(), error = %e, "could not cache compiled module");
                let _ = std::fs::remove_file(&tmp);
            }
        }
        from_own_compilation(engine, &compiled)
    }
}

/// Loads a compilation this process (or an earlier one with the same
/// engine settings) wrote to the cache.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `Engine::precompile_component` in
    // `ModuleCache::compile`, written atomically under a directory keyed by
    // this engine's compatibility hash, and never comes from users (they
    // upload source components, which are compiled here).
    unsafe { Component::deserialize_file(engine, path) }
}

#[allow(unsafe_code)]
fn from_own_compilation(engine: &Engine, compiled: &[u8]) -> Result<Component, RuntimeError> {
    // SAFETY: `compiled` was just produced by `precompile_component` on this
    // same engine.
    unsafe { Component::deserialize(engine, compiled) }.map_err(|e| RuntimeError::Internal(format!("{e:#}")))
}
