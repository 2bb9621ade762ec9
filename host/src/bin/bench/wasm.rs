//! `wafer-bench wasm [--iterations N]`: what a transform call costs.
//!
//! With the bundled `indicators` component:
//! - load: compile + validate + `describe`, then the same from the disk
//!   cache in a fresh runtime (what a restart pays);
//! - engine: a 1-row batch call part by part (new store, instantiate, the
//!   call, dropping the store: what every call pays) against the same call
//!   on one reused instance (the alternative we did not choose);
//! - runtime: `WasmRuntime::batch` on 1 row (the full per-call overhead:
//!   permit, fresh instance, input conversion, lift/lower, output checks)
//!   and on 252 rows (a year of closes, 12 features).

use sha2::Digest;
use std::time::Instant;
use wafer_host::model::{BatchInput, Column, NamedTable, Table, Value, ValueType};
use wafer_host::runtime::{Limits, ModuleId, TransformRuntime, WasmRuntime};

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut iterations = 2000usize;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().map(String::as_str).unwrap_or_default();
        match flag.as_str() {
            "--iterations" => iterations = value.parse()?,
            other => anyhow::bail!("unknown flag {other}; flags: --iterations N"),
        }
    }
    let bytes = wafer_host::bundled::INDICATORS;
    let id = ModuleId {
        name: "indicators".into(),
        version: wafer_host::bundled::INDICATORS_VERSION.into(),
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
    };
    let build = if cfg!(debug_assertions) { "debug build: not representative" } else { "release build" };
    println!("wafer-bench wasm: indicators ({} KiB component), {iterations} iterations, {build}\n", bytes.len() / 1024);

    let cache = std::env::temp_dir().join(format!("wafer-bench-wasm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let t = Instant::now();
    WasmRuntime::new(Some(cache.clone()), Limits::default())?.load(&id, bytes).await?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let runtime = WasmRuntime::new(Some(cache.clone()), Limits::default())?;
    let t = Instant::now();
    runtime.load(&id, bytes).await?;
    let cached_ms = t.elapsed().as_secs_f64() * 1e3;
    let _ = std::fs::remove_dir_all(&cache);

    let one = prices(1);
    let overhead = runtime.measure_call_overhead(&id, &one, iterations).await?;

    let mut small = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        runtime.batch(&id, one.clone(), runtime.limits()).await?;
        small.push(micros(t));
    }
    let year = prices(252);
    let mut full = Vec::with_capacity(iterations);
    for _ in 0..iterations.div_ceil(4).max(10) {
        let t = Instant::now();
        let out = runtime.batch(&id, year.clone(), runtime.limits()).await?;
        anyhow::ensure!(out.rows() == 252 && out.columns.len() == 12, "unexpected output shape");
        full.push(micros(t));
    }

    // The risk transform over the same year with a benchmark series.
    let risk_bytes = wafer_host::bundled::RISK;
    let risk = ModuleId {
        name: "risk".into(),
        version: wafer_host::bundled::RISK_VERSION.into(),
        sha256: hex::encode(sha2::Sha256::digest(risk_bytes)),
    };
    runtime.load(&risk, risk_bytes).await?;
    let mut with_benchmark = prices(300);
    with_benchmark.related = vec![NamedTable { name: "benchmark".into(), table: prices(300).sources[0].table.clone() }];
    let mut risk_micros = Vec::with_capacity(iterations);
    for _ in 0..iterations.div_ceil(4).max(10) {
        let t = Instant::now();
        let out = runtime.batch(&risk, with_benchmark.clone(), runtime.limits()).await?;
        anyhow::ensure!(out.rows() == 300 && out.columns.len() == 7, "unexpected risk output shape");
        risk_micros.push(micros(t));
    }

    println!("| {:<62} | {:>10} | {:>10} | {:>6} |", "measurement", "p50 us", "p99 us", "n");
    println!("|{:-<64}|{:->12}|{:->12}|{:->8}|", "", "", "", "");
    row("load: compile + validate + describe", &mut [compile_ms * 1e3]);
    row("load: from the disk cache, new runtime (restart)", &mut [cached_ms * 1e3]);
    let fresh: Vec<f64> = (0..iterations)
        .map(|i| {
            overhead.store_micros[i]
                + overhead.instantiate_micros[i]
                + overhead.call_micros[i]
                + overhead.drop_micros[i]
        })
        .collect();
    row("engine, 1 row: new store (WASI context, limiter, deadline)", &mut overhead.store_micros.clone());
    row("engine, 1 row: instantiate (pool slot, memory image, start)", &mut overhead.instantiate_micros.clone());
    row("engine, 1 row: the call (lower, guest, lift)", &mut overhead.call_micros.clone());
    row("engine, 1 row: drop the store (slot back to the pool)", &mut overhead.drop_micros.clone());
    row("engine, 1 row: all four", &mut fresh.clone());
    row("engine, 1 row: the call on one reused instance", &mut overhead.reused_call_micros.clone());
    row("runtime.batch, 1 row (per-call overhead, end to end)", &mut small);
    row("runtime.batch, 252 rows, 12 features", &mut full);
    row("runtime.batch, risk: 300 rows and a benchmark, 7 features", &mut risk_micros);
    Ok(())
}

fn micros(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// `rows` daily closes for one ticker, as the `prices` source.
fn prices(rows: usize) -> BatchInput {
    let closes: Vec<Value> = (0..rows).map(|i| Value::Float64(100.0 + (i as f64 * 0.37).sin() * 5.0)).collect();
    let table = Table {
        timestamps: (0..rows as i64).map(|i| i * 86_400_000_000).collect(),
        columns: vec![Column::from_values("close", ValueType::Float64, closes.iter())],
    };
    BatchInput {
        entity: "BENCH".into(),
        sources: vec![NamedTable { name: "prices".into(), table }],
        related: vec![],
        params: vec![],
    }
}

fn row(name: &str, micros: &mut [f64]) {
    micros.sort_by(f64::total_cmp);
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
    println!("| {name:<62} | {:>10.1} | {:>10.1} | {:>6} |", pct(0.5), pct(0.99), micros.len());
}
