//! [`WasmRuntime`]: runs transform components, one fresh store per call.

use super::bindings::{self, Component, ComponentPre, log, wit};
use super::cache::{Loaded, ModuleCache};
use super::engine;
use super::error::RuntimeError;
use super::limits::Limits;
use super::output::GuestOutput;
use super::{CallStats, ModuleId, TransformRuntime};
use crate::model::{BatchInput, Descriptor, OnDemandInput, Table, TransformKind};
use async_trait::async_trait;
use dashmap::DashMap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Import namespaces a transform may use. WASI here has an empty context:
/// no preopened directories (so `wasi:filesystem` reaches nothing), no
/// environment or arguments, closed stdin, stdout/stderr captured. Sockets
/// and HTTP are not linked at all, so a component importing them is refused
/// at publish time.
const ALLOWED_IMPORTS: [&str; 6] =
    ["wafer:transform/", "wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/"];

/// Per-store state: WASI context, the memory limiter and the log budget.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    log: LogSink,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The `types` interface has no functions; the trait only marks it linked.
impl wit::Host for State {}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        self.log.line(level, &message);
    }
}

/// Denies memory growth past the cap and remembers that it did, so an
/// allocation failure is reported as the memory limit it is rather than as
/// the generic trap the guest's allocator turns it into.
struct MemoryLimiter {
    max_bytes: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Guest log lines for one call, tagged with the module, bounded in bytes.
struct LogSink {
    module: String,
    budget: usize,
    dropped: usize,
}

impl LogSink {
    fn line(&mut self, level: log::Level, message: &str) {
        if message.len() > self.budget {
            self.dropped += 1;
            return;
        }
        self.budget -= message.len();
        let module = &self.module;
        match level {
            log::Level::Trace | log::Level::Debug => {
                tracing::debug!(transform = %module, "{message}")
            }
            log::Level::Info => tracing::info!(transform = %module, "{message}"),
            log::Level::Warn => tracing::warn!(transform = %module, "{message}"),
            log::Level::Error => tracing::error!(transform = %module, "{message}"),
        }
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(transform = %self.module, dropped = self.dropped, "guest log lines over the per-call budget were dropped");
        }
    }
}

#[derive(Default)]
struct StatsCell {
    stats: CallStats,
    total_micros: f64,
}

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    cache: ModuleCache,
    limits: Limits,
    permits: Semaphore,
    stats: DashMap<ModuleId, Mutex<StatsCell>>,
}

/// The wasmtime-backed [`TransformRuntime`].
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<Inner>,
}

/// What a call was asked to do.
enum Call {
    Describe,
    Batch(BatchInput),
    OnDemand(OnDemandInput),
}

impl WasmRuntime {
    /// `cache_dir` holds compiled modules across restarts (`None`: compile
    /// in memory only).
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> Result<WasmRuntime, RuntimeError> {
        let engine = engine::build_engine(&limits)?;
        engine::start_epoch_ticker(&engine);
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Internal(format!("linking WASI: {e:#}")))?;
        Component::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Internal(format!("linking the log import: {e:#}")))?;
        let cache = ModuleCache::new(cache_dir, &engine)?;
        let permits = Semaphore::new(limits.max_concurrent_calls.max(1));
        Ok(WasmRuntime { inner: Arc::new(Inner { engine, linker, cache, limits, permits, stats: DashMap::new() }) })
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Runs `call` on a blocking thread in a fresh store with the deadline
    /// and memory cap, waiting for a free instance slot first, then checks a
    /// table output against the descriptor (`expected_rows`: on-demand calls
    /// must answer one row per input row).
    async fn run(
        &self,
        id: &ModuleId,
        loaded: Arc<Loaded>,
        call: Call,
        expected_rows: Option<usize>,
    ) -> Result<CallOutput, RuntimeError> {
        let limits = &self.inner.limits;
        let _permit = tokio::time::timeout(limits.call_timeout, self.inner.permits.acquire())
            .await
            .map_err(|_| RuntimeError::Busy)?
            .map_err(|_| RuntimeError::Busy)?;
        let inner = self.inner.clone();
        let module = id.to_string();
        let started = Instant::now();
        let pre = loaded.clone();
        let result = tokio::task::spawn_blocking(move || inner.call_blocking(&module, &pre.pre, call))
            .await
            .map_err(|e| RuntimeError::Internal(format!("transform call task failed: {e}")))
            .and_then(|r| r)
            .and_then(|output| match &output {
                CallOutput::Table(t) => {
                    check_output(&id.to_string(), &loaded.descriptor, t, expected_rows, limits).map(|()| output)
                }
                CallOutput::Descriptor(_) => Ok(output),
            });
        self.record(id, started, &result);
        result
    }

    fn record(&self, id: &ModuleId, started: Instant, result: &Result<CallOutput, RuntimeError>) {
        let cell = self.inner.stats.entry(id.clone()).or_default();
        let mut c = cell.lock().expect("stats lock");
        c.stats.calls += 1;
        c.total_micros += started.elapsed().as_secs_f64() * 1e6;
        c.stats.mean_micros = c.total_micros / c.stats.calls as f64;
        match result {
            Ok(_) => {}
            Err(e) => {
                c.stats.errors += 1;
                match e {
                    RuntimeError::Trap { .. } | RuntimeError::MemoryLimit { .. } => c.stats.traps += 1,
                    RuntimeError::Timeout { .. } => c.stats.timeouts += 1,
                    _ => {}
                }
            }
        }
    }

    fn loaded(&self, id: &ModuleId) -> Result<Arc<Loaded>, RuntimeError> {
        self.inner.cache.get(&id.sha256).ok_or_else(|| RuntimeError::NotLoaded(id.to_string()))
    }
}

enum CallOutput {
    Descriptor(Descriptor),
    Table(Table),
}

impl Inner {
    fn call_blocking(&self, module: &str, pre: &ComponentPre<State>, call: Call) -> Result<CallOutput, RuntimeError> {
        let stdout = GuestOutput::new(self.limits.log_bytes_per_call);
        let stderr = GuestOutput::new(self.limits.log_bytes_per_call);
        let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { max_bytes: self.limits.memory_bytes, denied: false },
            log: LogSink { module: module.to_string(), budget: self.limits.log_bytes_per_call, dropped: 0 },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(engine::deadline_ticks(self.limits.call_timeout));
        store.epoch_deadline_trap();

        let result = (|| -> wasmtime::Result<Result<CallOutput, String>> {
            let instance = pre.instantiate(&mut store)?;
            let t = instance.wafer_transform_transform();
            Ok(match &call {
                Call::Describe => {
                    Ok(CallOutput::Descriptor(bindings::descriptor_from_wit(t.call_describe(&mut store)?)))
                }
                Call::Batch(input) => t
                    .call_batch(&mut store, &bindings::batch_input_to_wit(input))?
                    .map(|table| CallOutput::Table(bindings::table_from_wit(table))),
                Call::OnDemand(input) => t
                    .call_on_demand(&mut store, &bindings::on_demand_input_to_wit(input))?
                    .map(|table| CallOutput::Table(bindings::table_from_wit(table))),
            })
        })();
        forward_output(module, "stdout", &stdout);
        forward_output(module, "stderr", &stderr);
        let denied = store.data().limiter.denied;
        match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(RuntimeError::Guest { module: module.to_string(), message }),
            Err(err) => Err(self.classify(module, err, denied, &stderr)),
        }
    }

    /// A trap, a deadline or a denied allocation, told apart.
    fn classify(&self, module: &str, err: wasmtime::Error, memory_denied: bool, stderr: &GuestOutput) -> RuntimeError {
        let module = module.to_string();
        if memory_denied {
            return RuntimeError::MemoryLimit { module, limit_bytes: self.limits.memory_bytes };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => RuntimeError::Timeout { module, limit: self.limits.call_timeout },
            Some(trap) => {
                // A Rust guest prints its panic message to stderr before
                // trapping; that line says far more than the trap code.
                let tail = stderr.contents().0.trim().lines().last().unwrap_or("").to_string();
                let message = if tail.is_empty() { trap.to_string() } else { format!("{trap}: {tail}") };
                RuntimeError::Trap { module, message }
            }
            None => RuntimeError::Trap { module, message: format!("{err:#}") },
        }
    }
}

fn forward_output(module: &str, stream: &str, pipe: &GuestOutput) {
    let (text, dropped) = pipe.contents();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(transform = %module, stream, "{line}");
    }
    if dropped > 0 {
        tracing::warn!(transform = %module, stream, dropped_bytes = dropped, "guest output over the per-call budget was dropped");
    }
}

/// Names the first import outside [`ALLOWED_IMPORTS`], if any.
fn disallowed_import<'a>(imports: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    imports.into_iter().find(|name| !ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p)))
}

/// Publish-time checks of what the component says about itself.
fn validate_descriptor(d: &Descriptor) -> Result<(), String> {
    if d.outputs.is_empty() {
        return Err("describe lists no outputs".into());
    }
    let mut seen = HashSet::new();
    for o in &d.outputs {
        crate::model::registry::validate_name("output", &o.name)?;
        if !seen.insert(&o.name) {
            return Err(format!("describe lists output '{}' twice", o.name));
        }
    }
    Ok(())
}

/// Output must have the shape the transform promised.
fn check_output(
    module: &str,
    descriptor: &Descriptor,
    table: &Table,
    expected_rows: Option<usize>,
    limits: &Limits,
) -> Result<(), RuntimeError> {
    let bad = |message: String| RuntimeError::BadOutput { module: module.to_string(), message };
    let rows = expected_rows.unwrap_or(table.rows());
    if expected_rows.is_none() {
        table.check_shape().map_err(bad)?;
    } else if let Some(c) = table.columns.iter().find(|c| c.len() != rows) {
        return Err(bad(format!("column '{}' has {} rows, expected one per input row ({rows})", c.name, c.len())));
    }
    if rows > limits.output_rows {
        return Err(bad(format!("{rows} rows, over the limit of {}", limits.output_rows)));
    }
    for c in &table.columns {
        match descriptor.output(&c.name) {
            None => return Err(bad(format!("column '{}' is not a declared output", c.name))),
            Some(o) if o.value_type != c.values.value_type() => {
                return Err(bad(format!(
                    "column '{}' has type {} but is declared {}",
                    c.name,
                    c.values.value_type(),
                    o.value_type
                )));
            }
            Some(_) => {}
        }
        if c.nulls.iter().any(|&i| i as usize >= rows) || c.nulls.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(format!("column '{}' lists null rows out of range or out of order", c.name)));
        }
    }
    Ok(())
}

#[async_trait]
impl TransformRuntime for WasmRuntime {
    async fn load(&self, id: &ModuleId, bytes: &[u8]) -> Result<Descriptor, RuntimeError> {
        if let Some(loaded) = self.inner.cache.get(&id.sha256) {
            return Ok(loaded.descriptor.clone());
        }
        let limit = self.inner.limits.module_bytes;
        if bytes.len() > limit {
            return Err(RuntimeError::ModuleTooLarge { size: bytes.len(), limit });
        }
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(RuntimeError::InvalidComponent(
                    "this is a core WebAssembly module, not a component; build with `cargo build --target wasm32-wasip2`".into(),
                ));
            }
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => {
                return Err(RuntimeError::InvalidComponent("not a WebAssembly binary (no \\0asm header)".into()));
            }
        }
        let inner = self.inner.clone();
        let (sha, owned) = (id.sha256.clone(), bytes.to_vec());
        let pre = tokio::task::spawn_blocking(move || -> Result<ComponentPre<State>, RuntimeError> {
            let component = inner.cache.compile(&inner.engine, &sha, &owned)?;
            let ty = component.component_type();
            let imports: Vec<String> = ty.imports(&inner.engine).map(|(name, _)| name.to_string()).collect();
            if let Some(bad) = disallowed_import(imports.iter().map(String::as_str)) {
                return Err(RuntimeError::InvalidComponent(format!(
                    "imports '{bad}', which the sandbox does not provide (allowed: {})",
                    ALLOWED_IMPORTS.join("*, ")
                )));
            }
            let instance_pre = inner
                .linker
                .instantiate_pre(&component)
                .map_err(|e| RuntimeError::InvalidComponent(format!("cannot be linked: {e:#}")))?;
            ComponentPre::new(instance_pre).map_err(|e| {
                RuntimeError::InvalidComponent(format!("does not export the wafer:transform@0.1.0 interface: {e:#}"))
            })
        })
        .await
        .map_err(|e| RuntimeError::Internal(format!("compile task failed: {e}")))??;

        let probe = Arc::new(Loaded { pre, descriptor: placeholder_descriptor() });
        let descriptor = match self.run(id, probe.clone(), Call::Describe, None).await {
            Ok(CallOutput::Descriptor(d)) => d,
            Ok(CallOutput::Table(_)) => unreachable!("describe returns a descriptor"),
            Err(e) => {
                return Err(RuntimeError::InvalidComponent(format!("describe failed: {e}")));
            }
        };
        validate_descriptor(&descriptor).map_err(RuntimeError::InvalidComponent)?;
        let pre = Arc::try_unwrap(probe).map_err(|_| RuntimeError::Internal("probe still shared".into()))?.pre;
        self.inner.cache.insert(&id.sha256, Loaded { pre, descriptor: descriptor.clone() });
        Ok(descriptor)
    }

    fn is_loaded(&self, sha256: &str) -> bool {
        self.inner.cache.get(sha256).is_some()
    }

    async fn batch(&self, id: &ModuleId, input: BatchInput) -> Result<Table, RuntimeError> {
        let loaded = self.loaded(id)?;
        if loaded.descriptor.kind != TransformKind::Batch {
            return Err(RuntimeError::Guest { module: id.to_string(), message: "not a batch transform".into() });
        }
        match self.run(id, loaded, Call::Batch(input), None).await? {
            CallOutput::Table(t) => Ok(t),
            CallOutput::Descriptor(_) => unreachable!("batch returns a table"),
        }
    }

    async fn on_demand(&self, id: &ModuleId, input: OnDemandInput) -> Result<Table, RuntimeError> {
        let loaded = self.loaded(id)?;
        let rows = input.features.iter().chain(input.request.iter()).map(|c| c.len()).max().unwrap_or(0);
        match self.run(id, loaded, Call::OnDemand(input), Some(rows)).await? {
            CallOutput::Table(t) => Ok(t),
            CallOutput::Descriptor(_) => unreachable!("on-demand returns a table"),
        }
    }

    fn stats(&self, id: &ModuleId) -> CallStats {
        self.inner.stats.get(id).map(|c| c.lock().expect("stats lock").stats.clone()).unwrap_or_default()
    }
}

/// Stands in until `describe` has answered; never used for output checks.
fn placeholder_descriptor() -> Descriptor {
    Descriptor {
        kind: TransformKind::Batch,
        inputs: vec![],
        request_fields: vec![],
        outputs: vec![],
        params: vec![],
        min_history: 0,
        related: vec![],
        description: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sandbox_imports_are_allowed() {
        assert_eq!(disallowed_import(["wasi:cli/stdout@0.2.6", "wafer:transform/log@0.1.0"]), None);
        assert_eq!(
            disallowed_import(["wasi:io/streams@0.2.6", "wasi:sockets/tcp@0.2.6"]),
            Some("wasi:sockets/tcp@0.2.6")
        );
        assert_eq!(disallowed_import(["wasi:http/outgoing-handler@0.2.6"]), Some("wasi:http/outgoing-handler@0.2.6"));
    }
}
