//! Compile once: compiled components on disk by sha256 (under a directory
//! named by the engine's compatibility hash), ready-to-instantiate
//! `InstancePre`s in memory by sha256.

use super::bindings::ComponentPre;
use super::error::RuntimeError;
use super::wasm::State;
use crate::model::Descriptor;
use dashmap::DashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A compiled component. When it was compiled now rather than read from
/// disk, it also carries its serialized form, written by [`ModuleCache::persist`]
/// only once the component has passed validation (so rejected uploads never
/// take disk space).
pub(crate) struct Compiled {
    pub component: Component,
    unsaved: Option<Vec<u8>>,
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

    /// Where the compilation of `sha256` lives on disk (`sha256` is checked
    /// hex, see `WasmRuntime::load`, so it cannot name another path).
    fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{sha256}.cwasm")))
    }

    /// Loads the compilation cached on disk, or compiles `bytes` with
    /// Cranelift. Blocking: call from a blocking thread.
    pub fn compile(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> Result<Compiled, RuntimeError> {
        if let Some(path) = self.path(sha256).filter(|p| p.exists()) {
            match deserialize_cached(engine, &path) {
                Ok(component) => return Ok(Compiled { component, unsaved: None }),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "recompiling: cached compilation unusable")
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        let unsaved = match self.dir {
            None => None,
            Some(_) => component
                .serialize()
                .inspect_err(|e| tracing::warn!(error = %e, "could not serialize a compiled component"))
                .ok(),
        };
        Ok(Compiled { component, unsaved })
    }

    /// Writes a fresh, validated compilation to disk: to a temporary name
    /// first, synced, then renamed, so a crash mid-write never leaves a
    /// truncated file under the real name. Failing to cache is logged, not
    /// an error (the module is loaded; the next start compiles again).
    /// Blocking.
    pub fn persist(&self, sha256: &str, compiled: Compiled) {
        let (Some(path), Some(cwasm)) = (self.path(sha256), compiled.unsaved) else { return };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!("{}.{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&cwasm).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled module");
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Loads a compilation from the cache directory.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` runs the file as native code, so it must be
    // a wasmtime compilation we made. It is: files in the cache directory are
    // written only by `ModuleCache::persist`, from `Component::serialize` of
    // a component this host compiled from source, atomically (temporary file,
    // fsync, rename), under a directory named by this engine's compatibility
    // hash. Users upload source components and never write this directory.
    unsafe { Component::deserialize_file(engine, path) }
}
