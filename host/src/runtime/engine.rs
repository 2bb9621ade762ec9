//! The wasmtime engine: one per process, configured for many short,
//! isolated calls (pooling allocator, epoch interruption, no component-model
//! async), plus the epoch ticker that makes deadlines work.

use super::error::RuntimeError;
use super::limits::Limits;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// One epoch tick. Deadlines are whole ticks, so a call is stopped between
/// its deadline and one tick later.
pub(crate) const TICK: Duration = Duration::from_millis(10);

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

/// Builds the engine with a pooling allocator sized for
/// `limits.max_concurrent_calls` instances; falls back to on-demand
/// allocation where the pool's virtual memory cannot be reserved (e.g. a
/// restricted address space), which is slower to instantiate but correct.
pub(crate) fn build_engine(limits: &Limits) -> Result<Engine, RuntimeError> {
    let calls = limits.max_concurrent_calls.max(1) as u32;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(calls)
        .total_core_instances(calls * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(calls * 2)
        .max_memories_per_component(2)
        .total_tables(calls * 4)
        .max_tables_per_component(4)
        .max_memory_size(limits.memory_bytes)
        .max_component_instance_size(10 << 20)
        .max_core_instance_size(10 << 20)
        // Memory kept resident is zeroed with memset when a call ends; the
        // rest is returned with madvise. A Rust guest's low megabyte is its
        // mostly untouched stack, so memset there only faults in zero pages:
        // `wafer-bench wasm` (release) measured fresh store + instantiate +
        // describe at 22-24 us with 0 against 36-45 us with Spin's 2 MiB (the
        // 252-row batch gives back 6-9 us of that in page faults).
        .linear_memory_keep_resident(0)
        .table_keep_resident(512 << 10);
    let mut cfg = base_config();
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&cfg) {
        Ok(engine) => {
            tracing::info!(
                instance_slots = calls,
                memory_cap_bytes = limits.memory_bytes,
                "Wasm engine: pooling allocator, epoch deadlines"
            );
            Ok(engine)
        }
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand instance allocation");
            Engine::new(&base_config()).map_err(|e| RuntimeError::Internal(format!("creating the Wasm engine: {e:#}")))
        }
    }
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

/// Ticks to allow for `timeout`: rounded up, plus one because the current
/// tick may be about to end.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros().div_ceil(TICK.as_micros()) as u64).max(1) + 1
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
    fn deadlines_round_up_to_whole_ticks_plus_one() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 11);
        assert_eq!(deadline_ticks(Duration::from_millis(101)), 12);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }

    #[test]
    fn the_cache_key_is_stable_for_one_engine_configuration() {
        let limits = Limits::default();
        let (a, b) = (build_engine(&limits).unwrap(), build_engine(&limits).unwrap());
        assert_eq!(compatibility_key(&a), compatibility_key(&b));
        assert_eq!(compatibility_key(&a).len(), 32);
    }
}
