//! The Wasm runtime on its own, driven through `WasmRuntime`: what publishing
//! accepts and refuses, the compile cache across restarts, the first-party
//! `indicators` component, and what a misbehaving guest can and cannot do:
//! every failure is an error for that call only, of its own kind.
//!
//! No server and no store here, so these run once, not per backend pair
//! (the HTTP side of the sandbox runs on both: see `errors.rs`).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wafer_host::model::{BatchInput, Column, ColumnValues, NamedTable, Table, TransformKind, Value, ValueType};
use wafer_host::runtime::{Limits, ModuleId, RuntimeError, TransformRuntime, WasmRuntime};
use wafer_tests::guests::{EVIL, component_importing};

const INDICATORS: &[u8] = wafer_host::bundled::INDICATORS;

fn id(name: &str, bytes: &[u8]) -> ModuleId {
    ModuleId { name: name.into(), version: "1.0.0".into(), sha256: format!("{:x}", Sha256::digest(bytes)) }
}

/// The evil guest's input: source `s` with `x = [1.5, -2.0]`, and `mode`.
fn input(mode: &str) -> BatchInput {
    let xs = [Value::Float64(1.5), Value::Float64(-2.0)];
    let table =
        Table { timestamps: vec![0, 1], columns: vec![Column::from_values("x", ValueType::Float64, xs.iter())] };
    BatchInput {
        entity: "e".into(),
        sources: vec![NamedTable { name: "s".into(), table }],
        related: vec![],
        params: vec![("mode".into(), mode.into())],
    }
}

async fn runtime_with(limits: Limits) -> (WasmRuntime, ModuleId) {
    let runtime = WasmRuntime::new(None, limits).unwrap();
    let evil = id("evil", EVIL);
    runtime.load(&evil, EVIL).await.unwrap();
    (runtime, evil)
}

async fn evil_runtime() -> (WasmRuntime, ModuleId) {
    runtime_with(Limits::default()).await
}

/// After any failure, a well-behaved call of the same module works.
async fn assert_ok_call(runtime: &WasmRuntime, evil: &ModuleId) {
    let out = runtime.batch(evil, input("ok"), runtime.limits()).await.expect("an `ok` call after a failure");
    assert_eq!(out.column("x").unwrap().values, ColumnValues::Float64(vec![3.0, -4.0]));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect()
}

async fn load_err(runtime: &WasmRuntime, name: &str, bytes: &[u8]) -> String {
    match runtime.load(&id(name, bytes), bytes).await {
        Err(RuntimeError::InvalidComponent(reason)) => reason,
        other => panic!("{name}: expected InvalidComponent, got {other:?}"),
    }
}

#[tokio::test]
async fn loading_garbage_or_a_core_module_is_an_invalid_component_with_the_reason() {
    let runtime = WasmRuntime::new(None, Limits::default()).unwrap();
    let reason = load_err(&runtime, "garbage", b"PK\x03\x04 not wasm at all").await;
    assert!(reason.contains("not a WebAssembly binary"), "{reason}");
    let reason = load_err(&runtime, "core", b"\0asm\x01\0\0\0").await;
    assert!(reason.contains("core WebAssembly module, not a component"), "{reason}");
    let reason = load_err(&runtime, "truncated", b"\0asm\x0d\0\x01\0\x07\x05\x01").await;
    assert!(!reason.is_empty(), "a malformed component is refused with wasmtime's reason");
    assert!(!runtime.is_loaded(&id("core", b"\0asm\x01\0\0\0").sha256));
}

#[tokio::test]
async fn a_component_importing_sockets_http_or_anything_unknown_is_refused_naming_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(Some(dir.path().to_path_buf()), Limits::default()).unwrap();
    for import in ["wasi:sockets/tcp@0.2.6", "wasi:http/outgoing-handler@0.2.6", "acme:secrets/vault@1.0.0"] {
        let reason = load_err(&runtime, "importer", &component_importing(import)).await;
        assert!(reason.starts_with(&format!("imports '{import}'")), "{reason}");
    }
    assert_eq!(cwasm_files(dir.path()), Vec::<PathBuf>::new(), "refused components are not cached");
}

#[tokio::test]
async fn a_component_that_does_not_export_the_transform_interface_is_refused() {
    let runtime = WasmRuntime::new(None, Limits::default()).unwrap();
    let reason = load_err(&runtime, "empty", b"\0asm\x0d\0\x01\0").await;
    assert!(reason.contains("does not export 'wafer:transform/transform@0.1.0'"), "{reason}");
}

#[tokio::test]
async fn a_module_over_the_size_limit_is_refused_before_compiling() {
    let runtime = WasmRuntime::new(None, Limits { module_bytes: 1024, ..Limits::default() }).unwrap();
    match runtime.load(&id("evil", EVIL), EVIL).await {
        Err(RuntimeError::ModuleTooLarge { size, limit }) => assert_eq!((size, limit), (EVIL.len(), 1024)),
        other => panic!("expected ModuleTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn indicators_describes_itself_as_a_batch_transform_with_twelve_outputs() {
    let runtime = WasmRuntime::new(None, Limits::default()).unwrap();
    let d = runtime.load(&id("indicators", INDICATORS), INDICATORS).await.unwrap();
    assert_eq!(d.kind, TransformKind::Batch);
    let outputs: Vec<&str> = d.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        outputs,
        [
            "sma_20",
            "sma_50",
            "sma_200",
            "ema_12",
            "ema_26",
            "rsi_14",
            "macd",
            "macd_signal",
            "macd_histogram",
            "bollinger_upper",
            "bollinger_middle",
            "bollinger_lower"
        ]
    );
    assert!(d.outputs.iter().all(|o| o.value_type == ValueType::Float64), "{d:?}");
    assert_eq!(d.min_history, 200);
}

/// `rows` daily closes of a made-up ticker, oldest first.
fn closes(rows: usize) -> Vec<f64> {
    (0..rows).map(|i| 100.0 + (i as f64 * 0.37).sin() * 5.0 + i as f64 * 0.05).collect()
}

fn prices(closes: &[f64]) -> BatchInput {
    let values: Vec<Value> = closes.iter().map(|&c| Value::Float64(c)).collect();
    let table = Table {
        timestamps: (0..closes.len() as i64).map(|d| 1_700_000_000_000_000 + d * 86_400_000_000).collect(),
        columns: vec![Column::from_values("close", ValueType::Float64, values.iter())],
    };
    BatchInput {
        entity: "ACME".into(),
        sources: vec![NamedTable { name: "prices".into(), table }],
        related: vec![],
        params: vec![],
    }
}

#[tokio::test]
async fn indicators_on_260_rows_returns_260_rows_and_sma_20_is_the_mean_of_the_last_20_closes() {
    let runtime = WasmRuntime::new(None, Limits::default()).unwrap();
    let indicators = id("indicators", INDICATORS);
    runtime.load(&indicators, INDICATORS).await.unwrap();
    let closes = closes(260);
    let input = prices(&closes);

    let out = runtime.batch(&indicators, input.clone(), runtime.limits()).await.unwrap();

    assert_eq!(out.rows(), 260);
    assert_eq!(out.timestamps, input.sources[0].table.timestamps);
    assert_eq!(out.columns.len(), 12);
    let expected = closes[240..].iter().sum::<f64>() / 20.0;
    match out.column("sma_20").unwrap().value(259) {
        Value::Float64(sma) => assert!((sma - expected).abs() < 1e-9, "sma_20 {sma}, expected {expected}"),
        other => panic!("sma_20 at the last row is {other:?}"),
    }
    assert_eq!(out.column("sma_20").unwrap().value(18), Value::Null, "too little history is null");
    let stats = runtime.stats(&indicators);
    assert_eq!((stats.calls, stats.errors), (2, 0), "describe at load, then the batch call: {stats:?}");
}

#[tokio::test]
async fn a_trapping_guest_fails_its_call_with_the_panic_message_and_the_next_call_succeeds() {
    let (runtime, evil) = evil_runtime().await;
    match runtime.batch(&evil, input("trap"), runtime.limits()).await {
        Err(RuntimeError::Trap { module, message }) => {
            assert_eq!(module, "evil@1.0.0");
            assert!(message.contains("trapping on purpose"), "the guest's panic message is kept: {message}");
        }
        other => panic!("expected Trap, got {other:?}"),
    }
    assert_ok_call(&runtime, &evil).await;
    let stats = runtime.stats(&evil);
    assert_eq!((stats.calls, stats.errors, stats.traps, stats.timeouts), (3, 1, 1, 0), "{stats:?}");
}

#[tokio::test]
async fn a_looping_guest_is_stopped_at_its_deadline_and_the_next_call_succeeds() {
    let timeout = Duration::from_millis(200);
    let (runtime, evil) = runtime_with(Limits { call_timeout: timeout, ..Limits::default() }).await;
    let started = Instant::now();
    let result = runtime.batch(&evil, input("loop"), runtime.limits()).await;
    let took = started.elapsed();
    match result {
        Err(RuntimeError::Timeout { limit, .. }) => assert_eq!(limit, timeout),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(took >= timeout, "stopped before its deadline: {took:?}");
    assert!(took < timeout + Duration::from_secs(1), "a {timeout:?} deadline took {took:?}");
    assert_ok_call(&runtime, &evil).await;
    assert_eq!(runtime.stats(&evil).timeouts, 1);
}

#[tokio::test]
async fn an_allocating_guest_hits_the_memory_cap_and_the_next_call_succeeds() {
    let cap = 16 << 20;
    let (runtime, evil) = runtime_with(Limits { memory_bytes: cap, ..Limits::default() }).await;
    match runtime.batch(&evil, input("alloc"), runtime.limits()).await {
        Err(RuntimeError::MemoryLimit { limit_bytes, .. }) => assert_eq!(limit_bytes, cap),
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_ok_call(&runtime, &evil).await;
}

#[tokio::test]
async fn a_guest_error_is_reported_with_its_message_and_the_next_call_succeeds() {
    let (runtime, evil) = evil_runtime().await;
    match runtime.batch(&evil, input("error"), runtime.limits()).await {
        Err(RuntimeError::Guest { message, .. }) => assert_eq!(message, "refusing on purpose"),
        other => panic!("expected Guest, got {other:?}"),
    }
    assert_ok_call(&runtime, &evil).await;
    let stats = runtime.stats(&evil);
    assert_eq!((stats.errors, stats.traps), (1, 0), "a refusal is not a trap: {stats:?}");
}

#[tokio::test]
async fn output_that_breaks_its_declared_shape_is_rejected_and_the_next_call_succeeds() {
    let (runtime, evil) = evil_runtime().await;
    match runtime.batch(&evil, input("wrong_len"), runtime.limits()).await {
        Err(RuntimeError::BadOutput { message, .. }) => assert!(message.contains("rows"), "{message}"),
        other => panic!("expected BadOutput, got {other:?}"),
    }
    let stats = runtime.stats(&evil);
    assert_eq!((stats.calls, stats.errors), (2, 1), "describe at load, then one failing call: {stats:?}");
    assert_ok_call(&runtime, &evil).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_module_keeps_working_while_a_guest_loops() {
    let timeout = Duration::from_secs(1);
    let (runtime, evil) = runtime_with(Limits { call_timeout: timeout, ..Limits::default() }).await;
    let indicators = id("indicators", INDICATORS);
    runtime.load(&indicators, INDICATORS).await.unwrap();

    let looping = tokio::spawn({
        let (runtime, evil) = (runtime.clone(), evil.clone());
        async move { runtime.batch(&evil, input("loop"), runtime.limits()).await }
    });
    let out = runtime.batch(&indicators, prices(&closes(30)), runtime.limits()).await.unwrap();
    assert_eq!(out.rows(), 30);
    assert!(!looping.is_finished(), "the indicators call finished while the guest was still looping");
    assert!(matches!(looping.await.unwrap(), Err(RuntimeError::Timeout { .. })));
    assert_ok_call(&runtime, &evil).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_guest_yields_its_thread_so_other_calls_run_beside_it_on_one_thread() {
    // One thread for everything: only a guest that yields at its epoch
    // ticks lets the indicators call run while it loops.
    let timeout = Duration::from_secs(2);
    let (runtime, evil) = runtime_with(Limits { call_timeout: timeout, ..Limits::default() }).await;
    let indicators = id("indicators", INDICATORS);
    runtime.load(&indicators, INDICATORS).await.unwrap();
    let started = Instant::now();
    let looping = tokio::spawn({
        let (runtime, evil) = (runtime.clone(), evil.clone());
        async move { runtime.batch(&evil, input("loop"), runtime.limits()).await }
    });
    tokio::task::yield_now().await; // the loop starts first
    let out = runtime.batch(&indicators, prices(&closes(30)), runtime.limits()).await.unwrap();
    assert_eq!(out.rows(), 30);
    assert!(started.elapsed() < timeout, "the call waited for the loop's deadline");
    assert!(!looping.is_finished(), "the loop ended before its deadline");
    assert!(matches!(looping.await.unwrap(), Err(RuntimeError::Timeout { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_caller_stops_waiting_stops_its_guest_and_frees_its_slot() {
    // One instance slot and a long deadline: if the abandoned loop kept
    // running, the next call would find no slot until the deadline.
    let limits = Limits { call_timeout: Duration::from_secs(30), max_concurrent_calls: 1, ..Limits::default() };
    let (runtime, evil) = runtime_with(limits).await;
    let abandoned =
        tokio::time::timeout(Duration::from_millis(100), runtime.batch(&evil, input("loop"), runtime.limits())).await;
    assert!(abandoned.is_err(), "the loop cannot finish in 100 ms: {abandoned:?}");
    let started = Instant::now();
    assert_ok_call(&runtime, &evil).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the slot was held {:?} after the caller left",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_what_an_earlier_call_left_in_its_instance() {
    // Two slots, so calls reuse them, memory kept resident between calls;
    // every call must still find a new instance: its first call, nothing
    // marked in its statics or on its heap.
    let limits = Limits { max_concurrent_calls: 2, ..Limits::default() };
    let (runtime, evil) = runtime_with(limits).await;
    let calls = (0..40).map(|_| {
        let (runtime, evil) = (runtime.clone(), evil.clone());
        tokio::spawn(async move { runtime.batch(&evil, input("remember"), runtime.limits()).await })
    });
    for call in calls.collect::<Vec<_>>() {
        let out = call.await.unwrap().expect("a remember call");
        assert_eq!(out.column("x").unwrap().values, ColumnValues::Float64(vec![1.0, 0.0]), "calls seen, residue");
    }
}

#[tokio::test]
async fn a_batch_transform_cannot_be_called_on_demand() {
    let (runtime, evil) = evil_runtime().await;
    let input = wafer_host::model::OnDemandInput {
        features: vec![Column { name: "g:x".into(), values: ColumnValues::Float64(vec![1.0]), nulls: vec![] }],
        request: vec![],
        params: vec![],
    };
    match runtime.on_demand(&evil, input, runtime.limits()).await {
        Err(RuntimeError::Guest { message, .. }) => assert!(message.contains("batch transform"), "{message}"),
        other => panic!("expected a kind error, got {other:?}"),
    }
}

#[tokio::test]
async fn calling_a_module_that_was_never_loaded_is_not_loaded() {
    let runtime = WasmRuntime::new(None, Limits::default()).unwrap();
    assert!(matches!(
        runtime.batch(&id("evil", EVIL), input("ok"), runtime.limits()).await,
        Err(RuntimeError::NotLoaded(_))
    ));
}

#[tokio::test]
async fn a_restarted_runtime_loads_the_compiled_module_from_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let evil = id("evil", EVIL);
    let first = WasmRuntime::new(Some(dir.path().to_path_buf()), Limits::default()).unwrap();
    let started = Instant::now();
    let described = first.load(&evil, EVIL).await.unwrap();
    let compile = started.elapsed();
    let cached = cwasm_files(dir.path());
    assert_eq!(cached.len(), 1, "one compiled module on disk: {:?}", walk(dir.path()));
    assert!(cached[0].ends_with(format!("{}.cwasm", evil.sha256)), "{cached:?}");
    let written = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    drop(first);

    let second = WasmRuntime::new(Some(dir.path().to_path_buf()), Limits::default()).unwrap();
    assert!(!second.is_loaded(&evil.sha256));
    let started = Instant::now();
    assert_eq!(second.load(&evil, EVIL).await.unwrap(), described);
    let reload = started.elapsed();
    assert!(second.is_loaded(&evil.sha256));
    assert_eq!(std::fs::metadata(&cached[0]).unwrap().modified().unwrap(), written, "not compiled again");
    assert_ok_call(&second, &evil).await;
    // Loading from the cache skips Cranelift; reported, not asserted.
    println!("first load (compile): {compile:?}; reload from cache: {reload:?}");
}

#[tokio::test]
async fn a_guest_sees_no_files_and_no_environment() {
    let (runtime, evil) = evil_runtime().await;
    match runtime.batch(&evil, input("fs"), runtime.limits()).await {
        Err(RuntimeError::Guest { message, .. }) => assert!(message.starts_with("fs blocked"), "{message}"),
        other => panic!("reading /etc/passwd must fail inside the guest: {other:?}"),
    }
    match runtime.batch(&evil, input("env"), runtime.limits()).await {
        Err(RuntimeError::Guest { message, .. }) => assert_eq!(message, "env: []"),
        other => panic!("the guest must see an empty environment: {other:?}"),
    }
}

#[tokio::test]
async fn output_and_logs_past_the_budget_are_dropped_without_failing_the_call() {
    // 100,000 lines take a debug build a while on a busy machine; this test
    // is about the output budget, so the deadline is out of its way.
    let limits = Limits { call_timeout: Duration::from_secs(30), ..Limits::default() };
    let (runtime, evil) = runtime_with(limits).await;
    for mode in ["stdout", "log"] {
        let out = runtime.batch(&evil, input(mode), runtime.limits()).await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(out.column("x").unwrap().value(0), Value::Float64(3.0), "{mode}");
    }
}
