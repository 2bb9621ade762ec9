//! The Wasm transform runtime: the only module that imports wasmtime.
//!
//! Transforms are WebAssembly components of the `wafer:transform` world
//! (`wit/transform.wit`). Each version is compiled once (and cached on disk
//! by sha256 and engine settings, so restarts do not recompile), kept as an
//! `InstancePre`, and instantiated into a fresh `Store` per call with an
//! epoch deadline and a memory cap, so a trap, a timeout or a memory overrun
//! fails that call only.
//!
//! - `engine.rs`: engine and pooling configuration, the epoch ticker.
//! - `bindings.rs`: the one `bindgen!` and conversions to `model` types.
//! - `cache.rs`: compiled components and `InstancePre` by sha256.
//! - `limits.rs`: the documented per-call limits.
//! - `error.rs`: guest error vs trap vs limit exceeded.
//! - `output.rs`: guest stdout/stderr and logs within one per-call budget.
//! - `validate.rs`: publish-time checks (header, imports, exports,
//!   descriptor) and output checks.
//! - `wasm.rs`: [`WasmRuntime`], the implementation of [`TransformRuntime`].

mod bindings;
mod cache;
mod engine;
mod error;
mod limits;
mod output;
mod validate;
mod wasm;

pub use error::RuntimeError;
pub use limits::Limits;
pub use wasm::{CallOverhead, WasmRuntime};

use crate::model::{BatchInput, Descriptor, OnDemandInput, Table};
use async_trait::async_trait;

/// Which module a call runs: a transform version and its content address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModuleId {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

impl std::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Runs transform components. The seam between the feature store and the
/// Wasm engine: the rest of the host calls transforms only through this.
#[async_trait]
pub trait TransformRuntime: Send + Sync {
    /// Compiles `bytes` (or loads the cached compilation), checks that it is
    /// a component of the `wafer:transform` world importing nothing beyond
    /// what the sandbox provides, calls `describe`, and keeps it ready to run
    /// as `id`. Loading the same sha256 again is cheap.
    async fn load(&self, id: &ModuleId, bytes: &[u8]) -> Result<Descriptor, RuntimeError>;

    /// Whether `sha256` is compiled and ready in this process.
    fn is_loaded(&self, sha256: &str) -> bool;

    /// The server's default limits, which per-transform overrides adjust.
    fn limits(&self) -> &Limits;

    /// Runs the batch export on one entity's history, within `limits`.
    async fn batch(&self, id: &ModuleId, input: BatchInput, limits: &Limits) -> Result<Table, RuntimeError>;

    /// Runs the on-demand export on a request's entities, within `limits`.
    async fn on_demand(&self, id: &ModuleId, input: OnDemandInput, limits: &Limits) -> Result<Table, RuntimeError>;

    /// Per-version call statistics since start.
    fn stats(&self, id: &ModuleId) -> CallStats;
}

/// Counters kept per module version.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CallStats {
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub timeouts: u64,
    /// Mean wall time per call in microseconds (0 with no calls).
    pub mean_micros: f64,
}
