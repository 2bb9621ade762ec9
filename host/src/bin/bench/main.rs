//! `wafer-bench`: the performance numbers we report, measured on this
//! machine (never asserted in tests).
//!
//! - `wafer-bench http [--connections N] [--seconds N] [--rate N] [--server URL]`:
//!   online-read latency and throughput over HTTP.
//! - `wafer-bench wasm [--iterations N]`: per-call overhead of the Wasm
//!   runtime (fresh store + instantiate + call), and one indicators batch
//!   call over 252 rows.
//! - `wafer-bench materialize [--tickers N] [--days N]`: ingest and
//!   materialization throughput on the embedded backend.
//!
//! Build in release: `cargo run --release -p wafer-host --bin wafer-bench -- http`.

mod http;
mod materialize;

use std::sync::Arc;
use std::time::Instant;
use wafer_host::model::{BatchInput, Column, NamedTable, Table, Value, ValueType};
use wafer_host::runtime::{Limits, ModuleId, TransformRuntime, WasmRuntime};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("http") => http::run(http::HttpArgs::parse(&args[1..])).await,
        Some("wasm") => wasm(&args[1..]).await,
        Some("materialize") => materialize::run(&args[1..]).await,
        _ => {
            eprintln!(
                "usage: wafer-bench http [--connections N] [--seconds N] [--rate N] [--server URL]\n       wafer-bench wasm [--iterations N]"
            );
            std::process::exit(2);
        }
    }
}

async fn wasm(args: &[String]) -> anyhow::Result<()> {
    let iterations: usize = match args {
        [flag, n] if flag == "--iterations" => n.parse()?,
        _ => 2000,
    };
    let runtime = Arc::new(WasmRuntime::new(None, Limits::default())?);
    let bytes = wafer_host::bundled::INDICATORS;
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let id = ModuleId { name: "indicators".into(), version: "bench".into(), sha256: sha };
    let t = Instant::now();
    runtime.load(&id, bytes).await?;
    println!(
        "load (compile + validate + describe), {} KiB component: {:.1} ms",
        bytes.len() / 1024,
        t.elapsed().as_secs_f64() * 1e3
    );

    // Smallest real call: one row, so the time is the per-call overhead
    // (permit, blocking thread hop, fresh store, instantiate, lift/lower).
    let one = input(1);
    let mut small = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        runtime.batch(&id, one.clone()).await?;
        small.push(t.elapsed().as_secs_f64() * 1e6);
    }
    report("batch call, 1 row (per-call overhead)", &mut small);

    let year = input(252);
    let mut full = Vec::with_capacity(iterations / 4);
    for _ in 0..(iterations / 4).max(10) {
        let t = Instant::now();
        let out = runtime.batch(&id, year.clone()).await?;
        assert_eq!(out.rows(), 252);
        full.push(t.elapsed().as_secs_f64() * 1e6);
    }
    report("batch call, 252 rows, 12 features", &mut full);
    Ok(())
}

fn input(rows: usize) -> BatchInput {
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

fn report(name: &str, micros: &mut [f64]) {
    micros.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
    println!("{name:>40}: p50 {:>7.1} us  p99 {:>7.1} us  ({} calls)", pct(0.5), pct(0.99), micros.len());
}
