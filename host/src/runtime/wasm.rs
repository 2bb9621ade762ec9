//! [`WasmRuntime`]: runs transform components, one fresh store per call.
//!
//! A call waits for one of `max_concurrent_calls` permits (the pool has an
//! instance slot for each), then runs on the calling task itself: a new
//! `Store` with a memory limiter and a deadline, an instance from the
//! module's `InstancePre`, the call, and the store dropped. A fresh store
//! per call is the isolation: a trap poisons its store, and no state leaks
//! from one call (or one tenant) to the next.
//!
//! The guest runs on a fiber of wasmtime's async support, on the async
//! runtime's threads: no hop to a blocking thread and back, which cost more
//! than the call. At every epoch tick ([`engine::TICK`]) the guest yields
//! to the runtime, so a long call does not hold a thread from other
//! requests, and past its deadline it is stopped. A caller that stops
//! waiting (its request was cancelled or timed out) drops the call's
//! future, which stops the guest at once and frees its slot.
//! `wafer-bench wasm` measures each part of a call.

use super::bindings::{self, ComponentPre, Instance, Request, Response};
use super::cache::{Loaded, ModuleCache};
use super::engine;
use super::error::RuntimeError;
use super::limits::Limits;
use super::output::{CallLog, GuestOutput, LogBudget, LogRates};
use super::validate;
use super::{CallStats, ModuleId, TransformRuntime};
use crate::model::{BatchInput, Descriptor, OnDemandInput, Table, TransformKind};
use async_trait::async_trait;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, PoolConcurrencyLimitError, ResourceLimiter, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Table elements an instance may grow to; far beyond what a transform's
/// indirect-call table needs.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Per-store state: the WASI context, the memory limiter, the log sink.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    log: CallLog,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl State {
    /// A line from the guest's `log` import.
    pub(crate) fn guest_log(&mut self, level: tracing::Level, message: &str) {
        self.log.line(level, message, Instant::now());
    }
}

/// Denies memory growth past the cap and remembers that growth failed, so
/// an allocation failure is reported as the memory limit it is rather than
/// as the generic trap (`unreachable`, from `handle_alloc_error`) the
/// guest's allocator turns it into.
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

    /// Growth we allowed can still fail (past the memory's own maximum, or
    /// the pool slot's); for the caller that is the same memory limit.
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.denied = true;
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
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
    /// One permit per pooled instance slot: a call beyond them waits (up to
    /// its timeout) instead of failing to instantiate.
    permits: Semaphore,
    stats: DashMap<ModuleId, Mutex<StatsCell>>,
    /// Each version's guest log rate, across its calls.
    log_rates: LogRates,
}

/// The wasmtime-backed [`TransformRuntime`]. Cheap to clone (shared state).
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

impl Call {
    fn request(&self) -> Request<'_> {
        match self {
            Call::Describe => Request::Describe,
            Call::Batch(input) => Request::Batch(input),
            Call::OnDemand(input) => Request::OnDemand(input),
        }
    }
}

/// What one call costs, part by part, in microseconds per iteration, from
/// [`WasmRuntime::measure_call_overhead`].
#[derive(Clone, Debug, Default)]
pub struct CallOverhead {
    /// A new store: WASI context with captured output, memory limiter,
    /// deadline.
    pub store_micros: Vec<f64>,
    /// An instance from the module's `InstancePre` (a pooled slot, memory
    /// images, the guest's start functions).
    pub instantiate_micros: Vec<f64>,
    /// The call on that fresh instance: input lowered, guest run, output
    /// lifted.
    pub call_micros: Vec<f64>,
    /// Dropping the store, which gives the slot back to the pool.
    pub drop_micros: Vec<f64>,
    /// The alternative we did not choose: the same call again on one
    /// instance kept alive.
    pub reused_call_micros: Vec<f64>,
}

impl WasmRuntime {
    /// `cache_dir` keeps compiled modules across restarts (`None`: compile
    /// in memory only). Starts the epoch ticker thread, which ends when the
    /// last clone of the runtime is dropped.
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> Result<WasmRuntime, RuntimeError> {
        let engine = engine::build_engine(&limits)?;
        engine::start_epoch_ticker(&engine);
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Internal(format!("linking WASI: {e:#}")))?;
        bindings::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Internal(format!("linking the log import: {e:#}")))?;
        refuse_sleeping(&mut linker).map_err(|e| RuntimeError::Internal(format!("linking the clocks: {e:#}")))?;
        let cache = ModuleCache::new(cache_dir, &engine)?;
        let permits = Semaphore::new(limits.max_concurrent_calls.max(1));
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                limits,
                permits,
                stats: DashMap::new(),
                log_rates: LogRates::default(),
            }),
        })
    }

    /// Times each part of `iterations` batch calls of `input` on a loaded
    /// module, each in a fresh store and instance, then the same call on
    /// one reused instance: the numbers behind a fresh store per call. The
    /// permit, the input's conversion and the output checks every real
    /// call adds are not in these figures. For `wafer-bench`.
    pub async fn measure_call_overhead(
        &self,
        id: &ModuleId,
        input: &BatchInput,
        iterations: usize,
    ) -> Result<CallOverhead, RuntimeError> {
        let pre = self.loaded(id)?.pre.clone();
        let _permit = self.permit().await?;
        let (inner, module) = (&self.inner, id.to_string());
        let failed = |e: wasmtime::Error| RuntimeError::Internal(format!("{e:#}"));
        let mut out = CallOverhead::default();
        let lap = |t: &mut Instant| {
            let micros = t.elapsed().as_secs_f64() * 1e6;
            *t = Instant::now();
            micros
        };
        for _ in 0..iterations {
            let mut t = Instant::now();
            let (mut store, _, _) = inner.new_store(&module, &inner.limits);
            out.store_micros.push(lap(&mut t));
            let instance = Instance::new(&pre, &mut store).await.map_err(failed)?;
            out.instantiate_micros.push(lap(&mut t));
            instance.call(&mut store, Request::Batch(input)).await.map_err(failed)?;
            out.call_micros.push(lap(&mut t));
            drop(store);
            out.drop_micros.push(lap(&mut t));
        }
        let (mut store, _, _) = inner.new_store(&module, &inner.limits);
        let instance = Instance::new(&pre, &mut store).await.map_err(failed)?;
        for _ in 0..iterations {
            let t = Instant::now();
            instance.call(&mut store, Request::Batch(input)).await.map_err(failed)?;
            out.reused_call_micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(out)
    }

    /// A free instance slot, waiting up to the call timeout for one.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, RuntimeError> {
        tokio::time::timeout(self.inner.limits.call_timeout, self.inner.permits.acquire())
            .await
            .map_err(|_| RuntimeError::Busy)?
            .map_err(|_| RuntimeError::Internal("the call semaphore was closed".into()))
    }

    /// Runs `call` in a fresh store, then `finish`es its response, and
    /// counts the outcome in the module's stats.
    async fn run<R: Send + 'static>(
        &self,
        id: &ModuleId,
        pre: &ComponentPre<State>,
        call: Call,
        limits: &Limits,
        finish: impl FnOnce(Response) -> Result<R, RuntimeError>,
    ) -> Result<R, RuntimeError> {
        let _permit = self.permit().await?;
        let started = Instant::now();
        let result = self.inner.call(&id.to_string(), pre, &call, limits).await.and_then(finish);
        self.record(id, started, result.as_ref().err());
        result
    }

    /// Runs a batch or on-demand call and checks its table against the
    /// descriptor (`expected_rows`: on-demand answers one row per input row).
    async fn call_table(
        &self,
        id: &ModuleId,
        kind: TransformKind,
        call: Call,
        expected_rows: Option<usize>,
        limits: &Limits,
    ) -> Result<Table, RuntimeError> {
        let loaded = self.loaded(id)?;
        if loaded.descriptor.kind != kind {
            let (is, called) = match kind {
                TransformKind::Batch => ("on-demand", "batch"),
                TransformKind::OnDemand => ("batch", "on-demand"),
            };
            return Err(RuntimeError::Guest {
                module: id.to_string(),
                message: format!("it is a {is} transform and cannot be called as {called}"),
            });
        }
        let module = id.to_string();
        self.run(id, &loaded.pre, call, limits, |response| match response {
            Response::Table(Ok(table)) => validate::check_output(&loaded.descriptor, &table, expected_rows, limits)
                .map(|()| table)
                .map_err(|message| RuntimeError::BadOutput { module, message }),
            Response::Table(Err(message)) => Err(RuntimeError::Guest { module, message }),
            Response::Descriptor(_) => Err(RuntimeError::Internal("a call answered with a descriptor".into())),
        })
        .await
    }

    fn record(&self, id: &ModuleId, started: Instant, error: Option<&RuntimeError>) {
        let cell = self.inner.stats.entry(id.clone()).or_default();
        let mut c = cell.lock().expect("stats lock");
        c.stats.calls += 1;
        c.total_micros += started.elapsed().as_secs_f64() * 1e6;
        c.stats.mean_micros = c.total_micros / c.stats.calls as f64;
        if let Some(e) = error {
            c.stats.errors += 1;
            match e {
                RuntimeError::Trap { .. } | RuntimeError::MemoryLimit { .. } => c.stats.traps += 1,
                RuntimeError::Timeout { .. } => c.stats.timeouts += 1,
                _ => {}
            }
        }
    }

    fn loaded(&self, id: &ModuleId) -> Result<Arc<Loaded>, RuntimeError> {
        self.inner.cache.get(&id.sha256).ok_or_else(|| RuntimeError::NotLoaded(id.to_string()))
    }
}

impl Inner {
    /// A store for one call of `module`: empty WASI context with captured
    /// output, the memory cap, and the deadline: at every epoch tick the
    /// guest yields to the async runtime, and past the call's timeout it is
    /// interrupted (reported as [`RuntimeError::Timeout`]).
    fn new_store(&self, module: &str, limits: &Limits) -> (Store<State>, GuestOutput, GuestOutput) {
        let budget = LogBudget::new(limits.log_bytes_per_call);
        let stdout = GuestOutput::new(budget.clone());
        let stderr = GuestOutput::new(budget.clone());
        // The builder's defaults are the sandbox: no preopens, environment,
        // arguments or network; stdin closed. Only the output is ours.
        let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { max_bytes: limits.memory_bytes, denied: false },
            log: CallLog::new(module, budget, self.log_rates.for_module(module), limits.log_lines_per_second),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = Instant::now() + limits.call_timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            // tokio's own yield: a plain one can be polled again at once
            // from the worker's LIFO slot, starving the tasks it yields to.
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        (store, stdout, stderr)
    }

    /// One call in a fresh store, on the calling task.
    async fn call(
        &self,
        module: &str,
        pre: &ComponentPre<State>,
        call: &Call,
        limits: &Limits,
    ) -> Result<Response, RuntimeError> {
        let (mut store, stdout, stderr) = self.new_store(module, limits);
        let result = match Instance::new(pre, &mut store).await {
            Ok(instance) => instance.call(&mut store, call.request()).await,
            Err(e) => Err(e),
        };
        store.data().log.finish(&stdout, &stderr, Instant::now());
        let memory_denied = store.data().limiter.denied;
        drop(store);
        result.map_err(|err| classify(module, err, memory_denied, &stderr, limits))
    }
}

/// A trap, a deadline, a denied allocation or a full pool, told apart.
fn classify(
    module: &str,
    err: wasmtime::Error,
    memory_denied: bool,
    stderr: &GuestOutput,
    limits: &Limits,
) -> RuntimeError {
    let module = module.to_string();
    if memory_denied {
        return RuntimeError::MemoryLimit { module, limit_bytes: limits.memory_bytes };
    }
    if err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return RuntimeError::Busy;
    }
    let what = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return RuntimeError::Timeout { module, limit: limits.call_timeout },
        Some(trap) => trap.to_string(),
        None => err.root_cause().to_string(),
    };
    // A Rust guest prints its panic message to stderr before trapping,
    // which says far more than the trap code; else name where it was.
    let context = stderr.tail().or_else(|| backtrace_summary(&err));
    let message = match context {
        Some(context) => format!("{what}: {context}"),
        None => what,
    };
    RuntimeError::Trap { module, message }
}

/// The innermost few guest functions of a trap, when names are known.
fn backtrace_summary(err: &wasmtime::Error) -> Option<String> {
    let frames: Vec<&str> =
        err.downcast_ref::<WasmBacktrace>()?.frames().iter().filter_map(|f| f.func_name()).take(3).collect();
    (!frames.is_empty()).then(|| format!("in {}", frames.join(" <- ")))
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
        validate::check_binary(bytes).map_err(RuntimeError::InvalidComponent)?;

        // Hashing and compiling are CPU-bound: off the async workers.
        let inner = self.inner.clone();
        let (sha, owned) = (id.sha256.clone(), bytes.to_vec());
        let (pre, compiled) = tokio::task::spawn_blocking(move || {
            let actual = hex::encode(Sha256::digest(&owned));
            if actual != sha {
                // The sha names the cache file: it must be the bytes' own.
                return Err(RuntimeError::Internal(format!("module id says sha256 {sha}, the bytes hash to {actual}")));
            }
            let compiled = inner.cache.compile(&inner.engine, &sha, &owned)?;
            let ty = compiled.component.component_type();
            validate::check_imports(ty.imports(&inner.engine).map(|(name, _)| name))
                .map_err(RuntimeError::InvalidComponent)?;
            validate::check_exports(ty.exports(&inner.engine).map(|(name, _)| name))
                .map_err(RuntimeError::InvalidComponent)?;
            let instance_pre = inner
                .linker
                .instantiate_pre(&compiled.component)
                .map_err(|e| RuntimeError::InvalidComponent(format!("cannot be linked: {e:#}")))?;
            let pre = ComponentPre::new(instance_pre).map_err(|e| {
                RuntimeError::InvalidComponent(format!("does not match the wafer:transform@0.1.0 world: {e:#}"))
            })?;
            Ok((pre, compiled))
        })
        .await
        .map_err(|e| RuntimeError::Internal(format!("compile task failed: {e}")))??;

        let descriptor = self
            .run(id, &pre, Call::Describe, &self.inner.limits, |response| match response {
                Response::Descriptor(d) => Ok(d),
                Response::Table(_) => Err(RuntimeError::Internal("describe answered with a table".into())),
            })
            .await
            .map_err(|e| match e {
                RuntimeError::Busy => RuntimeError::Busy,
                e => RuntimeError::InvalidComponent(format!("describe failed: {e}")),
            })?;
        validate::check_descriptor(&descriptor).map_err(RuntimeError::InvalidComponent)?;

        let inner = self.inner.clone();
        let sha = id.sha256.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || inner.cache.persist(&sha, compiled)).await {
            tracing::warn!(transform = %id, error = %e, "caching the compiled module failed");
        }
        self.inner.cache.insert(&id.sha256, Loaded { pre, descriptor: descriptor.clone() });
        tracing::debug!(transform = %id, sha256 = %id.sha256, "transform module loaded");
        Ok(descriptor)
    }

    fn is_loaded(&self, sha256: &str) -> bool {
        self.inner.cache.get(sha256).is_some()
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    async fn batch(&self, id: &ModuleId, input: BatchInput, limits: &Limits) -> Result<Table, RuntimeError> {
        self.call_table(id, TransformKind::Batch, Call::Batch(input), None, limits).await
    }

    async fn on_demand(&self, id: &ModuleId, input: OnDemandInput, limits: &Limits) -> Result<Table, RuntimeError> {
        let rows = input.features.iter().chain(&input.request).map(|c| c.len()).max().unwrap_or(0);
        self.call_table(id, TransformKind::OnDemand, Call::OnDemand(input), Some(rows), limits).await
    }

    fn stats(&self, id: &ModuleId) -> CallStats {
        self.inner.stats.get(id).map(|c| c.lock().expect("stats lock").stats.clone()).unwrap_or_default()
    }
}

/// Timers are the one WASI import that blocks in the host, where the epoch
/// deadline cannot reach: a guest that sleeps holds its instance slot and
/// thread for as long as it likes. No transform needs to wait, so both
/// ways to make a timer fail the call at once.
fn refuse_sleeping(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    fn refuse<T>(_: wasmtime::StoreContextMut<'_, State>, _: T) -> wasmtime::Result<(Resource<DynPollable>,)> {
        Err(wasmtime::format_err!(
            "the transform tried to sleep, which would outlast its deadline; transforms may not wait"
        ))
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    linker.allow_shadowing(true);
    // Shadowing replaces the whole instance: `now` and `resolution` again.
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.6")?;
    clock.func_wrap("now", |_: wasmtime::StoreContextMut<'_, State>, (): ()| {
        Ok((START.get_or_init(Instant::now).elapsed().as_nanos() as u64,))
    })?;
    clock.func_wrap("resolution", |_: wasmtime::StoreContextMut<'_, State>, (): ()| Ok((1u64,)))?;
    clock.func_wrap("subscribe-duration", refuse::<(u64,)>)?;
    clock.func_wrap("subscribe-instant", refuse::<(u64,)>)?;
    linker.allow_shadowing(false);
    Ok(())
}
