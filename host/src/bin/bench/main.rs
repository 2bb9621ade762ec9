//! `wafer-bench`: the performance numbers we report, measured on this
//! machine (never asserted in tests).
//!
//! - `wafer-bench http [--connections N] [--seconds N] [--rate N] [--server URL]`:
//!   online-read latency and throughput over HTTP.
//! - `wafer-bench wasm [--iterations N]`: per-call overhead of the Wasm
//!   runtime (fresh store + instantiate + call, against a reused instance),
//!   load time compiled and from the disk cache, and one indicators batch
//!   call over 252 rows.
//! - `wafer-bench materialize [--tickers N] [--days N]`: ingest and
//!   materialization throughput on the embedded backend.
//!
//! Build in release: `cargo run --release -p wafer-host --bin wafer-bench -- http`.

mod http;
mod materialize;
mod wasm;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("http") => http::run(http::HttpArgs::parse(&args[1..])).await,
        Some("wasm") => wasm::run(&args[1..]).await,
        Some("materialize") => materialize::run(&args[1..]).await,
        _ => {
            eprintln!(
                "usage: wafer-bench http [--connections N] [--seconds N] [--rate N] [--server URL]\n       wafer-bench wasm [--iterations N]"
            );
            std::process::exit(2);
        }
    }
}
