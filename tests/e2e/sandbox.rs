//! The Wasm runtime on its own: the compile cache across restarts, and what
//! a guest can and cannot reach from inside the sandbox.

use sha2::{Digest, Sha256};
use std::time::Instant;
use wafer_host::model::{BatchInput, Column, NamedTable, Table, Value, ValueType};
use wafer_host::runtime::{Limits, ModuleId, RuntimeError, TransformRuntime, WasmRuntime};
use wafer_tests::guests::EVIL;

fn id(name: &str, bytes: &[u8]) -> ModuleId {
    ModuleId { name: name.into(), version: "1.0.0".into(), sha256: format!("{:x}", Sha256::digest(bytes)) }
}

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

#[tokio::test]
async fn a_restarted_runtime_loads_the_compiled_module_from_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let evil = id("evil", EVIL);
    let first = WasmRuntime::new(Some(dir.path().to_path_buf()), Limits::default()).unwrap();
    let described = first.load(&evil, EVIL).await.unwrap();
    let cached: Vec<_> =
        walk(dir.path()).into_iter().filter(|p| p.ends_with(format!("{}.cwasm", evil.sha256))).collect();
    assert_eq!(cached.len(), 1, "one compiled module on disk: {:?}", walk(dir.path()));
    drop(first);

    let second = WasmRuntime::new(Some(dir.path().to_path_buf()), Limits::default()).unwrap();
    let started = Instant::now();
    assert_eq!(second.load(&evil, EVIL).await.unwrap(), described);
    let reload = started.elapsed();
    let out = second.batch(&evil, input("ok")).await.unwrap();
    assert_eq!(out.column("x").unwrap().value(1), Value::Float64(-4.0));
    // Loading from the cache skips Cranelift; it is reported, not asserted.
    println!("reload from cache: {reload:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

async fn evil_runtime() -> (WasmRuntime, ModuleId) {
    let runtime = WasmRuntime::new(None, Limits::default()).unwrap();
    let evil = id("evil", EVIL);
    runtime.load(&evil, EVIL).await.unwrap();
    (runtime, evil)
}

#[tokio::test]
async fn a_guest_sees_no_files_and_no_environment() {
    let (runtime, evil) = evil_runtime().await;
    match runtime.batch(&evil, input("fs")).await {
        Err(RuntimeError::Guest { message, .. }) => assert!(message.starts_with("fs blocked"), "{message}"),
        other => panic!("reading /etc/passwd must fail inside the guest: {other:?}"),
    }
    match runtime.batch(&evil, input("env")).await {
        Err(RuntimeError::Guest { message, .. }) => assert_eq!(message, "env: []"),
        other => panic!("the guest must see an empty environment: {other:?}"),
    }
}

#[tokio::test]
async fn output_and_logs_past_the_budget_are_dropped_without_failing_the_call() {
    let (runtime, evil) = evil_runtime().await;
    for mode in ["stdout", "log"] {
        let out = runtime.batch(&evil, input(mode)).await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(out.column("x").unwrap().value(0), Value::Float64(3.0), "{mode}");
    }
}

#[tokio::test]
async fn output_that_breaks_its_declared_shape_is_rejected() {
    let (runtime, evil) = evil_runtime().await;
    match runtime.batch(&evil, input("wrong_len")).await {
        Err(RuntimeError::BadOutput { message, .. }) => assert!(message.contains("rows"), "{message}"),
        other => panic!("expected BadOutput, got {other:?}"),
    }
    let stats = runtime.stats(&evil);
    assert_eq!((stats.calls, stats.errors), (2, 1), "describe at load, then one failing call: {stats:?}");
}
