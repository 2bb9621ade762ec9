//! The wasmtime engine: one per process, configured for many short,
//! isolated calls (pooling allocator, epoch interruption, async calls on
//! fibers but no component-model async), plus the epoch ticker that makes
//! deadlines and yields work.

use super::error::RuntimeError;
use super::limits::Limits;
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// One epoch tick: how long a guest runs before it yields to the async
/// runtime's other tasks, and how far past its deadline a call may get
/// before it is stopped. Short enough that a long call delays others on its
/// thread by no more than this; the ticker's 500 wake-ups a second cost
/// next to nothing.
pub(crate) const TICK: Duration = Duration::from_millis(2);

/// Core instances, memories and tables one component may use. A Rust
/// `wasm32-wasip2` component has a main module plus a few adapter shims.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

fn base_config() -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        // We never use component-model async; turning it off makes every
        // typed call about 3.5x cheaper (WASMTIME.md section 4).
        .concurrency_support(false)
        .max_wasm_stack(512 << 10)
        .cranelift_opt_level(OptLevel::Speed);
    cfg
}

/// Linear memory a finished call leaves resident in its pool slot, when
/// the kernel can tell which pages the call touched (`PAGEMAP_SCAN`,
/// Linux 6.7+): only those are reset, with memset, and the next call in the
/// slot takes no page faults. `wafer-bench wasm` (release, 2-core VM):
/// a 1-row batch call end to end 26 us without it, 18 us with it; the
/// 252-row batch 88 us against 53 us. Bounds the resident memory the pool
/// keeps: 4 MiB per instance slot.
const KEEP_RESIDENT: usize = 4 << 20;

/// Builds the engine with a pooling allocator sized for
/// `limits.max_concurrent_calls` instances. Where the kernel lacks
/// `PAGEMAP_SCAN`, finished calls' memory is returned with madvise instead
/// (keeping it resident would mean a memset of all of it); where the pool's
/// virtual memory cannot be reserved (a restricted address space), instances
/// are allocated on demand, which is slower but correct.
pub(crate) fn build_engine(limits: &Limits) -> Result<Engine, RuntimeError> {
    let calls = limits.max_concurrent_calls.max(1) as u32;
    for scan in [true, false] {
        let mut cfg = base_config();
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(limits, calls, scan)));
        match Engine::new(&cfg) {
            Ok(engine) => {
                tracing::info!(
                    instance_slots = calls,
                    memory_cap_bytes = limits.memory_bytes,
                    pagemap_scan = scan,
                    "Wasm engine: pooling allocator, epoch deadlines"
                );
                return Ok(engine);
            }
            Err(e) if scan => tracing::debug!(error = %e, "pooling allocator without PAGEMAP_SCAN"),
            Err(e) => tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand instance allocation"),
        }
    }
    Engine::new(&base_config()).map_err(|e| RuntimeError::Internal(format!("creating the Wasm engine: {e:#}")))
}

fn pool_config(limits: &Limits, calls: u32, pagemap_scan: bool) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(calls)
        .total_core_instances(calls * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(calls * 2)
        .max_memories_per_component(2)
        .total_tables(calls * 4)
        .max_tables_per_component(4)
        // One fiber stack per call in flight. Stacks are not zeroed between
        // calls (wasmtime's default), so they stay resident as they are.
        .total_stacks(calls)
        .max_memory_size(limits.memory_bytes)
        .max_component_instance_size(10 << 20)
        .max_core_instance_size(10 << 20)
        .table_keep_resident(512 << 10);
    if pagemap_scan {
        pool.pagemap_scan(Enabled::Yes).linear_memory_keep_resident(KEEP_RESIDENT);
    } else {
        // Without the scan, memory kept resident is all reset with memset.
        // A Rust guest's low megabyte is its mostly untouched stack, so that
        // costs more than the page faults it saves (measured: 22-24 us per
        // describe call with 0 against 36-45 us with 2 MiB).
        pool.linear_memory_keep_resident(0);
    }
    pool
}

/// Advances the engine's epoch every [`TICK`] on a plain thread (not a
/// tokio task: a guest spinning on a runtime worker must not be able to
/// starve its own deadline). The thread holds only a weak reference and ends
/// with the engine.
pub(crate) fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wafer-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The engine's `precompile_compatibility_hash` as hex: names the cache
/// directory, so a compilation is only reused by an engine that can run it
/// (same wasmtime, same settings, same CPU features). SHA-256 rather than
/// `DefaultHasher`, whose output the standard library may change between
/// releases.
pub(crate) fn compatibility_key(engine: &Engine) -> String {
    use sha2::Digest;
    use std::hash::Hash;

    struct Sha256Hasher(sha2::Sha256);
    impl std::hash::Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
        }
    }

    let mut h = Sha256Hasher(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_is_stable_for_one_engine_configuration() {
        let limits = Limits::default();
        let (a, b) = (build_engine(&limits).unwrap(), build_engine(&limits).unwrap());
        assert_eq!(compatibility_key(&a), compatibility_key(&b));
        assert_eq!(compatibility_key(&a).len(), 32);
    }
}
